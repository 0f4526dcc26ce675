from __future__ import annotations

import time

import numpy as np
import pytest

from edgekd.errors import UsageError
from edgekd.runtimes.timing import METHODOLOGY, LatencyStats, high_cv_warning, measure_latency


def test_respects_min_runs_and_min_duration() -> None:
    calls = []
    stats = measure_latency(lambda: calls.append(1), warmup_runs=7, warmup_s=0.0, min_runs=50, min_s=0.0)
    assert stats.warmup_runs == 7
    assert stats.n == 50 and len(stats.samples_ms) == 50
    assert len(calls) == 57

    stats = measure_latency(lambda: time.sleep(0.002), warmup_runs=1, warmup_s=0.0, min_runs=5, min_s=0.1)
    assert stats.n >= 5
    assert sum(stats.samples_ms) >= 100.0  # min_s counts timed sample time
    assert stats.n < 100  # stopped once both minimums held (2 ms per call, 0.1 s)
    assert stats.min_ms >= 2.0


def test_warmup_by_time_and_count() -> None:
    stats = measure_latency(lambda: None, warmup_runs=3, warmup_s=0.05, min_runs=1, min_s=0.0)
    assert stats.warmup_runs > 3  # time kept it warming beyond the count
    assert stats.warmup_s >= 0.05


def test_max_bounds_win() -> None:
    stats = measure_latency(lambda: None, warmup_runs=0, warmup_s=0.0, min_runs=10, min_s=10.0, max_runs=25)
    assert stats.n == 25
    stats = measure_latency(lambda: time.sleep(0.01), warmup_runs=0, warmup_s=0.0, min_runs=1000, min_s=0.0,
                            max_runs=2000, max_s=0.1)
    assert 2 <= stats.n < 1000  # max_s stopped it long before min_runs (not 5 <=: a loaded host oversleeps)


def test_statistics_match_numpy() -> None:
    rng = np.random.default_rng(0)
    samples = list(rng.gamma(4.0, 0.5, size=333))
    stats = LatencyStats.from_samples(samples)
    arr = np.asarray(samples)
    assert stats.median_ms == pytest.approx(np.percentile(arr, 50), rel=1e-12)
    assert stats.p90_ms == pytest.approx(np.percentile(arr, 90), rel=1e-12)
    assert stats.p95_ms == pytest.approx(np.percentile(arr, 95), rel=1e-12)
    assert stats.p99_ms == pytest.approx(np.percentile(arr, 99), rel=1e-12)
    assert stats.mean_ms == pytest.approx(arr.mean(), rel=1e-12)
    assert stats.std_ms == pytest.approx(arr.std(ddof=1), rel=1e-12)
    assert stats.cv == pytest.approx(arr.std(ddof=1) / arr.mean(), rel=1e-12)
    assert (stats.min_ms, stats.max_ms) == (arr.min(), arr.max())
    assert stats.percentile(75) == pytest.approx(np.percentile(arr, 75))


def test_measured_percentiles_match_numpy_on_samples() -> None:
    stats = measure_latency(lambda: sum(range(200)), warmup_runs=2, warmup_s=0.0, min_runs=100, min_s=0.0)
    arr = np.asarray(stats.samples_ms)
    assert stats.p99_ms == pytest.approx(np.percentile(arr, 99))
    assert stats.median_ms == pytest.approx(np.median(arr))
    assert "samples_ms" not in stats.to_dict(include_samples=False)


def test_high_cv_warning() -> None:
    steady = LatencyStats.from_samples([1.0, 1.01, 0.99, 1.0])
    noisy = LatencyStats.from_samples([1.0, 3.0, 1.0, 5.0])
    assert high_cv_warning(steady) is None
    msg = high_cv_warning(noisy, threshold=0.1)
    assert msg is not None and "cv=" in msg


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        measure_latency(lambda: None, min_runs=10, max_runs=5)
    with pytest.raises(UsageError):
        LatencyStats.from_samples([])


def test_methodology_states_what_is_timed() -> None:
    for phrase in ("synchronous", "preallocated host", "output back into a host", "preprocessing", "pinned"):
        assert phrase in METHODOLOGY
