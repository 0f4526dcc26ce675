"""Absolute checks of the gate and the overall verdict with its exit code."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edgekd.errors import EXIT_BUDGET_FAILED, EXIT_INCONCLUSIVE, EXIT_OK
from edgekd.gate.checks import (
    GateResult,
    accuracy_check,
    latency_budget_check,
    memory_check,
    overall,
    size_check,
)
from edgekd.stats.paired import GateConfig, compare

CFG = GateConfig()
N = CFG.rounds


def lognormal(rng: np.random.Generator, n: int, median: float, cv: float) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, np.sqrt(np.log1p(cv**2)), n))


def test_absolute_checks() -> None:
    calls = np.arange(1, 101, dtype=float)  # p90 = 90.1
    assert latency_budget_check(calls, 95.0, percentile=90).status == "pass"
    fail = latency_budget_check(calls, 50.0, percentile=99)
    assert fail.status == "fail" and fail.name == "latency budget (p99)" and "p99" in fail.reason
    assert size_check(4.0, 5.0).status == "pass" and size_check(6.0, 5.0).status == "fail"
    assert memory_check(100.0, 64.0).status == "fail"
    assert accuracy_check(90.3, 90.0).status == "pass"
    assert accuracy_check(89.4, 90.0).status == "fail"
    changed = accuracy_check(90.8, 90.0, tolerance=0.5)
    assert changed.status == "changed" and changed.failed and "unexplained" in changed.reason


def _stats(verdict: str):
    rng = np.random.default_rng(0)
    ratio = {"pass": 1.0, "fail": 1.3, "inconclusive": 1.0}[verdict]
    cv = 0.4 if verdict == "inconclusive" else 0.03
    s = compare(lognormal(rng, N, 5.0, cv), lognormal(rng, N, 5.0 * ratio, cv), CFG)
    assert s.verdict == verdict
    return s


def test_overall_verdicts_and_exit_codes() -> None:
    ok, bad = size_check(1, 2), size_check(3, 2)
    assert overall(_stats("pass"), [ok]).exit_code == EXIT_OK == 0
    assert overall(_stats("fail"), [ok]).exit_code == EXIT_BUDGET_FAILED == 1
    assert overall(_stats("pass"), [ok, bad]).exit_code == 1
    assert overall(_stats("inconclusive"), [ok]).exit_code == EXIT_INCONCLUSIVE == 3
    r = overall(_stats("inconclusive"), [bad])  # a failed budget outranks an undecided comparison
    assert r.verdict == "fail" and r.exit_code == 1 and "size" in r.reason
    assert overall(_stats("pass"), [accuracy_check(92.0, 90.0)]).exit_code == 1
    assert overall(_stats("pass")).verdict == "pass"


def test_gate_result_rejects_inconsistent_exit_code() -> None:
    r = overall(_stats("pass"))
    with pytest.raises(ValidationError):
        GateResult(stats=r.stats, verdict="pass", exit_code=1, reason="x")
