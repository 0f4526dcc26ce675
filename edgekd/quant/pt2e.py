"""PT2E INT8 for mobile runtimes: the student captured with torch.export, quantized by the runtime's own quantizer.

Routes (a target profile's `quantizer`):
- `pt2e-xnnpack`: executorch's XNNPACKQuantizer (symmetric per-channel INT8 weights, asymmetric per-tensor INT8
  activations), the scheme ExecuTorch's XNNPACK delegate runs as integer kernels; Core ML converts the same
  Q/DQ graph into an INT8 ML program (coremltools' own tests convert XNNPACKQuantizer graphs).
- `pt2e-litert`: litert-torch's PT2EQuantizer (same scheme), which litert_torch.convert turns into a
  fully-integer .tflite.

The flow is torchao's PT2E: `torch.export.export(...).module()` -> `prepare_pt2e` (PTQ, histogram observers) or
`prepare_qat_pt2e` (QAT, moving-average fake quantize) -> calibrate on the calibration images -> (QAT: train)
-> `convert_pt2e`. BatchNorm is folded into the convolutions before capture (edgekd.quant.bn_fold), which for
QAT is the same as the NNCF route's frozen BatchNorm. The converted model is a PyTorch model with explicit
quantize/dequantize ops: it is the quantized reference every mobile artifact is compared with, and it is saved
as a torch.export program (.pt2) that the bundle writers lower.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from edgekd.compat import check_tested
from edgekd.errors import UsageError, require

check_tested("torchao")  # fold_weight_quantize imports torchao's private _quant_node_constraint

MOBILE_EXTRA = "mobile"


@dataclass(frozen=True)
class Route:
    name: str
    module: str  # the python module that provides the quantizer
    package: str  # its pip package
    runtime: str
    scheme: str


ROUTES: dict[str, Route] = {
    "pt2e-xnnpack": Route("pt2e-xnnpack", "executorch", "executorch", "executorch (XNNPACK delegate)",
                          "XNNPACKQuantizer: symmetric per-channel INT8 weights, asymmetric per-tensor INT8 "
                          "activations"),
    "pt2e-litert": Route("pt2e-litert", "litert_torch", "litert-torch", "LiteRT (TFLite interpreter)",
                         "litert-torch PT2EQuantizer: symmetric per-channel INT8 weights, asymmetric per-tensor "
                         "INT8 activations"),
}


class CaptureError(UsageError):
    """torch.export cannot capture the model; the message names the operator or construct."""


# convert_pt2e never folds weight quantization into int8 constants: litert-torch's lowering wants the float weight
# with its quantize op (its own tests pass fold_quantize=False; folded weights fail in its
# stablehlo.uniform_dequantize), and the XNNPACK partitioner and Core ML fold it themselves, so one program serves
# every writer (fold_weight_quantize folds it for the .pte writer).
FOLD_WEIGHTS = False


def route(name: str) -> Route:
    if name not in ROUTES:
        raise UsageError(f"unknown PT2E route '{name}': choose from {', '.join(ROUTES)}")
    return ROUTES[name]


def require_route(name: str) -> Route:
    r = route(name)
    require(r.module, MOBILE_EXTRA, f"the {name} quantizer")
    return r


def make_quantizer(name: str, qat: bool) -> Any:
    """The runtime's own PT2E quantizer, per-channel symmetric weights, static activations."""
    require_route(name)
    if name == "pt2e-xnnpack":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config)

        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    return PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


_UNSUPPORTED = re.compile(r"(?:[Uu]nsupported|not supported|no (?:lowering|decomposition|kernel)|[Cc]annot (?:trace|export))"
                          r"[^\n]*?((?:torch\.ops\.)?aten[.:]{1,2}\w+(?:\.\w+)?|torch\.\w+(?:\.\w+)*|'\w+')")
_CODE = re.compile(r"File: ([^\s]+) in \w+, code: (.+)")


def capture_error_text(exc: BaseException) -> str:
    """One line naming what torch.export could not capture: the operator when the error names one, and the
    student's source line where torch.export points at it (data-dependent control flow has no operator)."""
    text = str(exc)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)[:160]
    parts = []
    op = _UNSUPPORTED.search(text)
    if op and not op.group(1).startswith("torch.export"):
        parts.append(f"operator {op.group(1).strip(chr(39))}")
    parts.append(first)
    code = _CODE.findall(text)
    if code:
        where, line = code[-1]
        parts.append(f"at `{line.strip()[:80]}` ({Path(where).name})")
    return ": ".join(parts[:1]) + (" (" + "; ".join(parts[1:]) + ")" if len(parts) > 1 else "")


def capture(model: Any, example: Any, dynamic_batch: bool = True) -> Any:
    """torch.export the model (eval mode) into a GraphModule; CaptureError names the failing op."""
    import torch

    dims = ({0: torch.export.Dim("batch", min=2, max=4096)},) if dynamic_batch else None
    try:
        return torch.export.export(model, (example,), dynamic_shapes=dims).module()
    except Exception as exc:  # torch.export raises many types (Unsupported, UserError, TypeError, ...)
        raise CaptureError(f"torch.export cannot capture the student: {capture_error_text(exc)}") from None


def folded_copy(model: Any, example: Any) -> tuple[Any, list[tuple[str, str]]]:
    """A copy of the model in eval mode with BatchNorm folded into the convolutions (frozen BN for QAT)."""
    from edgekd.quant.bn_fold import fold_batchnorm

    m = copy.deepcopy(model).eval()
    pairs = fold_batchnorm(m, example)
    return m, pairs


def calibrate(prepared: Any, batches: Iterable[Any]) -> int:
    import torch

    n = 0
    with torch.no_grad():
        for x in batches:
            prepared(x)
            n += len(x)
    return n


def ptq(model: Any, example: Any, calib: list[Any], name: str) -> Any:
    """Post-training quantization: capture, prepare_pt2e, calibrate, convert_pt2e (a Q/DQ PyTorch model)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    folded, _ = folded_copy(model, example)
    prepared = prepare_pt2e(capture(folded, example), make_quantizer(name, qat=False))
    calibrate(prepared, calib)
    return convert_pt2e(prepared, fold_quantize=FOLD_WEIGHTS)


def prepare_qat(model: Any, example: Any, calib: list[Any], name: str, ranges: str = "ptq") -> Any:
    """QAT model (fake quantize in the graph), calibrated; train()/eval() allowed on it for the Trainer.

    ranges "ptq": every activation fake-quantizer starts from the range the PTQ calibration chose (histogram
    observers, the same images) and keeps it (observer off), so QAD starts where PTQ ends and trains the weights
    to that grid; "moving-average": the QAT observers' own min/max, updated while training (torchao's default).
    Weight fake-quantizers (per channel) always follow the weights."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    folded, _ = folded_copy(model, example)
    prepared = prepare_qat_pt2e(capture(folded, example), make_quantizer(name, qat=True))
    allow_exported_model_train_eval(prepared)
    prepared.eval()
    calibrate(prepared, calib)
    if ranges == "ptq":
        _seed_ranges(prepared, _ptq_ranges(folded, example, calib, name))
    return prepared


def _per_tensor(modules: Iterable[Any]) -> list[Any]:
    import torch

    return [m for m in modules if getattr(m, "qscheme", None) in (torch.per_tensor_affine, torch.per_tensor_symmetric)]


def _ptq_ranges(folded: Any, example: Any, calib: list[Any], name: str) -> list[tuple[float, float]]:
    """The (min, max) each per-tensor activation observer of a PTQ calibration settles on, in graph order."""
    from torchao.quantization.pt2e import ObserverBase
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(capture(folded, example), make_quantizer(name, qat=False))
    calibrate(prepared, calib)
    out = []
    for obs in _per_tensor(m for m in prepared.modules() if isinstance(m, ObserverBase)):
        scale, zero = (float(v.reshape(-1)[0]) for v in obs.calculate_qparams())
        out.append(((obs.quant_min - zero) * scale, (obs.quant_max - zero) * scale))
    return out


def _seed_ranges(prepared: Any, ranges: list[tuple[float, float]]) -> None:
    import torch
    from torchao.quantization.pt2e import FakeQuantizeBase

    fqs = _per_tensor(m for m in prepared.modules() if isinstance(m, FakeQuantizeBase))
    if len(fqs) != len(ranges):
        raise UsageError(f"PT2E QAT has {len(fqs)} activation quantizers but PTQ {len(ranges)}: cannot start QAD "
                         "from the PTQ ranges (set the qad_pt2e stage's ranges to moving-average)")
    with torch.no_grad():
        for fq, (lo, hi) in zip(fqs, ranges):
            obs = fq.activation_post_process
            obs.min_val.copy_(torch.tensor(lo)), obs.max_val.copy_(torch.tensor(hi))
            scale, zero = obs.calculate_qparams()
            fq.scale.copy_(scale.reshape(fq.scale.shape)), fq.zero_point.copy_(zero.reshape(fq.zero_point.shape))
            fq.disable_observer()


def allow_train_eval(gm: Any) -> Any:
    """Let train()/eval() be called on an exported model (the Trainer and evaluate do); returns it."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    allow_exported_model_train_eval(gm)
    return gm


def convert_qat(prepared: Any) -> Any:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared.eval()
    return convert_pt2e(prepared, fold_quantize=FOLD_WEIGHTS)


def save_program(converted: Any, path: Path, example: Any) -> Path:
    """The converted (Q/DQ) model as a torch.export program file (.pt2), batch dimension dynamic."""
    import torch

    dims = ({0: torch.export.Dim("batch", min=2, max=4096)},)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(torch.export.export(converted, (example,), dynamic_shapes=dims), str(path))
    return path


def load_program(path: Path) -> Any:
    """The quantized reference back from its .pt2 (a GraphModule with quantize/dequantize ops)."""
    torch = require("torch", "train", "loading a PT2E program needs PyTorch")
    require("torchao.quantization.pt2e", "train", "it registers the quantize/dequantize ops the program holds")
    try:
        return torch.export.load(str(path)).module()
    except (RuntimeError, ValueError, OSError) as exc:
        raise UsageError(f"{path}: not a readable torch.export program ({str(exc).splitlines()[0][:160]})") from None


def fold_weight_quantize(gm: Any) -> Any:
    """Fold each weight's quantize op into an int8 constant (what convert_pt2e(fold_quantize=True) does),
    in place: the XNNPACK partitioner has no out-variant for a weight quantize left in the graph."""
    from torchao.quantization.pt2e.constant_fold import constant_fold
    from torchao.quantization.pt2e.quantize_pt2e import _quant_node_constraint

    constant_fold(gm, _quant_node_constraint)
    return gm


def quantized_ops(gm: Any) -> dict[str, int]:
    """How many quantize/dequantize nodes the converted graph holds (a graph with none is not INT8)."""
    counts: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_function" and ("quantize_per" in str(node.target) or "dequantize_per" in str(node.target)):
            key = str(node.target).split(".")[-2] if "." in str(node.target) else str(node.target)
            counts[key] = counts.get(key, 0) + 1
    return counts


def mobile_installed() -> bool:
    """Whether the `mobile` extra's converters and runtimes are importable (no import happens)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("executorch", "litert_torch", "ai_edge_litert", "coremltools"))
