"""Statistics of the latency gate on seeded synthetic per-round medians.

Noise model of a shared runner (what bench/RESULTS.md measured on the 2-vCPU machine): the machine
switches between states that last seconds (the same model at 0.42 ms, then 0.70 ms), so both arms of a
round see the same state, plus independent noise per arm and round. `machine` draws that common state;
`arm` adds the independent part. Paired comparison (the default) cancels the common state; the
independent (Mann-Whitney) comparison is tested on independent samples.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import norm

from edgekd.errors import UsageError
from edgekd.stats.paired import (
    GateConfig,
    bootstrap_paired_ci,
    bootstrap_ratio_ci,
    compare,
    decide_with_rerun,
    hodges_lehmann_ratio,
    is_bimodal,
    walsh_median,
)

CFG = GateConfig(n_boot=500)  # fewer resamples than the default 2000 keep 1,500 comparisons fast
IND = CFG.model_copy(update={"pairing": "none"})
N = CFG.rounds  # 60


def lognormal(rng: np.random.Generator, n: int, median: float, cv: float) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, np.sqrt(np.log1p(cv**2)), n))


def machine(rng: np.random.Generator, n: int = N, slow_state: float = 0.70 / 0.42, stretch: int = 8) -> np.ndarray:
    """Common state per round: runs of `stretch` rounds in a fast (1.0) or slow state, drawn at random."""
    states = rng.random(n // stretch + 1) < 0.5
    return np.repeat(np.where(states, slow_state, 1.0), stretch)[:n] * lognormal(rng, n, 1.0, 0.05)


def pair(rng: np.random.Generator, ratio: float, cv: float = 0.05, **kw) -> tuple[np.ndarray, np.ndarray]:
    m = machine(rng, **kw)
    return 0.42 * m * lognormal(rng, N, 1.0, cv), 0.42 * ratio * m * lognormal(rng, N, 1.0, cv)


def verdicts(ratio: float, cfg: GateConfig = CFG, seeds: range = range(100), **kw) -> Counter[str]:
    out: Counter[str] = Counter()
    for seed in seeds:
        out[compare(*pair(np.random.default_rng(seed), ratio, **kw), cfg).verdict] += 1
    return out


# ------------------------------------------------------------------------------------ error rates, paired
def test_aa_on_a_switching_machine_passes_without_false_alarms() -> None:
    v = verdicts(1.0)
    assert v["fail"] == 0, v
    assert v["pass"] >= 95, v


def test_true_15_percent_slowdown_detected_95_percent_on_a_switching_machine() -> None:
    v = verdicts(1.15, cv=0.07)
    assert v["fail"] >= 95, v
    assert v["pass"] == 0, v


def test_independent_comparison_of_the_same_samples_is_mostly_inconclusive() -> None:
    """Why the gate pairs: the machine's states make each arm bimodal; compared unpaired, A/A cannot decide."""
    v = verdicts(1.0, IND, range(30))
    assert v["inconclusive"] >= 20 and v["fail"] == 0, v


def test_5_percent_slowdown_passes() -> None:
    assert verdicts(1.05, cv=0.02, seeds=range(30)) == Counter({"pass": 30})
    v = verdicts(1.05, cv=0.07)
    assert v["pass"] >= 90 and v["fail"] == 0, v


def test_noisy_pairs_are_inconclusive() -> None:
    for seed in range(20):
        s = compare(*pair(np.random.default_rng(seed), 1.05, cv=0.30), CFG)
        assert s.verdict == "inconclusive" and s.noisy and s.spread_paired > CFG.max_cv, s.reason
        assert "spread" in s.reason


def test_bimodal_ratios_are_inconclusive() -> None:
    """A candidate 2% slower in one machine state and 25% in the other: no single ratio describes it."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        m = machine(rng)
        extra = np.where(m > 1.3, 1.25, 1.02)
        a, b = m * lognormal(rng, N, 1.0, 0.02), m * extra * lognormal(rng, N, 1.0, 0.02)
        s = compare(a, b, CFG)
        assert s.bimodal_paired and s.verdict in ("inconclusive", "fail"), s.reason
        if s.verdict == "inconclusive":
            assert "bimodal" in s.reason


def test_unimodal_and_single_outlier_round_are_not_bimodal() -> None:
    flagged = sum(is_bimodal(lognormal(np.random.default_rng(s), N, 5.0, 0.10))[0] for s in range(300))
    assert flagged == 0
    a, b = pair(np.random.default_rng(1), 1.0, cv=0.03)
    b[3] *= 2.0  # one disturbed block: an outlier ratio, not a second mode
    s = compare(a, b, CFG)
    assert not s.bimodal_paired and s.verdict == "pass" and not s.noisy


def test_huge_slowdown_fails_despite_noise() -> None:
    s = compare(*pair(np.random.default_rng(3), 2.0, cv=0.30), CFG)
    assert s.noisy and s.verdict == "fail" and s.ci_low > 1 + CFG.threshold


def _quantile_sample(n: int, cv: float) -> np.ndarray:
    """Deterministic 'noise' with exactly the given lognormal quantiles, in a fixed shuffled order."""
    sigma = np.sqrt(np.log1p(cv**2))
    return np.random.default_rng(0).permutation(np.exp(sigma * norm.ppf((np.arange(n) + 0.5) / n)))


def test_ci_straddling_threshold_is_inconclusive() -> None:
    a = np.full(12, 5.0)
    s = compare(a, a * 1.1 * _quantile_sample(12, 0.10), CFG)
    assert s.ci_low < 1 + CFG.threshold < s.ci_high
    assert s.verdict == "inconclusive" and not s.noisy and "straddles" in s.reason


def test_significant_slowdown_within_threshold_passes_and_is_named() -> None:
    a = 5.0 * _quantile_sample(30, 0.3)  # the machine swings; the ratio per round barely moves
    s = compare(a, a * 1.04 * _quantile_sample(30, 0.02)[::-1], CFG)
    assert s.verdict == "pass" and s.direction == "slower" and "within the 10% threshold" in s.reason


def test_speedup_is_reported() -> None:
    s = compare(*pair(np.random.default_rng(7), 0.8, cv=0.03), CFG)
    assert s.verdict == "pass" and s.direction == "faster" and "faster" in s.reason
    assert s.ci_high < 1.0 and s.p_faster < CFG.alpha and s.test.startswith("Wilcoxon")


# ------------------------------------------------------------------------------------ estimates, CI
def test_bootstrap_ci_contains_true_ratio() -> None:
    covered = 0
    for seed in range(100):
        s = compare(*pair(np.random.default_rng(seed), 1.2, cv=0.07), CFG)
        covered += s.ci_low <= 1.2 <= s.ci_high
        assert s.ci_low <= s.ratio <= s.ci_high
    assert covered >= 90  # nominal 95%; percentile bootstraps run a little narrow


def test_walsh_median_and_paired_bootstrap_against_brute_force() -> None:
    d = np.random.default_rng(0).normal(0.1, 0.05, 25)
    walsh = [(d[i] + d[j]) / 2 for i in range(25) for j in range(i, 25)]
    assert walsh_median(d) == pytest.approx(np.median(walsh))
    fast = bootstrap_paired_ci(d, n_boot=300, level=0.9, seed=3)
    idx = np.random.default_rng(3).integers(0, 25, size=(300, 25))
    slow = np.exp(np.quantile([walsh_median(d[row]) for row in idx], [0.05, 0.95]))
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_paired_needs_equal_rounds() -> None:
    with pytest.raises(UsageError, match="pairing='none'"):
        compare(np.ones(20), np.ones(21), CFG)
    assert compare(np.ones(20), np.ones(21), IND).verdict == "pass"


def test_identical_samples_pass() -> None:
    a = lognormal(np.random.default_rng(4), N, 5.0, 0.1)
    s = compare(a, a, CFG)
    assert s.verdict == "pass" and s.ratio == 1.0 and s.p_slower == 1.0


def test_compare_is_deterministic_for_a_seed() -> None:
    a, b = pair(np.random.default_rng(5), 1.04)
    assert compare(a, b, CFG) == compare(a, b, CFG)


# ------------------------------------------------------------------------------------ independent samples
def ind_verdicts(ratio: float, cv: float, seeds: range = range(100)) -> Counter[str]:
    out: Counter[str] = Counter()
    for seed in seeds:
        rng = np.random.default_rng(seed)
        out[compare(lognormal(rng, 30, 5.0, cv), lognormal(rng, 30, 5.0 * ratio, cv), IND).verdict] += 1
    return out


def test_independent_error_rates() -> None:
    aa, slow = ind_verdicts(1.0, 0.10), ind_verdicts(1.15, 0.10)
    assert aa["fail"] <= 1 and aa["pass"] >= 95, aa
    assert slow["fail"] >= 90 and slow["pass"] <= 1, slow


def test_independent_bimodal_arms_are_inconclusive() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        mix = lambda: lognormal(rng, 30, 5.0, 0.03) * np.where(rng.random(30) < 0.3, 1.3, 1.0)  # noqa: E731
        s = compare(mix(), mix(), IND)
        assert s.verdict == "inconclusive" and (s.bimodal_a or s.bimodal_b) and "bimodal" in s.reason
        assert s.test == "Mann-Whitney U" and s.spread_paired is None


def test_independent_bootstrap_equals_brute_force_median_of_resampled_pairs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(0, 0.1, 30), rng.lognormal(0.1, 0.1, 31)
    fast = bootstrap_ratio_ci(a, b, n_boot=500, level=0.95, seed=3)
    rs = np.random.default_rng(3)
    ia, ib = rs.integers(0, 30, (500, 30)), rs.integers(0, 31, (500, 31))
    slow = np.quantile(hodges_lehmann_ratio(a[ia], b[ib]), [0.025, 0.975])
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


# ------------------------------------------------------------------------------------ rerun
def test_rerun_when_noisy_decides_on_fresh_samples() -> None:
    rng = np.random.default_rng(11)
    batches = iter([pair(rng, 1.0, cv=0.40), pair(rng, 1.0, cv=0.03)])  # noisy, then quiet
    decision = decide_with_rerun(lambda: next(batches), CFG)
    assert decision.stats.verdict == "pass" and decision.stats.attempts == 2
    assert len(decision.stats.earlier_reasons) == 1 and "noisy" in decision.stats.earlier_reasons[0]
    assert decision.stats.n_a == N and decision.stats.spread_paired < 0.1


def test_no_rerun_when_disabled_or_not_noise() -> None:
    noisy = pair(np.random.default_rng(12), 1.0, cv=0.40)
    calls = []
    d = decide_with_rerun(lambda: calls.append(1) or noisy, CFG.model_copy(update={"reruns_when_noisy": 0}))
    assert d.stats.verdict == "inconclusive" and d.stats.attempts == 1 and len(calls) == 1
    a = np.full(12, 5.0)
    straddle = (a, a * 1.1 * _quantile_sample(12, 0.10))
    calls.clear()
    d = decide_with_rerun(lambda: calls.append(1) or straddle, CFG)
    assert d.stats.verdict == "inconclusive" and not d.stats.noisy and len(calls) == 1


# ------------------------------------------------------------------------------------ config, input
def test_config_forbids_unknown_keys_and_checks_ranges() -> None:
    with pytest.raises(ValidationError):
        GateConfig(treshold=0.1)
    with pytest.raises(ValidationError):
        GateConfig(alpha=0)
    with pytest.raises(ValidationError):
        GateConfig(pairing="blocks")
    assert GateConfig().sampler_kwargs()["rounds"] == 60


def test_too_few_or_bad_samples_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        compare([1.0] * 5, [1.0] * 5, CFG)
    with pytest.raises(UsageError):
        compare([1.0] * 20, [1.0] * 19 + [float("nan")], CFG)
