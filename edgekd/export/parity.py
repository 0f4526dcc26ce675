"""Parity of an exported artifact against its PyTorch model, with tolerances that mean something.

Tolerances (what each one promises):

- FP32 ONNX vs PyTorch FP32: the same math in another kernel library; differences come from summation
  order only. Passes when ``max_abs <= 1e-4`` or ``max_rel <= 1e-3`` (``max_rel`` is the largest absolute
  difference divided by the largest absolute reference logit, so it scales with the logits' range).
- FP16 artifact vs PyTorch FP32: half precision keeps ~3 decimal digits; ``max_abs <= 1e-2``.
- INT8 artifact vs the fake-quant PyTorch model: integer kernels round differently at quantization
  boundaries, so logits are not compared elementwise. Two promises: the logits stay within 10% of the
  reference's logit range (``max_rel <= 0.1``: a wrong scale, layout or saturated layer breaks it), and
  the top-1 class agrees on ``>= 99%`` of the inputs the reference *decides*, i.e. whose top-1 logit leads
  the runner-up by at least 3% of that range. Near-ties may flip: rounding noise alone does that. Measured
  on a CIFAR ResNet-20 (1000 test images): ONNX Runtime running the very same QDQ graph with integer
  kernels disagrees with its own float (unoptimised) execution on 0.6% of the images, OpenVINO with the
  fake-quant model on 0.8%, every one of them a near-tie (margin <= 2% of the range, max |error| 2.3%).
  Overall agreement is reported too.
- NaN or Inf in any output fails, whatever the precision.

Every check runs at batch 1 and at a larger batch (it should be larger than the batch the model was
traced with, which proves the batch axis really is dynamic). :func:`check_parity` runs ONNX Runtime on
CPU; :func:`check_parity_with` takes any ``infer(np.ndarray) -> np.ndarray`` (OpenVINO, TensorRT ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgekd.errors import StageFailed, UsageError, require

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

Kind = Literal["fp32", "fp16", "int8"]

FP32_MAX_ABS = 1e-4
FP32_MAX_REL = 1e-3
FP16_MAX_ABS = 1e-2
INT8_MIN_TOP1_AGREEMENT = 0.99  # on the inputs the reference decides (see INT8_DECIDED_MARGIN)
INT8_DECIDED_MARGIN = 0.03  # top-1 lead over the runner-up, as a fraction of max |reference logit|
INT8_MAX_REL = 0.10

Infer = Callable[[np.ndarray], np.ndarray]


def compare_logits(ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    """max_abs, max_rel (max |out-ref| / max |ref|), top1_agreement, nan_or_inf (in either array), and
    top1_agreement_decided over the inputs whose reference top-1 leads by >= INT8_DECIDED_MARGIN of the
    logit range (None when there is none), with decided_fraction."""
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise UsageError(f"cannot compare logits of shape {out.shape} with reference shape {ref.shape}")
    nan_or_inf = bool(not np.isfinite(ref).all() or not np.isfinite(out).all())
    if ref.ndim < 2 or ref.size == 0:
        raise UsageError(f"logits must be a non-empty (N, classes) array, got shape {ref.shape}")
    if nan_or_inf:  # a non-finite output has no meaningful distance: report it as infinite
        max_abs = max_rel = float("inf")
    else:
        max_abs = float(np.max(np.abs(out - ref)))
        scale = float(np.max(np.abs(ref)))
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    flat_ref, flat_out = np.nan_to_num(ref.reshape(len(ref), -1)), np.nan_to_num(out.reshape(len(out), -1))
    agree = flat_ref.argmax(1) == flat_out.argmax(1)
    decided = np.ones(len(agree), dtype=bool)
    if flat_ref.shape[1] > 1:
        top2 = np.sort(flat_ref, axis=1)[:, -2:]
        decided = top2[:, 1] - top2[:, 0] >= INT8_DECIDED_MARGIN * float(np.max(np.abs(flat_ref)))
    return {
        "max_abs": max_abs, "max_rel": max_rel, "top1_agreement": float(np.mean(agree)), "nan_or_inf": nan_or_inf,
        "top1_agreement_decided": float(np.mean(agree[decided])) if decided.any() else None,
        "decided_fraction": float(np.mean(decided)),
    }  # fmt: skip


class BatchParity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int
    max_abs: float
    max_rel: float
    top1_agreement: float
    nan_or_inf: bool
    passed: bool
    top1_agreement_decided: float | None = None
    decided_fraction: float = 1.0


class ParityReport(BaseModel):
    """Parity at each batch size; ``passed`` only when every batch size passes."""

    model_config = ConfigDict(extra="forbid")

    artifact: str
    kind: Kind
    samples: int
    tolerance: str
    batches: list[BatchParity]
    passed: bool

    def summary(self) -> str:
        parts = [
            f"batch {b.batch_size}: max_abs={b.max_abs:.3g} max_rel={b.max_rel:.3g} "
            f"top1_agreement={b.top1_agreement:.4f}{_decided_text(b.top1_agreement_decided, b.decided_fraction)}"
            f"{' NaN/Inf' if b.nan_or_inf else ''}"
            for b in self.batches
        ]
        verdict = "passes" if self.passed else "fails"
        head = f"{self.kind} parity of {self.artifact} {verdict} ({self.tolerance}) on {self.samples} inputs"
        return f"{head}: " + "; ".join(parts)

    def raise_if_failed(self) -> ParityReport:
        if not self.passed:
            raise StageFailed(self.summary())
        return self


def _decided_text(agree: float | None, fraction: float) -> str:
    return "" if agree is None else f" ({agree:.4f} on the {fraction:.0%} decided inputs)"


def tolerance_text(kind: Kind) -> str:
    if kind == "fp32":
        return f"needs max_abs <= {FP32_MAX_ABS:g} or max_rel <= {FP32_MAX_REL:g}"
    if kind == "fp16":
        return f"needs max_abs <= {FP16_MAX_ABS:g}"
    return (f"needs max_rel <= {INT8_MAX_REL:g} and top-1 agreement >= {INT8_MIN_TOP1_AGREEMENT:g} on the inputs "
            f"the reference decides by >= {INT8_DECIDED_MARGIN:.0%} of its logit range")


def within_tolerance(kind: Kind, metrics: dict[str, Any]) -> bool:
    """Whether compare_logits' metrics meet the tolerance of ``kind`` (NaN/Inf always fails)."""
    if metrics["nan_or_inf"]:
        return False
    if kind == "fp32":
        return metrics["max_abs"] <= FP32_MAX_ABS or metrics["max_rel"] <= FP32_MAX_REL
    if kind == "fp16":
        return metrics["max_abs"] <= FP16_MAX_ABS
    if kind == "int8":
        agree = metrics.get("top1_agreement_decided")
        agree = metrics["top1_agreement"] if agree is None else agree
        return metrics["max_rel"] <= INT8_MAX_REL and agree >= INT8_MIN_TOP1_AGREEMENT
    raise UsageError(f"unknown parity kind '{kind}': use fp32, fp16 or int8")


def _run_batched(infer: Infer, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    outs = [np.asarray(infer(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)]
    return np.concatenate(outs, axis=0)


def torch_reference(torch_model: nn.Module, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of ``torch_model`` in eval mode (restored afterwards) on float32 ``inputs``."""
    torch = require("torch", "train", "parity against PyTorch needs PyTorch")
    device = next((p.device for p in torch_model.parameters()), torch.device("cpu"))
    was_training = torch_model.training
    torch_model.eval()
    try:
        with torch.no_grad():

            def infer(x: np.ndarray) -> np.ndarray:
                out = torch_model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device))
                return out.float().cpu().numpy()

            return _run_batched(infer, inputs, batch_size)
    finally:
        torch_model.train(was_training)


def check_parity_with(
    infer: Infer,
    reference: nn.Module | np.ndarray,
    inputs: np.ndarray,
    kind: Kind,
    batch_sizes: Sequence[int] | None = None,
    artifact: str = "artifact",
    raise_on_fail: bool = True,
) -> ParityReport:
    """Runtime-agnostic parity: ``infer`` runs the artifact on a batch, ``reference`` is the PyTorch model
    (or its logits on ``inputs``). ``batch_sizes`` defaults to (1, len(inputs)). Failing -> StageFailed."""
    inputs = np.asarray(inputs)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise UsageError(f"parity needs a batch of inputs (N, ...), got shape {inputs.shape}")
    if kind not in ("fp32", "fp16", "int8"):
        raise UsageError(f"unknown parity kind '{kind}': use fp32, fp16 or int8")
    sizes = tuple(batch_sizes) if batch_sizes else (1, len(inputs))
    if any(b < 1 for b in sizes):
        raise UsageError(f"batch sizes must be positive, got {sizes}")
    ref = np.asarray(reference) if isinstance(reference, np.ndarray) else torch_reference(reference, inputs)
    results = []
    for b in sizes:
        metrics = compare_logits(ref, _run_batched(infer, inputs, b))
        results.append(BatchParity(batch_size=b, passed=within_tolerance(kind, metrics), **metrics))
    report = ParityReport(
        artifact=artifact,
        kind=kind,
        samples=len(inputs),
        tolerance=tolerance_text(kind),
        batches=results,
        passed=all(r.passed for r in results),
    )
    return report.raise_if_failed() if raise_on_fail else report


def onnxruntime_infer(onnx_path: str | Path, threads: int | None = None) -> Infer:
    """An ``infer`` for one-input ONNX models on the ONNX Runtime CPU provider (inputs cast to its type)."""
    ort = require("onnxruntime", "cpu", "parity checks run ONNX Runtime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def infer(x: np.ndarray) -> np.ndarray:
        return session.run(None, {inp.name: np.ascontiguousarray(x, dtype=dtype)})[0].astype(np.float32)

    return infer


def check_parity(
    onnx_path: str | Path,
    torch_model: nn.Module,
    inputs: np.ndarray,
    kind: Kind,
    batch_sizes: Sequence[int] | None = None,
    raise_on_fail: bool = True,
) -> ParityReport:
    """Parity of an ONNX file on ONNX Runtime CPU against ``torch_model`` (FP32 model for fp32/fp16, the
    fake-quant model for int8). Failing -> StageFailed with one line naming the numbers."""
    return check_parity_with(
        onnxruntime_infer(onnx_path),
        torch_model,
        inputs,
        kind,
        batch_sizes=batch_sizes,
        artifact=Path(onnx_path).name,
        raise_on_fail=raise_on_fail,
    )
