"""Target device profiles: `targets/*.yaml`, validated strictly (extra="forbid").

A profile holds device and runtime facts and the device budgets (latency at a named percentile, size,
memory, precisions allowed). Accuracy requirements are run options whose defaults a profile may set.
Every number in a shipped profile carries its source in `sources`.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekd.accuracy import AccuracyRequirement
from edgekd.configio import first_error, read_yaml_mapping
from edgekd.errors import UsageError
from edgekd.paths import require_file
from edgekd.runtimes.identity import DeviceIdentity

Precision = Literal["fp32", "fp16", "bf16", "int8"]
RuntimeName = Literal["openvino", "onnxruntime", "tensorrt", "executorch", "litert", "coreml"]
# How the INT8 student is made: NNCF fake quant (OpenVINO/ORT/TensorRT, always run: the ONNX/IR artifacts and the
# host measurement come from it) and PT2E routes with a mobile runtime's own quantizer (edgekd.quant.pt2e).
Quantizer = Literal["nncf", "pt2e-xnnpack", "pt2e-litert"]
Percentile = Literal["p50", "p90", "p95", "p99"]

# What each runtime can execute at all; a profile asking for more is refused when it is loaded.
RUNTIME_PRECISIONS: dict[str, dict[str, set[str]]] = {
    "openvino": {"CPU": {"fp32", "bf16", "int8", "fp16"}, "GPU": {"fp32", "fp16", "int8"},
                 "NPU": {"fp16", "int8"}},
    "onnxruntime": {"CPU": {"fp32", "int8"}, "XNNPACK": {"fp32", "int8"}, "CUDA": {"fp32", "fp16", "int8"},
                    "TensorRT": {"fp32", "fp16", "int8"}},
    "tensorrt": {"GPU": {"fp32", "fp16", "int8"}, "DLA": {"fp16", "int8"}},
    "executorch": {"XNNPACK": {"fp32", "int8"}},
    "litert": {"CPU": {"fp32", "int8"}, "XNNPACK": {"fp32", "int8"}},
    "coreml": {"ALL": {"fp32", "fp16", "int8"}, "CPU_AND_NE": {"fp16", "int8"}, "CPU": {"fp32", "fp16", "int8"}},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceFacts(_Strict):
    name: str
    kind: Literal["cpu", "gpu", "npu", "soc"]
    arch: str = "x86_64"
    peak_int8_tops: float | None = None  # dense
    peak_fp16_tflops: float | None = None  # dense
    peak_fp32_tflops: float | None = None
    memory_bandwidth_gbs: float | None = None
    memory_gb: float | None = None
    identity: DeviceIdentity | None = None  # what the device is, checkably (edgekd.runtimes.identity)
    # roofline calibration (edgekd.runtimes.roofline): fractions of peak reached, and fixed cost per heavy layer
    compute_efficiency: float | None = Field(default=None, gt=0, le=1)  # fp32 / fp16 ops
    compute_efficiency_int8: float | None = Field(default=None, gt=0, le=1)
    memory_efficiency: float | None = Field(default=None, gt=0, le=1)
    layer_overhead_us: float | None = Field(default=None, ge=0)
    call_overhead_us: float | None = Field(default=None, ge=0)  # per inference (dispatch, synchronisation)


class RuntimeOptions(_Strict):
    name: RuntimeName
    device: str = "CPU"  # OpenVINO CPU/GPU/NPU; ORT CPU/XNNPACK/CUDA/TensorRT; TensorRT GPU/DLA
    threads: int | None = None
    streams: int = 1
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    workspace_mb: int = 1024
    dla_core: int | None = None
    builder_optimization_level: int = Field(default=3, ge=0, le=5)  # TensorRT builder optimisation level


class Budgets(_Strict):
    model_class: str  # which model the budgets are for, e.g. "ResNet-20-class classifier, 32x32, batch 1"
    latency_ms: float | None = Field(default=None, gt=0)
    latency_percentile: Percentile = "p90"
    model_size_mb: float | None = Field(default=None, gt=0)
    peak_memory_mb: float | None = Field(default=None, gt=0)


class AccuracyDefaults(AccuracyRequirement):
    """A profile's defaults for the run's accuracy requirement (same fields, edgekd.accuracy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetProfile(_Strict):
    name: str
    description: str
    device: DeviceFacts
    runtime: RuntimeOptions
    precision: Precision
    precisions_allowed: list[Precision]
    input_size: tuple[int, int] | None = None  # None: the dataset decides
    batch_size: int = Field(default=1, ge=1)
    budgets: Budgets
    accuracy: AccuracyDefaults = AccuracyDefaults()
    sources: dict[str, str] = Field(default_factory=dict)
    # the target's INT8 route first; further PT2E routes add artifacts for other mobile runtimes to the bundle
    quantizers: list[Quantizer] = Field(default_factory=lambda: ["nncf"], min_length=1)
    calibration: dict | None = None  # set from a calibration overlay (edgekd calibrate), never written by hand

    @model_validator(mode="after")
    def _check(self) -> "TargetProfile":
        if self.precision not in self.precisions_allowed:
            raise ValueError(f"precision {self.precision} is not in precisions_allowed {self.precisions_allowed}")
        caps = RUNTIME_PRECISIONS[self.runtime.name]
        if self.runtime.device not in caps:
            raise ValueError(
                f"runtime {self.runtime.name} has no device {self.runtime.device!r} (known: {', '.join(caps)})")
        cannot = [p for p in self.precisions_allowed if p not in caps[self.runtime.device]]
        if cannot:
            raise ValueError(
                f"{self.runtime.name} on {self.runtime.device} cannot run {', '.join(cannot)} "
                f"(it runs {', '.join(sorted(caps[self.runtime.device]))})")
        if len(set(self.quantizers)) != len(self.quantizers):
            raise ValueError(f"quantizers lists a route twice: {self.quantizers}")
        return self

    @property
    def pt2e_routes(self) -> list[str]:
        """The PT2E routes this target's runs take (edgekd.quant.pt2e), in the profile's order."""
        return [q for q in self.quantizers if q != "nncf"]

    @property
    def host_measurable(self) -> bool:
        """Whether this machine is the target's device (its identity matches) and runs the target's runtime on it
        (else: host runtime + estimate)."""
        from edgekd.runtimes.host import host_can_run
        from edgekd.runtimes.identity import check_target

        return host_can_run(self.runtime.name, self.runtime.device, self.device.arch) and check_target(self).matches


def targets_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("EDGEKD_TARGETS_DIR"):
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parent.parent / "targets")  # source checkout / editable install
    dirs.append(Path(sys.prefix) / "share" / "edgekd" / "targets")  # wheel install (data-files)
    return [d for d in dirs if d.is_dir()]


def available_targets() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in targets_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


# Fields that older profiles carry and that never had an effect: accepted with a warning, so a profile that
# loaded before still loads and gives the same results (rejecting it would break it for no gain).
REMOVED_FIELDS = {
    "fallback_precision": "the float-layer fallback keeps layers out of INT8 and the runtime runs them in the "
                          "precision it gives non-INT8 layers (TensorRT: fp16 with INT8; OpenVINO: the precision "
                          "hint); it was never read",
}


def load_target_file(path: Path, overlay: bool = True) -> TargetProfile:
    """The profile in `path`, with its calibration overlay applied unless `overlay` is False."""
    data = read_yaml_mapping(path, "target file")
    for key in REMOVED_FIELDS.keys() & data.keys():
        del data[key]
        sys.stderr.write(f"warning: target file {path}: '{key}' is ignored ({REMOVED_FIELDS[key]}); delete it\n")
    from edgekd.runtimes.calibration import apply_overlay

    try:
        profile = TargetProfile.model_validate(data)
        return apply_overlay(profile, path) if overlay else profile
    except ValidationError as exc:
        raise UsageError(
            f"target file {path}: {first_error(exc)} (see targets/README.md for the fields)"
        ) from None


def load_target(name_or_path: str) -> TargetProfile:
    """A shipped profile by name (`jetson`) or a YAML file path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path)
        require_file(path, "target file", "a target profile .yaml file")
        return load_target_file(path)
    known = available_targets()
    if name_or_path not in known:
        near = difflib.get_close_matches(name_or_path, list(known), n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise UsageError(
            f"unknown target '{name_or_path}': {hint}(`edgekd targets` lists {len(known)} targets; "
            "or pass a path to a YAML file)")
    return load_target_file(known[name_or_path])
