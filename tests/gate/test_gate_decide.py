"""edgekd.gate.decide, the gate's decision rule on measured numbers (no runtime, no models): the latency
comparison and the absolute checks the profile's budgets ask for combine into one verdict and exit code."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edgekd.gate import Decision, GateConfig, Measured, compare, decide
from edgekd.stats.sampling import InterleavedSamples


def _measured(slowdown: float, size_mb: float = 1.0, memory_mb: float | None = 10.0) -> Measured:
    rng = np.random.default_rng(0)
    a = 1.0 + 0.01 * rng.standard_normal((30, 20))
    b = a * slowdown
    samples = InterleavedSamples(calls_a_ms=a, calls_b_ms=b, first=("A",) * 30)
    stats = compare(*samples, GateConfig(rounds=30, runs_per_round=20, n_boot=500))
    return Measured(Decision(stats, samples), measure_s=1.0, size_mb=size_mb, memory_mb=memory_mb,
                    memory_method="test")


def _pair(latency_ms=None, size_mb=None, memory_mb=None, top_a=0.90, top_b=0.90, prec=("int8", "int8")):
    budgets = SimpleNamespace(latency_ms=latency_ms, latency_percentile="p90", model_size_mb=size_mb,
                              peak_memory_mb=memory_mb)
    return SimpleNamespace(target=SimpleNamespace(budgets=budgets), a=SimpleNamespace(top1=top_a, precision=prec[0]),
                           b=SimpleNamespace(top1=top_b, precision=prec[1]), required=None)


def test_same_speed_within_budgets_passes() -> None:
    result, notes = decide(_pair(latency_ms=5.0, size_mb=2.0, memory_mb=50.0), _measured(1.0))
    assert (result.verdict, result.exit_code) == ("pass", 0)
    assert [c.name for c in result.checks] == ["latency budget (p90)", "size", "memory", "accuracy"]
    assert notes == []


def test_a_failed_budget_fails_a_gate_whose_latency_passes() -> None:
    result, _ = decide(_pair(size_mb=0.5), _measured(1.0, size_mb=1.0))
    assert (result.verdict, result.exit_code) == ("fail", 1)
    assert result.stats.verdict == "pass"


def test_a_clear_slowdown_fails_and_an_accuracy_change_fails() -> None:
    assert decide(_pair(), _measured(1.5))[0].verdict == "fail"
    assert decide(_pair(top_a=0.90, top_b=0.80), _measured(1.0))[0].verdict == "fail"


def test_without_eval_set_accuracy_is_not_checked_and_says_so() -> None:
    result, notes = decide(_pair(top_a=None, top_b=None, prec=("fp32", "int8")), _measured(1.0))
    assert result.verdict == "pass" and not result.checks
    assert any("accuracy not checked" in n for n in notes) and "baseline runs fp32, candidate int8" in notes
