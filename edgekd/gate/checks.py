"""Absolute checks of the gate (latency budget, size, memory, accuracy) and the overall verdict.

Kept apart from the A/B latency comparison (edgekd.stats): a budget is a fixed number of the target
profile, not a comparison between two measurements, and an accuracy change is judged two-sided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from edgekd.errors import EXIT_BUDGET_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, UsageError
from edgekd.stats import GateStats, Verdict


class AbsoluteCheck(BaseModel):
    """One measured value against a budget or reference: latency budget, size, memory, accuracy."""

    name: str
    status: Literal["pass", "fail", "changed"]
    measured: float
    limit: float = Field(description="the budget, or the baseline value for accuracy")
    unit: str
    reason: str

    @property
    def failed(self) -> bool:
        """'changed' (an unexplained accuracy gain) blocks like a failure, as in NNCF's conformance."""
        return self.status != "pass"


def latency_budget_check(
    samples_ms: Iterable[float], budget_ms: float, percentile: float = 90
) -> AbsoluteCheck:
    """Candidate latency at the named percentile of its per-call samples against a budget."""
    x = np.asarray(samples_ms, dtype=float).ravel()
    if x.size == 0 or not 0 < percentile <= 100:
        raise UsageError("latency budget check needs samples and a percentile in (0, 100]")
    value = float(np.percentile(x, percentile))
    ok = value <= budget_ms
    word = "within" if ok else "exceeds"
    return AbsoluteCheck(
        name=f"latency budget (p{percentile:g})", status="pass" if ok else "fail", measured=value,
        limit=budget_ms, unit="ms",
        reason=f"candidate p{percentile:g} latency {value:.3f} ms {word} the {budget_ms:g} ms budget",
    )  # fmt: skip


def _budget_check(name: str, value: float, budget: float, unit: str) -> AbsoluteCheck:
    ok = value <= budget
    word = "within" if ok else "exceeds"
    return AbsoluteCheck(
        name=name, status="pass" if ok else "fail", measured=value, limit=budget, unit=unit,
        reason=f"{name} {value:.2f} {unit} {word} the {budget:g} {unit} budget",
    )  # fmt: skip


def size_check(size_mb: float, budget_mb: float) -> AbsoluteCheck:
    """Artifact size (MB) against a budget."""
    return _budget_check("size", size_mb, budget_mb, "MB")


def memory_check(peak_mb: float, budget_mb: float) -> AbsoluteCheck:
    """Peak memory (MB) against a budget."""
    return _budget_check("memory", peak_mb, budget_mb, "MB")


def accuracy_check(candidate: float, baseline: float, tolerance: float = 0.5) -> AbsoluteCheck:
    """Two-sided: |candidate - baseline| <= tolerance (points). A drop fails; a gain beyond it is
    'changed' (unexplained: check the evaluation, or update the baseline), as NNCF's suite does."""
    delta = candidate - baseline
    if abs(delta) <= tolerance:
        status, why = "pass", "within"
    elif delta < 0:
        status, why = "fail", "drop beyond"
    else:
        status, why = "changed", "unexplained gain beyond"
    return AbsoluteCheck(
        name="accuracy", status=status, measured=candidate, limit=baseline, unit="points",
        reason=f"accuracy {candidate:.2f} vs baseline {baseline:.2f} ({delta:+.2f} points): {why} the "
        f"+/-{tolerance:g} tolerance",
    )  # fmt: skip


def requirement_check(candidate: float, required: float, basis: str) -> AbsoluteCheck:
    """The candidate's top-1 (points) against the accuracy requirement its own run recorded (points)."""
    ok = candidate >= required
    return AbsoluteCheck(
        name="accuracy requirement", status="pass" if ok else "fail", measured=candidate, limit=required,
        unit="%", reason=f"candidate top-1 {candidate:.2f}% {'meets' if ok else 'is below'} the run's requirement "
        f">= {required:.2f}% ({basis})",
    )  # fmt: skip


# ----------------------------------------------------------------------------------------- overall
class GateResult(BaseModel):
    """The latency comparison, the absolute checks, and the overall verdict with its exit code."""

    stats: GateStats
    checks: list[AbsoluteCheck] = Field(default_factory=list)
    verdict: Verdict
    exit_code: int
    reason: str

    @model_validator(mode="after")
    def _exit_code_matches(self) -> GateResult:
        if self.exit_code != _EXIT[self.verdict]:
            raise ValueError(f"exit_code {self.exit_code} does not match verdict {self.verdict!r}")
        return self


_EXIT = {"pass": EXIT_OK, "fail": EXIT_BUDGET_FAILED, "inconclusive": EXIT_INCONCLUSIVE}


def overall(stats: GateStats, checks: Iterable[AbsoluteCheck] = ()) -> GateResult:
    """fail if the latency comparison or any check fails (or changed); inconclusive if the latency
    comparison is inconclusive and nothing failed; pass otherwise. Exit codes 0 / 1 / 3."""
    checks = list(checks)
    failed = [c for c in checks if c.failed]
    if stats.verdict == "fail" or failed:
        verdict: Verdict = "fail"
        why = ([stats.reason] if stats.verdict == "fail" else []) + [c.reason for c in failed]
        reason = "Gate failed: " + "; ".join(w[0].lower() + w[1:].rstrip(".") for w in why) + "."
    elif stats.verdict == "inconclusive":
        verdict, reason = "inconclusive", "Gate inconclusive: " + stats.reason
    else:
        verdict, reason = "pass", "Gate passed: " + stats.reason
    return GateResult(stats=stats, checks=checks, verdict=verdict, exit_code=_EXIT[verdict], reason=reason)
