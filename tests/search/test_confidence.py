"""The search's ranking when proxy scores cannot separate candidates (edgekd.search.confidence), on synthetic
scores: at chance, ties within the val split's noise, a clear winner; and the settings generated when too
few candidates fit (edgekd.search.candidates.finer_shares)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.benchmark.budgets import chance_level
from edgekd.search.candidates import finer_shares
from edgekd.search.confidence import ProxyScore, diff_se, rank
from edgekd.search.report import rows, summary_line


def _correct(n: int, k: int, seed: int) -> np.ndarray:
    out = np.zeros(n, bool)
    out[np.random.default_rng(seed).choice(n, k, replace=False)] = True
    return out


def test_every_proxy_at_chance_is_decided_by_kd_loss_and_says_so():
    # the case: 10 classes, about 10% val top-1 each
    scores = {"a": ProxyScore(0.0976, agree=0.30, kd=2.1), "b": ProxyScore(0.11, agree=0.25, kd=1.4),
              "c": ProxyScore(0.09, agree=0.12, kd=1.9)}
    choice = rank(scores, n_val=205, num_classes=10, latency_ms={"a": 0.5, "b": 0.9, "c": 0.3})
    assert choice.level == "chance"
    assert choice.order[0] == "b"  # lowest KD loss, though neither the fastest nor the best agreement
    assert choice.line.startswith("all proxies at chance") and "chosen by KD loss" in choice.line
    assert choice.chance_top1 == pytest.approx(chance_level(10, 205))


def test_a_candidate_at_chance_is_never_chosen_over_one_above_it():
    limit = chance_level(10, 200)
    scores = {"chance_fast": ProxyScore(limit - 0.01, agree=0.99, kd=0.01, rung=1),  # a higher rung, best signals
              "learned": ProxyScore(limit + 0.05, agree=0.2, kd=3.0, rung=0)}
    choice = rank(scores, 200, 10, {"chance_fast": 0.1, "learned": 5.0})
    assert choice.order == ["learned", "chance_fast"]
    assert choice.level == "confident" and "only candidate above chance" in choice.line


def test_top_candidates_within_noise_are_ranked_by_teacher_agreement():
    n = 200
    scores = {"a": ProxyScore(0.62, agree=0.70, kd=0.9, correct=_correct(n, 124, 0)),
              "b": ProxyScore(0.60, agree=0.81, kd=1.1, correct=_correct(n, 120, 1)),
              "c": ProxyScore(0.30, agree=0.90, kd=0.2, correct=_correct(n, 60, 2))}
    choice = rank(scores, n, 10)
    assert choice.level == "tie"
    assert choice.order[:2] == ["b", "a"]  # b agrees more with the teacher; c is clearly worse on top-1
    assert choice.tied == ["b", "a"]
    assert "tie within noise" in choice.line and "chosen by teacher agreement" in choice.line
    assert choice.resolvable is not None and choice.resolvable > 0.02


def test_a_clear_winner_is_confident():
    n = 2000
    scores = {"a": ProxyScore(0.80, agree=0.5, kd=2.0, correct=_correct(n, 1600, 0)),
              "b": ProxyScore(0.60, agree=0.9, kd=0.5, correct=_correct(n, 1200, 1))}
    choice = rank(scores, n, 10)
    assert choice.level == "confident" and choice.order == ["a", "b"]
    assert choice.line.startswith("confident: 80.00% val top-1, 20.00% above the runner-up")


def test_the_paired_error_is_smaller_than_the_unpaired_one_when_mistakes_coincide():
    n = 400
    a = _correct(n, 300, 0)
    b = a.copy()
    b[np.flatnonzero(a)[:8]] = False  # b misses 8 images a gets right, and nothing else differs
    pa, pb = ProxyScore(a.mean(), correct=a), ProxyScore(b.mean(), correct=b)
    paired = diff_se(pa, pb, n)
    unpaired = diff_se(ProxyScore(pa.top1), ProxyScore(pb.top1), n)
    assert paired < unpaired / 3
    # 8 images of 400 (2 points) is resolved when the same images are compared, not otherwise
    assert rank({"a": pa, "b": pb}, n, 10).level == "confident"
    assert rank({"a": ProxyScore(pa.top1, agree=0.1), "b": ProxyScore(pb.top1, agree=0.9)}, n, 10).level == "tie"


def test_equal_scores_are_a_tie_and_the_faster_wins_without_other_signals():
    scores = {"slow": ProxyScore(0.7), "fast": ProxyScore(0.7)}
    choice = rank(scores, 300, 5, {"slow": 2.0, "fast": 1.0})
    assert choice.level == "tie" and choice.order[0] == "fast" and "chosen by val top-1" in choice.line


def test_one_candidate_says_there_was_nothing_to_compare():
    assert rank({"x": ProxyScore(0.9)}, 100, 10).level == "single"
    assert rank({"x": ProxyScore(0.1)}, 100, 10).level == "single"


def test_scores_round_trip_through_the_state_file_and_old_states_still_load():
    s = ProxyScore(0.5, 0.6, 0.7, _correct(13, 6, 0), rung=2)
    back = ProxyScore.from_record(s.record())
    assert back == s and np.array_equal(back.correct, s.correct)
    assert ProxyScore.from_record(0.42, rung=1) == ProxyScore(0.42, rung=1)


def test_deeper_and_finer_pruning_settings():
    assert finer_shares([0.5, 0.75], smaller="up") == [0.875, 0.625]
    assert finer_shares([0.5, 0.25], smaller="down") == [0.125, 0.375]
    assert finer_shares([0.9375], smaller="up") == []  # nothing strictly below 1 left


def test_the_report_shows_the_confidence_and_the_early_signals():
    m = {"chosen": "a", "chosen_source": "family", "chosen_latency_ms": 0.5, "chosen_val_top1": 0.1,
         "budget_ms": 1.0, "percentile": "p90", "rungs": 2, "latency_phase_s": 3, "proxy_phase_s": 4,
         "confidence": {"line": "all proxies at chance (...): chosen by KD loss on val"},
         "candidates": [{"name": "a", "source": "family", "macs": 1e6, "latency": {"latency_ms": 0.5},
                         "proxy_top1": {"0": 0.1, "1": 0.12}, "proxy_agree": {"0": 0.3, "1": 0.45},
                         "proxy_kd": {"0": 2.0, "1": 1.25}, "fate": "chosen"}]}
    assert "Choice: all proxies at chance" in summary_line(m)
    assert rows(m)[0][5] == "45.0%, 1.250"
