"""Measure a compiled artifact (latency, accuracy, memory, size) and judge it against a target's budgets.

No torch here: `edgekd bench` runs this on a device that has only its runtime installed. When the target's
runtime or device is not on this machine, the same artifact is measured on a host runtime and the device's
latency is *estimated* from a roofline model; estimated numbers are labelled everywhere and never mixed with
measured ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgekd.runtimes.base import RuntimeSettings
from edgekd.targets import TargetProfile


class TimingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    warmup_runs: int = Field(default=20, ge=0)
    warmup_s: float = Field(default=0.3, ge=0)
    min_runs: int = Field(default=300, ge=1)
    min_s: float = Field(default=1.0, ge=0)
    max_s: float = Field(default=30.0, gt=0)
    eval_batch: int = Field(default=64, ge=1)
    cv_warning: float = Field(default=0.1, gt=0)


def settings_for(target: TargetProfile, precision: str, runtime: str | None = None,
                 device: str | None = None) -> RuntimeSettings:
    r = target.runtime
    return RuntimeSettings(device=device or r.device, precision=precision, threads=r.threads, streams=r.streams,
                           performance_hint=r.performance_hint, graph_optimization=r.graph_optimization,
                           workspace_mb=r.workspace_mb, dla_core=r.dla_core)


def measure(path: Path, runtime: str, settings: RuntimeSettings, eval_x: np.ndarray, labels: np.ndarray | None,
            batch: int, timing: TimingConfig = TimingConfig(), expected_sha256: str | None = None) -> dict[str, Any]:
    """Load once, measure top-1 on the held-out split, then latency at `batch` on a real preallocated input;
    memory in a fresh child process (edgekd.runtimes.memory.measure_memory, the definition gate uses too).

    `labels=None`: no accuracy (top1 None); `eval_x` is then only the input for the latency measurement.
    """
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.memory import measure_memory, model_size_bytes
    from edgekd.runtimes.timing import high_cv_warning, measure_latency

    rt = get_runtime(runtime)
    session = _load(rt, runtime, path, settings, expected_sha256)
    logits = np.concatenate([session.infer(eval_x[i:i + timing.eval_batch])
                             for i in range(0, len(eval_x), timing.eval_batch)])
    if not np.isfinite(logits).all():
        from edgekd.errors import StageFailed

        raise StageFailed(f"{path.name} gives NaN/Inf on the held-out split with {runtime}")
    x = np.ascontiguousarray(eval_x[:batch])
    stats = measure_latency(lambda: session.infer(x), warmup_runs=timing.warmup_runs, warmup_s=timing.warmup_s,
                            min_runs=timing.min_runs, min_s=timing.min_s, max_s=timing.max_s)
    memory = measure_memory(path, runtime, settings, x, expected_sha256=expected_sha256)
    files = [path] + [p for p in (path.with_suffix(".bin"),) if path.suffix == ".xml" and p.is_file()]
    return {
        "top1": None if labels is None else float((logits.argmax(1) == labels).mean()),
        "logits_sample": logits[:4].round(5).tolist(),
        "latency": stats.to_dict(include_samples=False),
        "latency_samples_ms": [round(s, 5) for s in stats.samples_ms],
        "cv_warning": high_cv_warning(stats, timing.cv_warning),
        "host_load": host_load(),
        "memory_bytes": memory["memory_bytes"], "memory_method": memory["method"],
        "size_bytes": model_size_bytes(files),
        "runtime_facts": session.describe(),
        "batch": batch,
    }


def _load(rt: Any, runtime: str, path: Path, settings: RuntimeSettings, expected_sha256: str | None) -> Any:
    kwargs = {"expected_sha256": expected_sha256} if runtime == "tensorrt" and expected_sha256 else {}
    return rt.load(path, settings, **kwargs)


def paired_speedup(a: tuple[Path, RuntimeSettings, str | None], b: tuple[Path, RuntimeSettings, str | None],
                   runtime: str, x: np.ndarray, rounds: int = 40, runs_per_round: int = 25) -> dict[str, Any]:
    """How much faster B is than A (latency A / latency B), measured interleaved in rounds with the gate's
    sampler and paired statistics, so that a machine whose speed changes between two separate measurements
    does not decide the ratio. `a` and `b` are (path, settings, expected sha256)."""
    from edgekd.gate import GateConfig, compare, interleaved_samples
    from edgekd.runtimes import get_runtime

    rt = get_runtime(runtime)
    sa, sb = (_load(rt, runtime, *arm) for arm in (a, b))
    x = np.ascontiguousarray(x)
    cfg = GateConfig(rounds=rounds, runs_per_round=runs_per_round, n_boot=1000)
    st = compare(*interleaved_samples(lambda: sa.infer(x), lambda: sb.infer(x), **cfg.sampler_kwargs()), cfg)
    return {"speedup": 1.0 / st.ratio, "speedup_ci95": [1.0 / st.ci_high, 1.0 / st.ci_low],
            "method": f"interleaved, {rounds} rounds x {runs_per_round} calls per model, Hodges-Lehmann of the "
                      f"per-round latency ratios (spread {st.spread_paired:.1%})"}


def estimate(onnx_path: Path, target: TargetProfile, precision: str, batch: int) -> dict[str, Any]:
    """Roofline estimate for the target's device (labelled estimated)."""
    from edgekd.runtimes.roofline import estimate_latency

    d = target.device
    facts = {"peak_tops_int8": d.peak_int8_tops, "peak_tflops_fp16": d.peak_fp16_tflops,
             "peak_tflops_fp32": d.peak_fp32_tflops, "mem_bandwidth_gbs": d.memory_bandwidth_gbs}
    est = estimate_latency(onnx_path, {k: v for k, v in facts.items() if v}, precision=precision, batch=batch)
    return est.to_dict()


def host_load() -> dict[str, Any] | None:
    """The machine's 1-minute load average and CPU count right after a measurement (None where the OS has no
    load average): a latency measured while other programs kept every CPU busy says little about the model."""
    import os

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return {"loadavg_1m": round(load, 2), "cpus": os.cpu_count() or 1}


def busy_host_reason(row: dict[str, Any], cv_limit: float = 0.10) -> str | None:
    """Why a measured latency cannot be judged, or None: the host was loaded beyond its CPUs (1-minute load
    average above the CPU count) *and* the measurement itself was noisy (cv above `cv_limit`). Either alone is
    not enough: a quiet, stable measurement over budget is a real failure."""
    load, lat = row.get("host_load"), row.get("latency") or {}
    cv = lat.get("cv")
    if not load or cv is None or load["loadavg_1m"] <= load["cpus"] or cv <= cv_limit:
        return None
    return (f"measured on a busy host (load average {load['loadavg_1m']:.1f} on {load['cpus']} CPUs, "
            f"cv {cv:.2f}): rerun `edgekd bench` on a quiet machine")


def _verdict(ok: bool, estimated: bool) -> str:
    word = "pass" if ok else "fail"
    return f"estimated {word}" if estimated else word


def judge(target: TargetProfile, final: dict[str, Any], required_top1: float | None, measured_here: bool,
          ) -> list[dict[str, Any]]:
    """One verdict per budget for the final artifact (`final` is its row)."""
    b = target.budgets
    out: list[dict[str, Any]] = []
    if b.latency_ms is not None:
        key = {"p50": "median_ms", "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms"}[b.latency_percentile]
        if measured_here and final.get("latency"):
            value, basis = final["latency"][key], "measured"
        else:
            est = final.get("estimate") or {}
            value, basis = est.get("latency_ms"), "estimated (roofline; percentile not modelled)"
        if value is not None:
            est_flag = basis != "measured"
            verdict = _verdict(value <= b.latency_ms, est_flag)
            busy = busy_host_reason(final) if verdict == "fail" else None
            if busy:  # over budget, but the neighbours' load may be why: not a verdict on the model
                verdict, basis = "inconclusive", busy
            out.append({"name": f"latency {b.latency_percentile}", "limit": b.latency_ms, "value": value,
                        "limit_text": f"<= {b.latency_ms} ms", "value_text": f"{value:.3f} ms", "basis": basis,
                        "verdict": verdict})
    if b.model_size_mb is not None and final.get("size_bytes") is not None:
        mb = final["size_bytes"] / 1e6
        basis = "measured" if measured_here else f"estimated (size of {final.get('file', 'the artifact')} here)"
        out.append({"name": "model size", "limit": b.model_size_mb, "value": mb, "limit_text": f"<= {b.model_size_mb} MB",
                    "value_text": f"{mb:.3f} MB", "basis": basis,
                    "verdict": _verdict(mb <= b.model_size_mb, not measured_here)})
    if b.peak_memory_mb is not None and final.get("memory_bytes") is not None:
        mb = final["memory_bytes"] / 1e6
        basis = "measured (peak resident memory added by loading and running the model, fresh process)" \
            if measured_here else \
            "estimated (host runtime's resident memory)"
        out.append({"name": "memory", "limit": b.peak_memory_mb, "value": mb, "limit_text": f"<= {b.peak_memory_mb} MB",
                    "value_text": f"{mb:.1f} MB", "basis": basis,
                    "verdict": _verdict(mb <= b.peak_memory_mb, not measured_here)})
    if required_top1 is not None and final.get("top1") is not None:
        basis = "measured" if measured_here else f"measured on the host runtime ({final.get('runtime')}), same artifact"
        out.append({"name": "accuracy (top-1)", "limit": required_top1, "value": final["top1"],
                    "limit_text": f">= {required_top1:.2%}", "value_text": f"{final['top1']:.2%}", "basis": basis,
                    "verdict": "pass" if final["top1"] >= required_top1 else "fail"})
    return out


def layers_not_in_precision(runtime_facts: dict[str, Any], float_layers: list[str] = ()) -> list[dict[str, Any]]:
    """Heavy layers that ran in another precision than asked: from the runtime's `layer_precisions` (OpenVINO
    reads them back from the compiled model); a runtime that cannot say (ONNX Runtime) gets the layers the qad
    stage left in float on purpose."""
    lp = runtime_facts.get("layer_precisions")
    if isinstance(lp, dict):
        return [{"name": x["name"], "type": x.get("type"), "precision": x["precision"]} for x in lp["mismatched"]]
    return [{"name": name, "type": None, "precision": "fp32", "source": "qad float_layers"} for name in float_layers]


def chance_level(num_classes: int, n: int) -> float:
    """Top-1 that guessing reaches within noise: 1/K plus two standard errors of a binomial at p = 1/K over
    the n evaluated images. A model at or below it has not learned."""
    p = 1.0 / max(num_classes, 1)
    return p + 2.0 * float(np.sqrt(p * (1 - p) / max(n, 1)))


def chance_checks(teacher_top1: float | None, final_top1: float | None, num_classes: int, n: int,
                  ) -> list[dict[str, Any]]:
    """Failed checks for a teacher or final model at chance level (none when both learned): a chance-level
    student must never pass, even when a requirement relative to a chance-level teacher would let it."""
    limit = chance_level(num_classes, n)
    out = []
    for who, top1 in (("teacher", teacher_top1), ("final model", final_top1)):
        if top1 is not None and top1 <= limit:
            out.append({"name": f"{who} above chance", "limit": limit, "value": top1,
                        "limit_text": f"> {limit:.2%}", "value_text": f"{top1:.2%}",
                        "basis": f"chance 1/{num_classes} + 2 standard errors over {n} images",
                        "verdict": "fail", "message": f"the {who} did not learn: top-1 {top1:.2%} is at chance "
                        f"level (<= {limit:.2%} for {num_classes} classes on {n} images)"})
    return out


# ------------------------------------------------------------------------------ where to measure, repeats
class MeasurePlan(BaseModel):
    """Where an artifact for `target` is measured on this machine, and why."""

    model_config = ConfigDict(frozen=True)

    runtime: str
    device: str
    on_target: bool  # False: a host runtime substitutes; device latency is estimated
    reason: str = ""


def _nvidia_gpu_here() -> bool:
    import shutil

    return bool(shutil.which("nvidia-smi")) or Path("/dev/nvidia0").exists() or Path("/etc/nv_tegra_release").exists()


def _target_hardware_here(target: TargetProfile) -> bool:
    """Whether this machine has the target's kind of hardware (so a missing runtime is the user's to install)."""
    from edgekd.runtimes.host import host_arch

    r = target.runtime
    if target.device.arch not in (host_arch(), "any"):
        return False
    if r.device in ("CPU",) and r.name in ("openvino", "onnxruntime"):
        return True
    if r.name == "tensorrt" or r.device in ("CUDA", "TensorRT"):
        return _nvidia_gpu_here()
    return False


MOBILE_RUNTIMES = ("executorch", "litert", "coreml")


def plan_measurement(target: TargetProfile, allow_substitute: bool = True) -> MeasurePlan:
    """Measure on the target's runtime and device when this machine has them; else (when allowed) on a host
    runtime, labelled as a substitute. A runtime missing on hardware that could run it is MissingExtra."""
    from edgekd.errors import MissingExtra, UsageError
    from edgekd.runtimes.host import _has, host_arch

    r = target.runtime
    package = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "executorch": "executorch",
               "litert": "ai_edge_litert", "coreml": "coremltools"}[r.name]
    extra = "gpu" if r.name == "tensorrt" or r.device in ("CUDA", "TensorRT") else \
        ("mobile" if r.name in MOBILE_RUNTIMES else "cpu")
    if target.host_measurable:
        return MeasurePlan(runtime=r.name, device=r.device, on_target=True)
    hardware = _target_hardware_here(target)
    if hardware and not _has(package):
        raise MissingExtra(package, extra, f"target {target.name} runs {r.name} on {r.device}, which this machine has")
    why = (f"target {target.name} runs {r.name} on {r.device} ({target.device.name}, {target.device.arch}); this "
           f"machine ({host_arch()}) " + ("lacks that device" if target.device.arch in (host_arch(), "any")
                                          else "is another architecture"))
    if not allow_substitute:
        raise UsageError(why)
    # the same runtime on this CPU first (OpenVINO; ExecuTorch/LiteRT run the phone's file with the same XNNPACK
    # delegate on x86: a host measurement), then ONNX Runtime and OpenVINO on the ONNX files
    same = (r.name,) if r.name == "openvino" or r.name in ("executorch", "litert") and _has(package) else ()
    for name in dict.fromkeys(same + ("onnxruntime", "openvino")):
        if _has(name):
            return MeasurePlan(runtime=name, device="CPU", on_target=False,
                               reason=f"{why}: measured with {name} on this CPU instead, device latency estimated")
    raise MissingExtra("onnxruntime", "cpu", f"no runtime here to measure on instead of {r.name} {r.device}")


def spread(values: list[float]) -> dict[str, float]:
    """Run-to-run spread of repeated measurements (e.g. the p50 of each repeat): min, max, median, CV."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    cv = float(arr.std(ddof=1) / mean) if arr.size > 1 and mean > 0 else 0.0
    return {"n": int(arr.size), "min": float(arr.min()), "max": float(arr.max()), "median": float(np.median(arr)),
            "mean": mean, "cv": cv, "range_over_median": float((arr.max() - arr.min()) / np.median(arr))}


def choose_precision(target: TargetProfile, artifact_precision: str, runtime: str, on_target: bool,
                     label: str) -> str:
    """The precision to run an artifact at for `target`: its own, or fp16 for an fp32 model on a runtime that
    converts (OpenVINO, TensorRT) when the target allows fp16 but not fp32. Anything else is a UsageError."""
    from edgekd.errors import UsageError

    allowed = target.precisions_allowed
    if artifact_precision in allowed or not on_target:
        return artifact_precision
    if artifact_precision == "fp32" and "fp16" in allowed and runtime in ("openvino", "tensorrt"):
        return "fp16"
    raise UsageError(f"target {target.name} ({target.runtime.name} on {target.runtime.device}) runs "
                     f"{', '.join(allowed)} only; {label} is {artifact_precision}: pick another --role or target")


def eval_inputs(eval_set: Path | None, input_shape: tuple[int, ...] | None, batch: int,
                expected_sha256: str | None = None, label: str = "eval set",
                ) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    """(model inputs, labels, class names) from an eval_set.npz, or seeded random inputs (no labels) when
    there is none. The eval set's sha256 is checked against its manifest first when one is given."""
    from edgekd.errors import UsageError
    from edgekd.preprocess import NormalizedImages, read_eval_set

    if eval_set is not None:
        from edgekd.artifacts import verify_file

        if not eval_set.is_file():
            raise UsageError(f"{label}: file is missing ({eval_set})")
        verify_file(eval_set, expected_sha256, label)
        images, labels, pre = read_eval_set(eval_set)
        return NormalizedImages(images, pre), labels, pre.class_names  # normalised a batch at a time
    if input_shape is None:
        raise UsageError("no eval set and the model's input shape is not static: pass --eval-set eval_set.npz")
    rng = np.random.default_rng(0)
    return rng.standard_normal((max(batch, 8), *input_shape)).astype(np.float32), None, None
