"""Measure a compiled artifact: latency, accuracy, memory, size; a roofline estimate for a device not here;
the paired speed-up of two artifacts; the run-to-run spread of repeats; the inputs from an eval set."""

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


def settings_for(target: TargetProfile, precision: str, device: str | None = None) -> RuntimeSettings:
    """The profile's runtime options at `precision`, on `device` (default: the profile's)."""
    r = target.runtime
    return RuntimeSettings(device=device or r.device, precision=precision, threads=r.threads, streams=r.streams,
                           performance_hint=r.performance_hint, graph_optimization=r.graph_optimization,
                           workspace_mb=r.workspace_mb, dla_core=r.dla_core)


def measure(path: Path, runtime: str, settings: RuntimeSettings, eval_x: np.ndarray, labels: np.ndarray | None,
            batch: int, timing: TimingConfig = TimingConfig(), expected_sha256: str | None = None,
            keep_predictions: bool = False) -> dict[str, Any]:
    """Load once, measure top-1 on the held-out split, then latency at `batch` on a real preallocated input;
    memory in a fresh child process (edgekd.runtimes.memory.measure_memory, the definition gate uses too).

    `labels=None`: no accuracy (top1 None); `eval_x` is then only the input for the latency measurement.
    `keep_predictions`: also return "predictions", the top-1 class of every row of `eval_x` (an int64 array, not
    JSON: the caller derives per-class or per-subset figures from it instead of running the model again).
    """
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.memory import measure_memory, model_size_bytes
    from edgekd.runtimes.timing import high_cv_warning, measure_latency

    rt = get_runtime(runtime)
    session = rt.load(path, settings, expected_sha256=expected_sha256)
    logits = np.concatenate([session.infer(eval_x[i:i + timing.eval_batch])
                             for i in range(0, len(eval_x), timing.eval_batch)])
    if not np.isfinite(logits).all():
        from edgekd.errors import StageFailed

        raise StageFailed(f"{path.name} gives NaN/Inf on the held-out split with {runtime}")
    x = np.ascontiguousarray(eval_x[:batch])
    stats = measure_latency(lambda: session.infer(x), warmup_runs=timing.warmup_runs, warmup_s=timing.warmup_s,
                            min_runs=timing.min_runs, min_s=timing.min_s, max_s=timing.max_s)
    from edgekd.runtimes.native import native_figures

    native = native_figures(session, stats)
    memory = measure_memory(path, runtime, settings, x, expected_sha256=expected_sha256)
    files = [path] + [p for p in (path.with_suffix(".bin"),) if path.suffix == ".xml" and p.is_file()]
    pred = logits.argmax(1)
    return {
        **({"predictions": pred.astype(np.int64)} if keep_predictions else {}),
        "top1": None if labels is None else float((pred == labels).mean()),
        "logits_sample": logits[:4].round(5).tolist(),
        "latency": stats.to_dict(include_samples=False),
        "latency_samples_ms": [round(s, 5) for s in stats.samples_ms],
        "runtime_latency": native,
        "cv_warning": high_cv_warning(stats, timing.cv_warning),
        "host_load": host_load(),
        "memory_bytes": memory["memory_bytes"], "memory_method": memory["method"],
        "size_bytes": model_size_bytes(files),
        "runtime_facts": session.describe(),
        "batch": batch,
    }


def paired_speedup(a: tuple[Path, RuntimeSettings, str | None], b: tuple[Path, RuntimeSettings, str | None],
                   runtime: str, x: np.ndarray, rounds: int = 40, runs_per_round: int = 25) -> dict[str, Any]:
    """How much faster B is than A (latency A / latency B), measured interleaved in rounds with the gate's
    sampler and paired statistics, so that a machine whose speed changes between two separate measurements
    does not decide the ratio. `a` and `b` are (path, settings, expected sha256)."""
    from edgekd.stats import GateConfig, compare, interleaved_samples
    from edgekd.runtimes import get_runtime

    rt = get_runtime(runtime)
    sa, sb = (rt.load(path, settings, expected_sha256=sha) for path, settings, sha in (a, b))
    x = np.ascontiguousarray(x)
    cfg = GateConfig(rounds=rounds, runs_per_round=runs_per_round, n_boot=1000)
    st = compare(*interleaved_samples(lambda: sa.infer(x), lambda: sb.infer(x), **cfg.sampler_kwargs()), cfg)
    return {"speedup": 1.0 / st.ratio, "speedup_ci95": [1.0 / st.ci_high, 1.0 / st.ci_low],
            "method": f"interleaved, {rounds} rounds x {runs_per_round} calls per model, Hodges-Lehmann of the "
                      f"per-round latency ratios (spread {st.spread_paired:.1%})"}


def estimate(onnx_path: Path, target: TargetProfile, precision: str, batch: int) -> dict[str, Any]:
    """Roofline estimate for the target's device (labelled estimated), with its model and measured error."""
    from edgekd.runtimes.calibration import estimate_for_target

    return estimate_for_target(onnx_path, target, precision, batch)


def host_load() -> dict[str, Any] | None:
    """The machine's 1-minute load average and CPU count right after a measurement (None where the OS has no
    load average): a latency measured while other programs kept every CPU busy says little about the model."""
    import os

    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return {"loadavg_1m": round(load, 2), "cpus": os.cpu_count() or 1}


def spread(values: list[float]) -> dict[str, float]:
    """Run-to-run spread of repeated measurements (e.g. the p50 of each repeat): min, max, median, CV."""
    arr = np.asarray(values, dtype=float)
    mean = float(arr.mean())
    cv = float(arr.std(ddof=1) / mean) if arr.size > 1 and mean > 0 else 0.0
    return {"n": int(arr.size), "min": float(arr.min()), "max": float(arr.max()), "median": float(np.median(arr)),
            "mean": mean, "cv": cv, "range_over_median": float((arr.max() - arr.min()) / np.median(arr))}


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
