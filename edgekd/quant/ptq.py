"""INT8 post-training quantization with NNCF: the spec, calibration images, ignored layers, `quantize`.

Presets (NNCF 3.4 has no TensorRT target device, so 'trt' is built from what it has):

- ``trt``: ``QuantizationPreset.PERFORMANCE`` (symmetric weights and activations), weights per-channel with
  narrow range [-127, 127], activations per-tensor. NNCF makes post-ReLU activation quantizers *unsigned*
  ([0, 255]); TensorRT's explicit quantization accepts only signed INT8 with zero point 0, so after
  calibration every activation quantizer is switched to signed, keeping its calibrated scale (the same
  amax TensorRT would use; post-ReLU tensors lose one bit, exactly as they do in TensorRT). The fake-quant
  model therefore computes what the TensorRT engine will compute, and QAT trains against it.
- ``mixed``: ``QuantizationPreset.MIXED`` (symmetric weights, asymmetric activations): use it for ONNX
  Runtime and OpenVINO targets; not for TensorRT (non-zero zero points). Measured with ORT 1.32 CPU: the
  ``mixed`` QDQ graph becomes QLinearConv, while the ``trt`` graph (signed activations after ReLU, so the
  ReLU cannot be absorbed into the Q node) stays DQ -> float Conv -> Q, i.e. host ORT latency of a ``trt``
  artifact says little about INT8 speed.

Squeeze-excitation convolutions are quantized by default (``quantize_se_blocks``; see
:mod:`edgekd.quant.se_blocks`): NNCF would keep them in float, which measured slower on OpenVINO CPU at no
accuracy cost (bench/RESULTS.md, "SE-block convolutions").

Conv -> BatchNorm pairs are folded before quantization by default (``fold_batchnorm``; see
:mod:`edgekd.quant.bn_fold`): without it NNCF quantizes the conv weight *before* the BatchNorm and ORT
cannot form INT8 convolutions at all.

nncf, torch and torchao come from the ``train`` extra; openvino from ``cpu``. They are imported inside the
functions so that ``import edgekd`` never imports them.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekd.errors import StageFailed, UsageError, require
from edgekd.quant.bn_fold import fold_batchnorm
from edgekd.quant.se_blocks import QUANTIZE_SE_BLOCKS, nncf_se_blocks

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

FOLDED_ATTR = "edgekd_folded_batchnorm"  # [[conv path, batchnorm path], ...] on a quantized model


class QuantSpec(BaseModel):
    """How to quantize: preset, calibration size and the layers kept in floating point."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["trt", "mixed"] = Field(
        "trt", description="'trt': symmetric INT8 that TensorRT accepts; 'mixed': asymmetric activations"
    )
    subset_size: int = Field(300, gt=0, description="calibration images used (at most)")
    min_calibration: int = Field(32, gt=0, description="fewer calibration images than this is an error")
    ignored_layers: list[str] = Field(
        default_factory=list, description="module paths (e.g. 'features.0', 'fc') kept in floating point"
    )
    fold_batchnorm: bool = Field(
        True, description="fold Conv->BatchNorm pairs before quantizing (see edgekd.quant.bn_fold for why)"
    )
    quantize_se_blocks: bool = Field(
        QUANTIZE_SE_BLOCKS, description="quantize squeeze-excitation convs too (NNCF keeps them in float unless told)"
    )


def _torch() -> Any:
    return require("torch", "train", "quantization needs PyTorch")


def _nncf() -> Any:
    """NNCF, with its fake-quant kernels in PyTorch (no JIT-compiled C++ extension; see edgekd.quant.kernels)."""
    nncf = require("nncf", "train", "INT8 quantization uses NNCF")
    from edgekd.quant.kernels import use_torch_kernels

    use_torch_kernels()
    return nncf


def iter_images(batches: Iterable[Any]) -> Iterator[torch.Tensor]:
    """Yield single images (C, H, W) from tensors or (x, y, ...) batches, whichever the source gives."""
    torch = _torch()
    for item in batches:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor):
            raise UsageError(f"calibration batches must be tensors or (x, y) pairs, got {type(x).__name__}")
        if x.dim() == 3:  # a single image
            yield x
        else:
            yield from x


def collect_calibration(batches: Iterable[Any], spec: QuantSpec) -> list[torch.Tensor]:
    """Take up to ``spec.subset_size`` images; fewer than ``spec.min_calibration`` is a UsageError."""
    images: list[torch.Tensor] = []
    for img in iter_images(batches):
        images.append(img)
        if len(images) >= spec.subset_size:
            break
    if len(images) < spec.min_calibration:
        raise UsageError(
            f"calibration set has {len(images)} images, fewer than the minimum {spec.min_calibration}: "
            "add images to the calibration set (or lower min_calibration knowingly)"
        )
    return images


def module_device(model: nn.Module) -> torch.device:
    torch = _torch()
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def ignored_scope_for(model: nn.Module, layers: Iterable[str], folded: Iterable[str] = ()) -> Any:
    """nncf.IgnoredScope covering every operation inside each module path; unknown paths -> UsageError.

    NNCF's torch node names are module paths with '/' plus '<op>/<call index>' (``features/3/conv2d/0``),
    so module ``features.3`` is the pattern ``^features/3/``. ``folded``: BatchNorm paths already folded
    into their conv (no operation left to ignore; the conv carries them).
    """
    nncf = _nncf()
    folded = set(folded)
    layers = list(layers)
    if not layers:
        return None
    known = [name for name, _ in model.named_modules() if name] + sorted(folded)
    unknown = [name for name in layers if name not in known]
    if unknown:
        hints = "; ".join(
            f"'{name}' (nearest: {', '.join(difflib.get_close_matches(name, known, n=3, cutoff=0.4)) or 'none'})"
            for name in unknown
        )
        raise UsageError(f"ignored_layers names no module of the model: {hints}")
    patterns = [f"^{re.escape(name.replace('.', '/'))}/" for name in layers if name not in folded]
    return nncf.IgnoredScope(patterns=patterns, validate=True) if patterns else None


def _unsigned_symmetric_quantizers(qmodel: nn.Module) -> Iterator[nn.Module]:
    """Symmetric quantizers calibrated as unsigned ([0, 255]): NNCF does this for non-negative activations."""
    from nncf.torch.function_hook.wrapper import get_hook_storage
    from nncf.torch.quantization.layers import SymmetricQuantizer

    for _, hook in get_hook_storage(qmodel).named_hooks():
        if isinstance(hook, SymmetricQuantizer) and not hook.signed:
            yield hook


def quantize(
    model: nn.Module, calib_batches: Iterable[Any], spec: QuantSpec, example_input: torch.Tensor
) -> nn.Module:
    """Post-training INT8 quantization; returns the NNCF fake-quant model in eval mode.

    ``calib_batches`` yields image tensors (N, C, H, W) or (x, y) pairs (a DataLoader). Images are fed to
    NNCF one at a time so ``subset_size`` counts images, not batches (NNCF counts dataset items).
    ``model`` is not modified.
    """
    torch = _torch()
    nncf = _nncf()
    images = collect_calibration(calib_batches, spec)
    model = copy.deepcopy(model).eval()
    device = module_device(model)
    example_input = example_input.to(device)
    ignored_scope_for(model, spec.ignored_layers)  # validate names against the model as given
    folded = fold_batchnorm(model, example_input) if spec.fold_batchnorm else []
    scope = ignored_scope_for(model, spec.ignored_layers, folded=[bn for _, bn in folded])

    def transform(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).to(device)

    preset = nncf.QuantizationPreset.PERFORMANCE if spec.preset == "trt" else nncf.QuantizationPreset.MIXED
    from edgekd.quant.quiet import nncf_quiet

    try:
        with torch.no_grad(), nncf_quiet(), nncf_se_blocks(quantized=spec.quantize_se_blocks):
            qmodel = nncf.quantize(
                model,
                nncf.Dataset(images, transform),
                preset=preset,
                target_device=nncf.TargetDevice.ANY,
                subset_size=len(images),
                ignored_scope=scope,
            )
    except nncf.ValidationError as exc:  # e.g. an ignored module with no operation in the traced graph
        raise UsageError(f"NNCF rejected the quantization setup: {str(exc).splitlines()[0]}") from exc
    if spec.preset == "trt":
        for quantizer in _unsigned_symmetric_quantizers(qmodel):
            quantizer.signed = True  # keeps the calibrated scale; levels become [-128, 127]
    qmodel.eval()
    setattr(qmodel, FOLDED_ATTR, [list(pair) for pair in folded])
    with torch.no_grad():
        out = qmodel(example_input)
    if not torch.isfinite(out).all():
        raise StageFailed("the quantized model gives NaN/Inf on the example input")
    return qmodel
