"""Statistics of the latency gate on seeded synthetic per-round medians.

Noise model: lognormal with the stated CV *per round* (the samples `compare` tests). That is harsher than
it sounds: a per-round median of 20 calls has about a quarter of the per-call noise, so CV 10% per round
is per-call noise of roughly 40%.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import norm

from edgekd.errors import EXIT_BUDGET_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, UsageError
from edgekd.gate.stats import (
    GateConfig,
    GateResult,
    accuracy_check,
    bootstrap_ratio_ci,
    compare,
    decide_with_rerun,
    hodges_lehmann_ratio,
    is_bimodal,
    latency_budget_check,
    memory_check,
    overall,
    size_check,
)

CFG = GateConfig()
N = 30  # rounds, the default


def lognormal(rng: np.random.Generator, n: int, median: float, cv: float) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, np.sqrt(np.log1p(cv**2)), n))


def verdicts(true_ratio: float, cv: float, seeds: range = range(100)) -> Counter[str]:
    out: Counter[str] = Counter()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        a = lognormal(rng, N, 5.0, cv)
        b = lognormal(rng, N, 5.0 * true_ratio, cv)
        out[compare(a, b, CFG).verdict] += 1
    return out


# ------------------------------------------------------------------------------------ error rates
def test_aa_false_alarm_rate_at_most_1_percent() -> None:
    v = verdicts(1.0, 0.10)
    assert v["fail"] <= 1, v
    assert v["pass"] >= 95, v  # and A/A is rarely inconclusive


def test_true_15_percent_slowdown_detected_95_percent() -> None:
    v = verdicts(1.15, 0.10)
    assert v["fail"] >= 95, v
    assert v["pass"] <= 1, v  # a real regression almost never sails through


def test_5_percent_slowdown_passes() -> None:
    assert verdicts(1.05, 0.03, range(30)) == Counter({"pass": 30})
    v = verdicts(1.05, 0.10)  # the noisy edge: mostly pass, rarely fail
    assert v["pass"] >= 75 and v["fail"] <= 5, v


def test_per_call_noise_through_round_medians() -> None:
    """Per-call CV 10% (20 calls per round, medians per round, as the sampler does): no errors."""
    aa, slow = Counter(), Counter()
    for seed in range(30):
        rng = np.random.default_rng(1000 + seed)
        calls = lambda m: np.median(lognormal(rng, N * 20, m, 0.10).reshape(N, 20), axis=1)  # noqa: E731
        aa[compare(calls(5.0), calls(5.0), CFG).verdict] += 1
        slow[compare(calls(5.0), calls(5.75), CFG).verdict] += 1
    assert aa == Counter({"pass": 30}) and slow == Counter({"fail": 30})


# ------------------------------------------------------------------------------------ noise
def test_very_noisy_is_inconclusive() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        s = compare(lognormal(rng, N, 5.0, 0.40), lognormal(rng, N, 5.25, 0.40), CFG)
        assert s.verdict == "inconclusive" and s.noisy, s.reason
        assert "CV" in s.reason


def _mixture(rng: np.random.Generator, n: int, high_fraction: float, gap: float) -> np.ndarray:
    high = rng.random(n) < high_fraction
    return lognormal(rng, n, 5.0, 0.03) * np.where(high, gap, 1.0)


def test_bimodal_is_inconclusive() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = _mixture(rng, N, 0.3, 1.3), _mixture(rng, N, 0.3, 1.3)
        s = compare(a, b, CFG)
        assert s.cv_a <= CFG.max_cv  # it is the bimodality check that decides here, not the CV
        assert s.verdict == "inconclusive" and (s.bimodal_a or s.bimodal_b), s.reason
        assert "bimodal" in s.reason


def test_unimodal_and_single_outlier_round_are_not_bimodal() -> None:
    flagged = sum(is_bimodal(lognormal(np.random.default_rng(s), N, 5.0, 0.10))[0] for s in range(300))
    assert flagged == 0
    x = lognormal(np.random.default_rng(1), N, 5.0, 0.05)
    x[3] *= 2.0  # one disturbed round: skewed, but not a second mode
    assert not is_bimodal(x)[0]
    s = compare(x, lognormal(np.random.default_rng(2), N, 5.0, 0.05), CFG)
    assert s.verdict == "pass" and not s.noisy


def test_huge_slowdown_fails_despite_noise() -> None:
    rng = np.random.default_rng(3)
    s = compare(lognormal(rng, N, 5.0, 0.25), lognormal(rng, N, 10.0, 0.25), CFG)
    assert s.noisy and s.verdict == "fail" and s.ci_low > 1 + CFG.threshold


def _quantile_sample(n: int, median: float, cv: float) -> np.ndarray:
    sigma = np.sqrt(np.log1p(cv**2))
    x = median * np.exp(sigma * norm.ppf((np.arange(n) + 0.5) / n))
    return np.random.default_rng(0).permutation(x)


def test_ci_straddling_threshold_is_inconclusive() -> None:
    s = compare(_quantile_sample(12, 5.0, 0.10), _quantile_sample(12, 5.5, 0.10), CFG)
    assert s.ci_low < 1 + CFG.threshold < s.ci_high
    assert s.verdict == "inconclusive" and not s.noisy and "straddles" in s.reason


def test_significant_slowdown_within_threshold_passes_and_is_named() -> None:
    s = compare(_quantile_sample(30, 5.0, 0.02), _quantile_sample(30, 5.2, 0.02), CFG)
    assert s.verdict == "pass" and s.direction == "slower" and "within the 10% threshold" in s.reason


# ------------------------------------------------------------------------------------ speedup, CI
def test_speedup_is_reported() -> None:
    rng = np.random.default_rng(7)
    s = compare(lognormal(rng, N, 5.0, 0.03), lognormal(rng, N, 4.0, 0.03), CFG)
    assert s.verdict == "pass" and s.direction == "faster" and "faster" in s.reason
    assert s.ci_high < 1.0 and s.p_faster < CFG.alpha


def test_bootstrap_ci_contains_true_ratio() -> None:
    covered = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        a, b = lognormal(rng, N, 5.0, 0.10), lognormal(rng, N, 6.0, 0.10)
        s = compare(a, b, CFG)
        covered += s.ci_low <= 1.2 <= s.ci_high
        assert s.ci_low <= s.ratio <= s.ci_high
    assert covered >= 90  # nominal 95%; percentile bootstraps run a little narrow at n = 30


def test_bootstrap_equals_brute_force_median_of_resampled_pairs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 0.1, 30), rng.lognormal(0.1, 0.1, 31)
    fast = bootstrap_ratio_ci(a, b, n_boot=500, level=0.95, seed=3)
    rs = np.random.default_rng(3)
    ia, ib = rs.integers(0, 30, (500, 30)), rs.integers(0, 31, (500, 31))
    slow = np.quantile(hodges_lehmann_ratio(a[ia], b[ib]), [0.025, 0.975])
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_compare_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(5)
    a, b = lognormal(rng, N, 5.0, 0.1), lognormal(rng, N, 5.2, 0.1)
    assert compare(a, b, CFG) == compare(a, b, CFG)


# ------------------------------------------------------------------------------------ rerun
def test_rerun_when_noisy_decides_on_fresh_samples() -> None:
    rng = np.random.default_rng(11)
    batches = iter([
        (lognormal(rng, N, 5.0, 0.40), lognormal(rng, N, 5.0, 0.40)),  # noisy
        (lognormal(rng, N, 5.0, 0.03), lognormal(rng, N, 5.0, 0.03)),  # quiet
    ])  # fmt: skip
    decision = decide_with_rerun(lambda: next(batches), CFG)
    assert decision.stats.verdict == "pass" and decision.stats.attempts == 2
    assert len(decision.stats.earlier_reasons) == 1 and "noisy" in decision.stats.earlier_reasons[0]
    assert decision.stats.n_a == N and np.median(decision.samples[0]) == pytest.approx(5.0, rel=0.05)


def test_no_rerun_when_disabled_or_not_noise() -> None:
    rng = np.random.default_rng(12)
    noisy = (lognormal(rng, N, 5.0, 0.40), lognormal(rng, N, 5.0, 0.40))
    calls = []
    d = decide_with_rerun(lambda: calls.append(1) or noisy, CFG.model_copy(update={"reruns_when_noisy": 0}))
    assert d.stats.verdict == "inconclusive" and d.stats.attempts == 1 and len(calls) == 1
    straddle = (_quantile_sample(12, 5.0, 0.10), _quantile_sample(12, 5.5, 0.10))
    calls.clear()
    d = decide_with_rerun(lambda: calls.append(1) or straddle, CFG)
    assert d.stats.verdict == "inconclusive" and not d.stats.noisy and len(calls) == 1


# ------------------------------------------------------------------------------------ config, input
def test_config_forbids_unknown_keys_and_checks_ranges() -> None:
    with pytest.raises(ValidationError):
        GateConfig(treshold=0.1)
    with pytest.raises(ValidationError):
        GateConfig(alpha=0)
    assert GateConfig().sampler_kwargs()["rounds"] == 60


def test_too_few_or_bad_samples_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        compare([1.0] * 5, [1.0] * 5, CFG)
    with pytest.raises(UsageError):
        compare([1.0] * 20, [1.0] * 19 + [float("nan")], CFG)


# ------------------------------------------------------------------------------------ absolute checks
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
