"""How much the search's proxy scores can say, and the ranking that follows from it.

A proxy run is short, and the val split is finite: its top-1 cannot separate two candidates whose difference
is within the split's noise, nor say anything when every candidate is at chance. Three cases:

- **at chance**: top-1 <= 1/K + 2 standard errors of a binomial at p = 1/K over the n val images (the same
  limit the bench stage uses, edgekd.benchmark.chance_level). A candidate at chance is never ranked above
  one that is not.
- **tie within noise**: above-chance candidates whose top-1 is within 2 standard errors of the best one's.
  The standard error of the difference is paired when each image's correctness is known (the same val images
  for both: sd(a_i - b_i) / sqrt(n)), else that of two independent binomials. Tied candidates are ranked by
  their agreement with the teacher's top-1 on val (a signal that moves long before the labels' top-1 does in a
  short distillation run: it counts every image, not only those the student gets right), then by KD loss.
- **all at chance**: top-1 says nothing; candidates are ranked by KD loss on val (KL(teacher_T || student_T)
  T^2, lower first), which falls from the first steps.

Otherwise the choice is **confident**: the best is above chance and no other candidate is within noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Level = Literal["confident", "tie", "chance", "single"]


@dataclass(frozen=True)
class ProxyScore:
    """What one proxy run measured on the val split."""

    top1: float
    agree: float | None = None  # share of val images where the student's top-1 is the teacher's top-1
    kd: float | None = None  # KD loss on val: KL(softmax(t/T) || softmax(s/T)) * T^2, mean over images
    correct: np.ndarray | None = field(default=None, compare=False, repr=False)  # per val image, bool
    rung: int = 0

    def record(self) -> dict:
        out = {"top1": self.top1, "agree": self.agree, "kd": self.kd, "rung": self.rung}
        if self.correct is not None:
            out["correct"] = np.packbits(self.correct.astype(bool)).tobytes().hex()
            out["n"] = int(self.correct.size)
        return out

    @classmethod
    def from_record(cls, rec: float | dict, rung: int = 0) -> ProxyScore:
        """From state.json: a dict written by `record`, or a bare top-1 (searches started before this module)."""
        if not isinstance(rec, dict):
            return cls(top1=float(rec), rung=rung)
        correct = None
        if rec.get("correct") is not None:
            bits = np.unpackbits(np.frombuffer(bytes.fromhex(rec["correct"]), dtype=np.uint8))
            correct = bits[: int(rec["n"])].astype(bool)
        return cls(float(rec["top1"]), rec.get("agree"), rec.get("kd"), correct, int(rec.get("rung", rung)))


@dataclass(frozen=True)
class Choice:
    """Candidates best first, and how confident the first place is."""

    order: list[str]
    level: Level
    line: str
    chance_top1: float
    tied: list[str]  # the candidates the first place was chosen among (itself alone when confident)
    resolvable: float | None = None  # 2 standard errors of the difference between the first two, when computed

    def record(self) -> dict:
        return {"level": self.level, "line": self.line, "chance_top1": self.chance_top1, "tied": self.tied,
                "resolvable_top1": self.resolvable}


def diff_se(a: ProxyScore, b: ProxyScore, n: int) -> float:
    """Standard error of top1(a) - top1(b) over the same n val images: paired when both know each image's
    correctness, else that of two independent binomial proportions (larger)."""
    if a.correct is not None and b.correct is not None and a.correct.size == b.correct.size > 1:
        d = a.correct.astype(float) - b.correct.astype(float)
        return float(d.std(ddof=1) / np.sqrt(d.size))
    n = max(n, 1)
    return float(np.sqrt(a.top1 * (1 - a.top1) / n + b.top1 * (1 - b.top1) / n))


def _signal(s: ProxyScore) -> tuple[float, float]:
    """Teacher agreement (higher first), then KD loss (lower first); missing values rank last."""
    return (s.agree if s.agree is not None else -1.0, -(s.kd if s.kd is not None else float("inf")))


def rank(scores: dict[str, ProxyScore], n_val: int, num_classes: int,
         latency_ms: dict[str, float] | None = None) -> Choice:
    """Order candidates best first from their latest proxy scores (module docstring). Candidates that reached
    a higher rung come first among those on the same side of chance; on equal scores the faster first."""
    from edgekd.benchmark.budgets import chance_level

    if not scores:
        raise ValueError("rank() needs at least one proxy score")
    lat = latency_ms or {}
    limit = chance_level(num_classes, n_val)
    above = {name: s.top1 > limit for name, s in scores.items()}
    head_key = max((above[n], s.rung) for n, s in scores.items())
    head = [n for n, s in scores.items() if (above[n], s.rung) == head_key]
    rest = sorted((n for n in scores if n not in head),
                  key=lambda n: (above[n], scores[n].rung, scores[n].top1, -lat.get(n, 0.0)), reverse=True)
    at = f"{limit:.2%} (1/{num_classes} + 2 standard errors on {n_val} val images)"
    if not head_key[0]:  # the best group is at chance: the labels' top-1 says nothing, KD loss decides
        head.sort(key=lambda n: (scores[n].kd if scores[n].kd is not None else float("inf"), -_signal(scores[n])[0],
                                 lat.get(n, 0.0)))
        if len(scores) == 1:
            return Choice(head, "single", f"the only candidate trained is at chance (top-1 <= {at})", limit, head)
        how = "KD loss on val" if scores[head[0]].kd is not None else "latency (no KD loss recorded)"
        return Choice(head + rest, "chance", f"all proxies at chance (top-1 <= {at}): chosen by {how}", limit, head)
    head.sort(key=lambda n: (scores[n].top1, -lat.get(n, 0.0)), reverse=True)
    best = scores[head[0]]
    tied = [n for n in head if best.top1 - scores[n].top1 <= 2 * diff_se(best, scores[n], n_val)]
    resolvable = 2 * diff_se(best, scores[head[1]], n_val) if len(head) > 1 else None
    if len(scores) == 1:
        return Choice(head, "single", f"only one candidate was trained (val top-1 {best.top1:.2%}): nothing to "
                      "compare", limit, head)
    if len(tied) == 1:
        why = (f"{best.top1:.2%} val top-1, {best.top1 - scores[head[1]].top1:.2%} above the runner-up "
               f"(2 standard errors: {resolvable:.2%})") if len(head) > 1 else \
            f"{best.top1:.2%} val top-1, the only candidate above chance ({at})"
        return Choice(head + rest, "confident", f"confident: {why}", limit, tied, resolvable)
    tied.sort(key=lambda n: (*_signal(scores[n]), scores[n].top1, -lat.get(n, 0.0)), reverse=True)
    others = [n for n in head if n not in tied]
    lead = scores[tied[0]]
    how = "teacher agreement" if lead.agree is not None else ("KD loss" if lead.kd is not None else "val top-1")
    spread = best.top1 - min(scores[n].top1 for n in tied)
    line = (f"tie within noise: {len(tied)} candidates within 2 standard errors of the best val top-1 "
            f"({best.top1:.2%}, spread {spread:.2%} on {n_val} val images): chosen by {how}")
    return Choice(tied + others + rest, "tie", line, limit, tied, resolvable)
