"""Latency measurement with a stated methodology; imports no runtime.

`measure_latency(fn)` warms up by count and by time, then times single calls of `fn` with
`time.perf_counter_ns()` (around the call only, nothing else in the interval) until both a minimum count and a
minimum duration are reached. Percentiles use numpy's default (linear interpolation) on the recorded samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgekd.errors import UsageError

METHODOLOGY = (
    "Each sample is one synchronous inference of one batch, timed with time.perf_counter_ns() around the "
    "runtime's infer call only. The input is a preallocated host (CPU memory) array created before timing; "
    "the interval includes the host-to-device copy where the device is not the host, the inference itself, "
    "and the copy of the first output back into a host numpy array. It excludes image decoding, resizing, "
    "normalisation and any other preprocessing or postprocessing (softmax, top-k). One request at a time "
    "(no async pipelining, no concurrent requests). The runtime's thread count, streams and precision are "
    "pinned explicitly and recorded with the result. Warm-up runs (by both count and time) are discarded. "
    "Percentiles use numpy linear interpolation over the recorded samples; std is the sample standard "
    "deviation (ddof=1) and cv = std / mean."
)


# a profile's latency_percentile -> the LatencyStats field (and latency dict key) that holds it
PERCENTILE_FIELDS = {"p50": "median_ms", "p90": "p90_ms", "p95": "p95_ms", "p99": "p99_ms"}


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds for one measured configuration."""

    n: int
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    cv: float
    min_ms: float
    max_ms: float
    warmup_runs: int
    warmup_s: float
    total_s: float
    samples_ms: list[float] = field(default_factory=list, repr=False)

    def percentile(self, q: float) -> float:
        """Any percentile (0..100) of the samples, numpy linear interpolation."""
        return float(np.percentile(np.asarray(self.samples_ms), q))

    def to_dict(self, include_samples: bool = True) -> dict[str, Any]:
        out = asdict(self)
        if not include_samples:
            out.pop("samples_ms")
        return out

    @classmethod
    def from_samples(
        cls, samples_ms: list[float], *, warmup_runs: int = 0, warmup_s: float = 0.0, total_s: float | None = None
    ) -> LatencyStats:
        if not samples_ms:
            raise UsageError("no latency samples to summarise")
        arr = np.asarray(samples_ms, dtype=np.float64)
        mean = float(arr.mean())
        std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
        p50, p90, p95, p99 = (float(v) for v in np.percentile(arr, [50, 90, 95, 99]))
        return cls(
            n=int(arr.size),
            median_ms=p50,
            p90_ms=p90,
            p95_ms=p95,
            p99_ms=p99,
            mean_ms=mean,
            std_ms=std,
            cv=std / mean if mean > 0 else 0.0,
            min_ms=float(arr.min()),
            max_ms=float(arr.max()),
            warmup_runs=warmup_runs,
            warmup_s=warmup_s,
            total_s=float(arr.sum() / 1e3) if total_s is None else total_s,
            samples_ms=[float(v) for v in arr],
        )


def measure_latency(
    fn: Callable[[], Any],
    *,
    warmup_runs: int = 10,
    warmup_s: float = 0.5,
    min_runs: int = 200,
    min_s: float = 2.0,
    max_runs: int = 100_000,
    max_s: float = 60.0,
) -> LatencyStats:
    """Time `fn()` after warm-up; stop once both `min_runs` and `min_s` are reached, or at a max bound.

    Warm-up runs until at least `warmup_runs` calls AND `warmup_s` seconds have passed. The timed phase runs
    until at least `min_runs` samples AND `min_s` seconds of summed sample time, but never beyond `max_runs`
    samples or `max_s` seconds of wall time (whichever comes first; the max bounds win over the minimums).
    `total_s` is the wall time of the timed phase, including the loop's own small overhead.
    """
    if min(warmup_runs, min_runs) < 0 or min(warmup_s, min_s) < 0:
        raise UsageError("warm-up and minimum run counts/durations must be >= 0")
    if max_runs < 1 or max_s <= 0:
        raise UsageError("max_runs must be >= 1 and max_s > 0")
    if min_runs > max_runs:
        raise UsageError(f"min_runs ({min_runs}) exceeds max_runs ({max_runs})")

    clock = time.perf_counter_ns
    warm_start = clock()
    warm_limit = int(warmup_s * 1e9)
    warm_done = 0
    while warm_done < warmup_runs or clock() - warm_start < warm_limit:
        fn()
        warm_done += 1
    warm_elapsed = (clock() - warm_start) / 1e9

    samples_ns: list[int] = []
    summed_ns = 0
    min_ns, max_ns = int(min_s * 1e9), int(max_s * 1e9)
    start = clock()
    while True:
        t0 = clock()
        fn()
        dt = clock() - t0
        samples_ns.append(dt)
        summed_ns += dt
        n = len(samples_ns)
        if n >= max_runs or clock() - start >= max_ns:
            break
        if n >= min_runs and summed_ns >= min_ns:
            break
    total = (clock() - start) / 1e9
    return LatencyStats.from_samples(
        [s / 1e6 for s in samples_ns], warmup_runs=warm_done, warmup_s=warm_elapsed, total_s=total
    )


def high_cv_warning(stats: LatencyStats, threshold: float = 0.1) -> str | None:
    """A one-line warning when the coefficient of variation exceeds `threshold`, else None."""
    if stats.cv <= threshold:
        return None
    return (
        f"latency is noisy: cv={stats.cv:.2f} > {threshold:.2f} over {stats.n} runs "
        f"(median {stats.median_ms:.3f} ms, p99 {stats.p99_ms:.3f} ms); close other programs, pin threads, "
        "or measure longer before trusting tail percentiles"
    )
