"""INT8 post-training quantization with NNCF, QAT helpers, save/load, and INT8 exports.

The flow the qad stage uses::

    spec = QuantSpec(preset="trt")                       # or "mixed" for OpenVINO
    qmodel = quantize(model, calib_loader, spec, example_input)
    prepare_for_qat(qmodel)                              # train mode, BatchNorm statistics frozen
    ... distil into qmodel ...
    save_quantized(qmodel, "qmodel.pt", meta={...})
    export_qdq_onnx(qmodel, "model.int8.onnx", example_input)   # ONNX Runtime / TensorRT
    export_openvino_ir(qmodel, "model.int8.xml", example_input) # OpenVINO

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

Conv -> BatchNorm pairs are folded before quantization by default (``fold_batchnorm``; see
:mod:`edgekd.quant.bn_fold`): without it NNCF quantizes the conv weight *before* the BatchNorm and ORT
cannot form INT8 convolutions at all.

nncf, torch and torchao come from the ``train`` extra; openvino from ``cpu``. They are imported inside the
functions so that ``import edgekd`` never imports them.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekd.errors import StageFailed, UsageError, require
from edgekd.quant.bn_fold import apply_folded_structure, fold_batchnorm

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

CHECKPOINT_FORMAT = "edgekd-nncf-quantized"
CHECKPOINT_VERSION = 1
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


def _module_device(model: nn.Module) -> torch.device:
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
    device = _module_device(model)
    example_input = example_input.to(device)
    ignored_scope_for(model, spec.ignored_layers)  # validate names against the model as given
    folded = fold_batchnorm(model, example_input) if spec.fold_batchnorm else []
    scope = ignored_scope_for(model, spec.ignored_layers, folded=[bn for _, bn in folded])

    def transform(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).to(device)

    preset = nncf.QuantizationPreset.PERFORMANCE if spec.preset == "trt" else nncf.QuantizationPreset.MIXED
    try:
        with torch.no_grad():
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


# ---------------------------------------------------------------------------------------------- QAT


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm in eval mode (running statistics frozen; affine weights stay trainable)."""
    batchnorm = _torch().nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d and SyncBatchNorm
    frozen = 0
    for module in model.modules():
        if isinstance(module, batchnorm):
            module.eval()
            frozen += 1
    return frozen


def qat_train_mode(qmodel: nn.Module) -> nn.Module:
    """``qmodel.train()`` then re-freeze BatchNorm statistics; call this instead of ``train()`` in QAT loops."""
    qmodel.train()
    freeze_batchnorm(qmodel)
    return qmodel


def prepare_for_qat(qmodel: nn.Module) -> nn.Module:
    """Make a quantized model ready for quantization-aware training/distillation.

    Why BatchNorm is frozen: the quantizer ranges were calibrated on activations normalised with the
    *running* statistics. In train mode BatchNorm normalises with each batch's statistics instead (and
    keeps moving the running ones), so the activations no longer match the calibrated ranges: measured on
    CIFAR ResNets, right after quantization the model in train() mode has ~4x the cross-entropy of eval()
    on the same batch. Freezing the statistics keeps train-time forward equal to inference forward, so
    QAT optimises the network it will ship. NNCF quantizers behave the same in train and eval mode.
    BatchNorms that :func:`quantize` folded into their conv are gone already (a folded BatchNorm is a
    frozen one); this freezes the rest. Weights, BatchNorm affine parameters and quantizer scales stay
    trainable. Call :func:`qat_train_mode` (not ``train()``) after any evaluation inside the QAT loop.
    """
    for p in qmodel.parameters():
        if p.is_floating_point():
            p.requires_grad_(True)
    # quantizers turned off (e.g. by sensitivity analysis) must not train their scales
    for module in qmodel.modules():
        if hasattr(module, "is_enabled_quantization") and not module.is_enabled_quantization():
            module.disable_gradients()
    return qat_train_mode(qmodel)


# ---------------------------------------------------------------------------------------- save/load


def save_quantized(qmodel: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write the NNCF transformation config and the state dict; loadable with ``weights_only=True``.

    The NNCF config holds tuples and enums; it is stored as a JSON string so the file has plain types
    only. ``meta`` must be JSON-serialisable (architecture, preprocessing, spec ...).
    """
    torch = _torch()
    _nncf()
    nncf_torch = require("nncf.torch", "train", "saving a quantized model uses NNCF")
    config = nncf_torch.get_config(qmodel)
    try:
        config_json = json.dumps(config)
        meta_json = json.dumps(meta or {})
    except TypeError as exc:
        raise UsageError(f"cannot save the quantized model: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "nncf_config_json": config_json,
            "meta_json": meta_json,
            "folded_batchnorm_json": json.dumps(getattr(qmodel, FOLDED_ATTR, [])),
            "state_dict": state,
        },
        path,
    )
    return path


def read_quantized_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` dict stored by :func:`save_quantized`."""
    return json.loads(_load_checkpoint(path)["meta_json"])


def _load_checkpoint(path: str | Path) -> dict[str, Any]:
    torch = _torch()
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{path} is not a quantized checkpoint written by edgekd (save_quantized)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise UsageError(f"{path}: unsupported quantized checkpoint version {ckpt.get('version')}")
    return ckpt


def load_quantized(
    float_model: nn.Module, path: str | Path, example_input: torch.Tensor | None = None
) -> nn.Module:
    """Rebuild the quantized model: NNCF config onto a copy of ``float_model``, then the state dict.

    ``float_model`` (the same architecture, any weights) is not modified. With ``example_input`` one
    forward pass checks the result runs. Returns the model in eval mode.
    """
    torch = _torch()
    _nncf()
    nncf_torch = require("nncf.torch", "train", "loading a quantized model uses NNCF")
    ckpt = _load_checkpoint(path)
    model = copy.deepcopy(float_model).eval()
    folded = json.loads(ckpt["folded_batchnorm_json"])
    try:
        apply_folded_structure(model, folded)
    except KeyError as exc:
        raise UsageError(f"{path} does not fit this architecture: it has no module {exc}") from exc
    qmodel = nncf_torch.load_from_config(model, json.loads(ckpt["nncf_config_json"]))
    setattr(qmodel, FOLDED_ATTR, folded)
    try:
        qmodel.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"{path} does not fit this architecture: {first}") from exc
    qmodel.eval()
    if example_input is not None:
        with torch.no_grad():
            qmodel(example_input.to(_module_device(qmodel)))
    return qmodel


# ------------------------------------------------------------------------------------------ exports

_WEIGHTED_ONNX_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def qdq_facts(onnx_model: Any) -> dict[str, Any]:
    """Counts of QuantizeLinear/DequantizeLinear and the Conv/Gemm/MatMul nodes left in float.

    A weighted node is "float" when its weight input (input 1) is not produced by a DequantizeLinear.
    """
    producers = {out: node for node in onnx_model.graph.node for out in node.output}
    n_q = sum(node.op_type == "QuantizeLinear" for node in onnx_model.graph.node)
    n_dq = sum(node.op_type == "DequantizeLinear" for node in onnx_model.graph.node)
    float_ops: list[str] = []
    float_nodes: list[str] = []
    for node in onnx_model.graph.node:
        if node.op_type in _WEIGHTED_ONNX_OPS and len(node.input) > 1:
            producer = producers.get(node.input[1])
            if producer is None or producer.op_type != "DequantizeLinear":
                float_ops.append(node.op_type)
                float_nodes.append(node.name)
    return {
        "quantize_linear": n_q,
        "dequantize_linear": n_dq,
        "float_ops": float_ops,
        "float_nodes": float_nodes,
    }


def export_qdq_onnx(
    qmodel: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    opset: int = 17,
    input_name: str = "input",
    output_name: str = "logits",
) -> dict[str, Any]:
    """Export standard QuantizeLinear/DequantizeLinear ONNX (ONNX Runtime, TensorRT explicit quantization).

    NNCF's own quantizers export as FakeQuantize-like custom nodes; ``nncf.strip(..., NATIVE)`` (needs
    torchao) first turns them into torch fake-quant ops, which the TorchScript exporter writes as Q/DQ.
    ``qmodel`` is not modified. Returns the ONNX facts plus the Q/DQ counts and float ops.
    """
    onnx = require("onnx", "train")
    nncf = _nncf()
    require("torchao", "train", "nncf.strip to native PyTorch needs torchao")
    from edgekd.export.onnx_export import export_onnx

    from nncf.torch.function_hook.wrapper import is_wrapped

    if not is_wrapped(qmodel):
        raise StageFailed(
            "export_qdq_onnx needs a model quantized by edgekd.quant.quantize: it has no QuantizeLinear to write"
        )
    model = copy.deepcopy(qmodel).eval()
    example_input = example_input.to(_module_device(model))
    stripped = nncf.strip(model, do_copy=False, strip_format=nncf.StripFormat.NATIVE, example_input=example_input)
    facts = export_onnx(stripped, path, example_input, opset=opset, input_name=input_name, output_name=output_name)
    facts.update(qdq_facts(onnx.load(str(path))))
    if facts["quantize_linear"] == 0:
        raise StageFailed(f"{path}: the exported INT8 model has no QuantizeLinear node; was it quantized?")
    facts["precision"] = "int8"
    return facts


def export_openvino_ir(qmodel: nn.Module, xml_path: str | Path, example_input: torch.Tensor) -> dict[str, Any]:
    """Convert the NNCF fake-quant model to OpenVINO IR (FakeQuantize nodes, run as INT8 by the CPU plugin).

    Batch is made dynamic; weights are saved in FP32 (``compress_to_fp16=False``) so the IR stays
    faithful to the fake-quant model. Returns {xml, bin, fake_quantize, input_shape, precision}.
    """
    torch = _torch()
    ov = require("openvino", "cpu", "OpenVINO IR export needs OpenVINO")
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise UsageError(f"OpenVINO IR path must end in .xml, got {xml_path.name}")
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(qmodel).eval()
    example_input = example_input.to(_module_device(model))
    with torch.no_grad(), warnings.catch_warnings():
        # tracing NNCF quantizers warns about .item() and re-trace mismatches at rounding boundaries;
        # the IR is checked against the fake-quant model by parity instead
        warnings.filterwarnings("ignore", category=getattr(torch.jit, "TracerWarning", UserWarning))
        warnings.filterwarnings("ignore", category=FutureWarning)
        ov_model = ov.convert_model(model, example_input=example_input)
    if len(ov_model.inputs) != 1:
        raise UsageError(f"expected a model with one input, the IR has {len(ov_model.inputs)}")
    shape = list(example_input.shape)
    ov_model.reshape(ov.PartialShape([-1, *shape[1:]]))
    from edgekd.runtimes.openvino import save_ir

    save_ir(ov_model, xml_path)  # fp32 weights, reproducible node names
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    if n_fq == 0:
        raise StageFailed(f"{xml_path}: the OpenVINO IR has no FakeQuantize node; was the model quantized?")
    return {
        "xml": str(xml_path),
        "bin": str(xml_path.with_suffix(".bin")),
        "fake_quantize": n_fq,
        "input_shape": ["batch", *shape[1:]],
        "precision": "int8",
    }
