"""Decide pass / fail / inconclusive from interleaved baseline (A) and candidate (B) latency samples.

Statistical choices (and why):

* **What is tested.** `compare` takes one sample per round and arm: the per-round medians that
  :func:`edgekd.stats.sampling.interleaved_samples` returns. Per-call times inside a block are
  autocorrelated (caches, clocks, a neighbour's burst), which makes rank tests over-confident; a
  round's median ignores preemptions that hit less than half a block.
* **Paired by round (default, `pairing='round'`).** A and B of one round run back to back within a
  few tens of milliseconds, so they share the machine's state: on a shared VM that state flips for
  seconds at a time (measured on the 2-vCPU CI-like machine: the same OpenVINO model at 0.42 ms in one
  stretch and 0.70 ms in the next, which made 44% of A/A runs bimodal and inconclusive when the two arms
  were compared as independent samples). The gate therefore tests the per-round log-ratios
  d_r = log B_r - log A_r, in which such common-mode swings cancel: the effect size is the one-sample
  Hodges-Lehmann estimate (median of the Walsh averages of d, the estimator that belongs to the
  Wilcoxon signed-rank test), the test is scipy.stats.wilcoxon, and the bootstrap resamples rounds.
  ABBA order (sampling.py) balances any first-block advantage across rounds.
* **Independent samples (`pairing='none'`).** For samples that were not measured in shared rounds:
  the two-sample Hodges-Lehmann ratio (median of all pairwise ratios B_j / A_i, the estimator of the
  Mann-Whitney test) with a bootstrap that resamples each arm, and scipy.stats.mannwhitneyu.
* **Confidence interval.** Seeded percentile bootstrap with numpy (deterministic for a given `seed`),
  the central `ci_level` of the resampled estimates.
* **Significance.** One-sided p-values `p_slower` (B greater) and `p_faster` (B less), compared with
  `alpha` (0.002, as asv does).
* **Noise.** Paired: the robust spread of the per-round ratios, 1.4826 * MAD(d) (about the CV of B_r/A_r);
  independent: the robust CV of each arm, 1.4826 * MAD / median. Either way one disturbed round does
  not inflate it. A sample is bimodal when Sarle's bimodality coefficient exceeds 0.555 (the value of a
  uniform distribution) *and* the best two-group split of the sorted values (Otsu's criterion) leaves
  at least max(3, 10%) of the samples in the smaller group, so that one or two outlier rounds, which
  make any sample look skewed, are not called a second mode. Paired, it is the ratios that must not be
  bimodal (e.g. a candidate that is 10% slower in one machine state and 30% in another); the arms'
  own CVs and bimodality are reported but do not decide.

Verdict rule, in order (t = threshold):

1. fail, whatever the noise, when the whole CI lies above 1 + t and p_slower < alpha (clear evidence
   survives noise: the rank test's p-value is valid for any shape).
2. inconclusive when the noise measure exceeds max_cv or a tested sample is bimodal (noise;
   `decide_with_rerun` resamples).
3. fail when ratio > 1 + t, the CI's lower bound > 1 and p_slower < alpha. The lower bound only has to
   clear 1, not 1 + t/2: the p-value carries the significance and the point estimate the size.
4. pass when the CI's upper bound <= 1 + t (within threshold, confidently), or when the slowdown is
   not significant, ratio <= 1 + t and the CI reaches past 1 + t by at most t/2 (precise enough).
   A significant change within the threshold passes and is named (`direction` 'slower' / 'faster').
5. inconclusive otherwise: the CI straddles the threshold widely, or a significant slowdown below the
   threshold has a CI reaching past it.

Error rates on synthetic and on recorded real samples are in tests/gate and bench/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from edgekd.errors import UsageError

Verdict = Literal["pass", "fail", "inconclusive"]
MIN_SAMPLES = 10
BIMODALITY_CUTOFF = 0.555  # Sarle's coefficient of a uniform distribution
_MAD_TO_SD = 1.4826


class GateConfig(BaseModel):
    """Settings of the latency regression gate; `rounds` and `runs_per_round` go to the sampler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.10, gt=0, lt=10, description="fail when B is more than this much slower")
    alpha: float = Field(0.002, gt=0, lt=0.5, description="significance level of the one-sided test")
    ci_level: float = Field(0.95, gt=0.5, lt=1, description="coverage of the bootstrap CI")
    rounds: int = Field(60, ge=MIN_SAMPLES, description="interleaved rounds (one sample per arm each)")
    runs_per_round: int = Field(40, ge=1, description="calls per arm and round")
    warmup_runs: int = Field(20, ge=0, description="untimed calls per arm before the first round")
    max_cv: float = Field(0.15, gt=0, description="robust spread of per-round B/A ratios (paired) or robust "
                          "CV of per-round medians (independent) above which the measurement is noisy")
    pairing: Literal["round", "none"] = Field(
        "round", description="'round': A and B of a round are a pair (machine swings cancel); 'none': independent")
    n_boot: int = Field(2000, ge=200, description="bootstrap resamples")
    seed: int = Field(0, description="seed of the bootstrap (and of random round order)")
    reruns_when_noisy: int = Field(1, ge=0, le=5, description="fresh resamples after a noisy verdict")
    order: Literal["alternate", "random"] = Field("alternate", description="which arm goes first per round")

    def sampler_kwargs(self) -> dict[str, object]:
        """Keyword arguments for :func:`edgekd.stats.sampling.interleaved_samples`."""
        return {
            "rounds": self.rounds, "runs_per_round": self.runs_per_round,
            "warmup_runs": self.warmup_runs, "order": self.order, "seed": self.seed,
        }  # fmt: skip


class GateStats(BaseModel):
    """Everything `compare` computed, with the verdict and one human sentence saying why."""

    n_a: int
    n_b: int
    median_a_ms: float
    median_b_ms: float
    pairing: Literal["round", "none"] = "round"
    test: str = Field("Wilcoxon signed-rank", description="the rank test behind p_slower / p_faster")
    ratio: float = Field(description="Hodges-Lehmann ratio B/A (paired: of the per-round ratios)")
    ratio_of_medians: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_slower: float
    p_faster: float
    cv_a: float
    cv_b: float
    spread_paired: float | None = Field(None, description="1.4826 * MAD of per-round log(B/A); paired only")
    bimodal_paired: bool = False
    bimodality_a: float | None
    bimodality_b: float | None
    bimodal_a: bool
    bimodal_b: bool
    noisy: bool
    threshold: float
    alpha: float
    direction: Literal["slower", "faster", "same"]
    verdict: Verdict
    reason: str
    attempts: int = 1
    earlier_reasons: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------------------- helpers
def _as_sample(x: Iterable[float], name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float).ravel()
    if arr.size < MIN_SAMPLES:
        raise UsageError(f"{name} has {arr.size} samples; the gate needs at least {MIN_SAMPLES} rounds")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise UsageError(f"{name} holds non-positive or non-finite latencies")
    return arr


def robust_cv(x: np.ndarray) -> float:
    """1.4826 * MAD / median: the CV for normal noise, insensitive to a few outlier rounds."""
    med = float(np.median(x))
    return float(_MAD_TO_SD * np.median(np.abs(x - med)) / med)


def bimodality_coefficient(x: np.ndarray) -> float | None:
    """Sarle's bimodality coefficient (g^2 + 1) / (k + 3(n-1)^2 / ((n-2)(n-3))), bias-corrected g, k."""
    n = x.size
    if n < MIN_SAMPLES or np.ptp(x) <= 1e-9 * max(1.0, float(np.max(np.abs(x)))):
        return None  # (nearly) constant: no shape to speak of, and the moments would be rounding noise
    g = float(sps.skew(x, bias=False))
    k = float(sps.kurtosis(x, bias=False))
    return (g * g + 1.0) / (k + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3)))


def _smaller_group_of_best_split(x: np.ndarray) -> int:
    """Size of the smaller group of the two-group split that maximises between-group variance."""
    s = np.sort(x)
    n = s.size
    csum = np.cumsum(s)
    k = np.arange(1, n)  # size of the lower group
    mean_lo = csum[:-1] / k
    mean_hi = (csum[-1] - csum[:-1]) / (n - k)
    between = k * (n - k) * (mean_hi - mean_lo) ** 2
    best = int(k[np.argmax(between)])
    return min(best, n - best)


def is_bimodal(x: np.ndarray) -> tuple[bool, float | None]:
    """(bimodal?, coefficient): coefficient > 0.555 and a second group of >= max(3, 10%) samples."""
    bc = bimodality_coefficient(x)
    if bc is None or bc <= BIMODALITY_CUTOFF:
        return False, bc
    return _smaller_group_of_best_split(x) >= max(3, int(np.ceil(0.10 * x.size))), bc


def hodges_lehmann_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Median of all pairwise ratios b_j / a_i; a, b may carry leading batch axes (..., n)."""
    diffs = np.log(b)[..., :, None] - np.log(a)[..., None, :]
    return np.exp(np.median(diffs.reshape(*diffs.shape[:-2], -1), axis=-1))


def bootstrap_ratio_ci(
    a: np.ndarray, b: np.ndarray, *, n_boot: int, level: float, seed: int
) -> tuple[float, float]:
    """Seeded percentile bootstrap CI of the Hodges-Lehmann ratio, resampling each arm independently.

    A resample is a vector of counts over the original values, so its Hodges-Lehmann ratio is a
    weighted median of the n_a * n_b pairwise log-ratios (weight count_b[j] * count_a[i]); sorting the
    pairs once makes each replicate a cumulative sum instead of a fresh median of n_a * n_b values.
    Identical to np.median over the resampled pairs (tested), several times faster.
    """
    rng = np.random.default_rng(seed)
    na, nb = a.size, b.size
    diffs = (np.log(b)[:, None] - np.log(a)[None, :]).ravel()
    order = np.argsort(diffs, kind="stable")
    sorted_diffs = diffs[order]
    jb, ia = np.divmod(order, na)
    total = na * nb
    k_lo, k_hi = (total + 1) // 2, total // 2 + 1  # 1-based ranks averaged by np.median
    # replicates run along the last, contiguous axis so the cumulative sum over pairs vectorises
    dtype = np.int16 if total < 2**15 else np.int32 if total < 2**31 else np.int64
    ratios = np.empty(n_boot)
    chunk = max(1, 2_000_000 // total)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        ca = _counts(rng.integers(0, na, size=(m, na)), na).T.astype(dtype, order="C")
        cb = _counts(rng.integers(0, nb, size=(m, nb)), nb).T.astype(dtype, order="C")
        cum = np.cumsum(cb[jb] * ca[ia], axis=0, dtype=dtype)  # (pairs, m)
        lo_i = np.count_nonzero(cum < k_lo, axis=0)  # 0-based index of the k-th smallest pair
        hi_i = np.count_nonzero(cum < k_hi, axis=0)
        ratios[start : start + m] = np.exp((sorted_diffs[lo_i] + sorted_diffs[hi_i]) / 2.0)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Row-wise bincount of resampling indices (m, n) -> counts (m, n)."""
    m = idx.shape[0]
    flat = (idx + (np.arange(m) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=m * n).reshape(m, n)


def walsh_median(d: np.ndarray) -> np.ndarray:
    """One-sample Hodges-Lehmann estimate: median of the Walsh averages (d_i + d_j) / 2 over i <= j.

    `d` may carry leading batch axes (..., n)."""
    i, j = np.triu_indices(d.shape[-1])
    return np.median((d[..., i] + d[..., j]) / 2.0, axis=-1)


def bootstrap_paired_ci(d: np.ndarray, *, n_boot: int, level: float, seed: int) -> tuple[float, float]:
    """Seeded percentile bootstrap CI of exp(walsh_median(d)), resampling rounds (pairs) with replacement.

    As in `bootstrap_ratio_ci`, a resample is a vector of counts c over the rounds: its Walsh averages are
    the original ones with weight c_i * c_j (i < j) and c_i (c_i + 1) / 2 (i = j), so each replicate is a
    weighted median over Walsh averages sorted once. Identical to walsh_median of the resample (tested).
    """
    rng = np.random.default_rng(seed)
    n = d.size
    i, j = np.triu_indices(n)
    walsh = (d[i] + d[j]) / 2.0
    order = np.argsort(walsh, kind="stable")
    sorted_walsh, io, jo = walsh[order], i[order], j[order]
    diag = io == jo
    total = n * (n + 1) // 2
    k_lo, k_hi = (total + 1) // 2, total // 2 + 1
    dtype = np.int32 if n * n < 2**31 else np.int64
    est = np.empty(n_boot)
    chunk = max(1, 2_000_000 // total)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        c = _counts(rng.integers(0, n, size=(m, n)), n).T.astype(dtype, order="C")  # (n, m)
        w = c[io] * c[jo]
        w[diag] = (c[io[diag]] * (c[io[diag]] + 1)) // 2
        cum = np.cumsum(w, axis=0)
        lo_i = np.count_nonzero(cum < k_lo, axis=0)
        hi_i = np.count_nonzero(cum < k_hi, axis=0)
        est[start : start + m] = (sorted_walsh[lo_i] + sorted_walsh[hi_i]) / 2.0
    tail = (1.0 - level) / 2.0
    lo, hi = np.exp(np.quantile(est, [tail, 1.0 - tail]))
    return float(lo), float(hi)


def _pct(r: float) -> str:
    return f"{abs(r - 1.0) * 100:.1f}%"


class _Estimate(NamedTuple):
    ratio: float
    ci: tuple[float, float]
    p_slower: float
    p_faster: float
    noise: list[str]  # why the measurement is too noisy to decide; empty when it is not
    spread: float | None
    bimodal_paired: bool
    test: str


def _wilcoxon_p(d: np.ndarray, alternative: str) -> float:
    if not np.any(d):  # every round gave the same time to both arms: no evidence of any change
        return 1.0
    p = float(sps.wilcoxon(d, alternative=alternative).pvalue)
    return p if np.isfinite(p) else 1.0


def _paired(a: np.ndarray, b: np.ndarray, cfg: GateConfig) -> _Estimate:
    if a.size != b.size:
        raise UsageError(f"a paired comparison needs one sample per round and arm, but the baseline has {a.size} "
                         f"and the candidate {b.size}; use pairing='none' for independent samples")
    d = np.log(b) - np.log(a)
    spread = float(_MAD_TO_SD * np.median(np.abs(d - np.median(d))))
    bim, _ = is_bimodal(d)
    noise = []
    if spread > cfg.max_cv:
        noise.append(f"the per-round B/A ratios spread {spread:.0%} (robust), more than {cfg.max_cv:.0%}")
    if bim:
        noise.append("the per-round B/A ratios are bimodal (the slowdown differs between machine states)")
    ci = bootstrap_paired_ci(d, n_boot=cfg.n_boot, level=cfg.ci_level, seed=cfg.seed)
    return _Estimate(float(np.exp(walsh_median(d))), ci, _wilcoxon_p(d, "greater"), _wilcoxon_p(d, "less"),
                     noise, spread, bim, "Wilcoxon signed-rank (paired by round)")


def _independent(a: np.ndarray, b: np.ndarray, cfg: GateConfig) -> _Estimate:
    cv_a, cv_b = robust_cv(a), robust_cv(b)
    bim_a, bim_b = is_bimodal(a)[0], is_bimodal(b)[0]
    noise = []
    if cv_a > cfg.max_cv or cv_b > cfg.max_cv:
        noise.append(f"round-to-round CV {max(cv_a, cv_b):.0%} exceeds {cfg.max_cv:.0%}")
    if bim_a or bim_b:
        which = " and ".join(n for n, f in (("baseline", bim_a), ("candidate", bim_b)) if f)
        noise.append(f"the {which} latencies are bimodal")
    ci = bootstrap_ratio_ci(a, b, n_boot=cfg.n_boot, level=cfg.ci_level, seed=cfg.seed)
    return _Estimate(float(hodges_lehmann_ratio(a, b)), ci,
                     float(sps.mannwhitneyu(b, a, alternative="greater").pvalue),
                     float(sps.mannwhitneyu(b, a, alternative="less").pvalue), noise, None, False, "Mann-Whitney U")


# ----------------------------------------------------------------------------------------- compare
def compare(samples_a: Iterable[float], samples_b: Iterable[float], cfg: GateConfig) -> GateStats:
    """Compare baseline A and candidate B (one latency in ms per round and arm) and give a verdict."""
    a = _as_sample(samples_a, "baseline samples")
    b = _as_sample(samples_b, "candidate samples")
    t = cfg.threshold
    est = (_paired if cfg.pairing == "round" else _independent)(a, b, cfg)
    ratio, (lo, hi), p_slower = est.ratio, est.ci, est.p_slower
    noisy = bool(est.noise)

    if p_slower < cfg.alpha and lo > 1.0:
        direction = "slower"
    elif est.p_faster < cfg.alpha and hi < 1.0:
        direction = "faster"
    else:
        direction = "same"

    ci_txt = f"{ratio:.3f} ({cfg.ci_level:.0%} CI {lo:.3f}-{hi:.3f}), p(slower)={p_slower:.2g}"
    limit = 1.0 + t
    if direction == "slower" and lo > limit:
        verdict: Verdict = "fail"
        reason = f"The candidate is {_pct(ratio)} slower, beyond the {t:.0%} threshold: B/A {ci_txt}."
        if noisy:
            reason += " The measurement is noisy, but the whole interval lies beyond the threshold."
    elif noisy:
        verdict = "inconclusive"
        reason = (
            f"Too noisy to decide: {' and '.join(est.noise)}; B/A {ci_txt}. "
            "Rerun on a quieter machine or with more rounds."
        )
    elif direction == "slower" and ratio > limit:
        verdict = "fail"
        reason = f"The candidate is {_pct(ratio)} slower, beyond the {t:.0%} threshold: B/A {ci_txt}."
    elif hi <= limit or (p_slower >= cfg.alpha and ratio <= limit and hi - limit <= t / 2):
        verdict = "pass"
        if direction == "faster":
            reason = f"The candidate is significantly faster, by {_pct(ratio)}: B/A {ci_txt}."
        elif direction == "slower":
            reason = f"The candidate is {_pct(ratio)} slower, within the {t:.0%} threshold: B/A {ci_txt}."
        else:
            reason = f"No significant latency change beyond the {t:.0%} threshold: B/A {ci_txt}."
    else:
        verdict = "inconclusive"
        reason = (
            f"The confidence interval straddles the {t:.0%} threshold: B/A {ci_txt}. "
            "More rounds would narrow it."
        )

    bim_a, bc_a = is_bimodal(a)
    bim_b, bc_b = is_bimodal(b)
    return GateStats(
        n_a=a.size, n_b=b.size, median_a_ms=float(np.median(a)), median_b_ms=float(np.median(b)),
        pairing=cfg.pairing, test=est.test, ratio=ratio, ratio_of_medians=float(np.median(b) / np.median(a)),
        ci_low=lo, ci_high=hi, ci_level=cfg.ci_level, p_slower=p_slower, p_faster=est.p_faster,
        cv_a=robust_cv(a), cv_b=robust_cv(b), spread_paired=est.spread, bimodal_paired=est.bimodal_paired,
        bimodality_a=bc_a, bimodality_b=bc_b, bimodal_a=bim_a, bimodal_b=bim_b, noisy=noisy,
        threshold=t, alpha=cfg.alpha, direction=direction, verdict=verdict, reason=reason,
    )  # fmt: skip


class Decision(NamedTuple):
    """What `decide_with_rerun` returns: the stats and the samples they were computed from."""

    stats: GateStats
    samples: Any  # whatever sample_fn returned last (an InterleavedSamples from the sampler)


def decide_with_rerun(sample_fn: Callable[[], Any], cfg: GateConfig) -> Decision:
    """Sample and compare; when the verdict is inconclusive *because of noise*, sample afresh.

    `sample_fn()` returns something that unpacks to (samples_a, samples_b), e.g.
    ``lambda: interleaved_samples(run_a, run_b, **cfg.sampler_kwargs())``. At most
    `cfg.reruns_when_noisy` reruns. The verdict comes from the newest samples alone, never pooled:
    the noisy attempt would carry its disturbance into the pool, and pooling after looking at the data
    would inflate the false-alarm rate (optional stopping). Earlier reasons are kept in the result,
    and the samples returned are those the verdict was computed from (for plots and budgets).
    """
    earlier: list[str] = []
    attempt = 0
    while True:
        samples = sample_fn()
        a, b = samples
        attempt += 1
        result = compare(a, b, cfg.model_copy(update={"seed": cfg.seed + attempt - 1}))
        if not (result.verdict == "inconclusive" and result.noisy) or attempt > cfg.reruns_when_noisy:
            stats = result.model_copy(update={"attempts": attempt, "earlier_reasons": earlier})
            return Decision(stats, samples)
        earlier.append(result.reason)
