"""Interleaved sampler: order, counts, shapes; callables do real work (numpy matmuls), no sleeps."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from edgekd.errors import UsageError
from edgekd.stats.sampling import interleaved_samples
from edgekd.stats.paired import GateConfig, compare

RNG = np.random.default_rng(0)
SMALL = RNG.standard_normal((32, 32)).astype(np.float32)
LARGE = RNG.standard_normal((256, 256)).astype(np.float32)


def test_alternates_order_and_counts_calls() -> None:
    log: list[str] = []

    def run_a() -> object:
        log.append("A")
        return SMALL @ SMALL

    def run_b() -> object:
        log.append("B")
        return SMALL @ SMALL.T

    s = interleaved_samples(run_a, run_b, rounds=6, runs_per_round=5, warmup_runs=3)
    assert s.first == ("A", "B", "A", "B", "A", "B")
    assert log[:6] == ["A", "B"] * 3  # warm-up alternates
    timed = log[6:]
    assert len(timed) == 6 * 2 * 5 and log.count("A") == log.count("B") == 3 + 30
    blocks = ["".join(timed[i : i + 5]) for i in range(0, len(timed), 5)]
    assert blocks == ["AAAAA", "BBBBB", "BBBBB", "AAAAA"] * 3  # ABBA: drift cancels
    assert s.calls_a_ms.shape == s.calls_b_ms.shape == (6, 5) and s.rounds == 6
    assert np.all(s.calls_a_ms > 0) and np.all(s.calls_b_ms > 0)
    a, b = s  # unpacks to the per-round medians compare() tests
    assert a.shape == b.shape == (6,)
    np.testing.assert_array_equal(a, np.median(s.calls_a_ms, axis=1))


def test_random_order_is_seeded() -> None:
    f = lambda: SMALL @ SMALL  # noqa: E731
    one = interleaved_samples(f, f, rounds=20, runs_per_round=1, warmup_runs=0, order="random", seed=4)
    two = interleaved_samples(f, f, rounds=20, runs_per_round=1, warmup_runs=0, order="random", seed=4)
    assert one.first == two.first and set(one.first) == {"A", "B"}


def test_gc_state_is_restored() -> None:
    f = lambda: SMALL @ SMALL  # noqa: E731
    assert gc.isenabled()
    interleaved_samples(f, f, rounds=2, runs_per_round=2, warmup_runs=0)
    assert gc.isenabled()


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"runs_per_round": 0}, {"order": "abba"}])
def test_bad_arguments_are_usage_errors(kwargs: dict) -> None:
    f = lambda: None  # noqa: E731
    with pytest.raises(UsageError):
        interleaved_samples(f, f, **kwargs)


def test_end_to_end_heavier_candidate_fails() -> None:
    """A candidate doing ~500x the flops of the baseline: a margin no shared runner can hide."""
    cfg = GateConfig(rounds=12, runs_per_round=5, warmup_runs=5)
    a, b = interleaved_samples(lambda: SMALL @ SMALL, lambda: LARGE @ LARGE, **cfg.sampler_kwargs())
    assert compare(a, b, cfg).verdict == "fail"
