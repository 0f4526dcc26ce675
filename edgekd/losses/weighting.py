"""Per-sample weighting of the distillation loss over a batch (the "seed" specification).

For a batch of N samples, student f_theta, teacher f_psi and any per-sample loss L::

    L_batch = sum_i w_i * L( f_theta(x_i), f_psi(x_i) ),       w = softmax( sign * score / tau )  over the batch

with a score per sample:

* ``uniform``            w_i = 1 / N, so the weighted loss **equals the batch mean** (the usual loss);
* ``teacher_confidence`` score_i = max_c softmax(f_psi(x_i))_c  (the teacher's top-1 probability, T = 1);
* ``teacher_loss``       score_i = CE(f_psi(x_i), y_i)          (the teacher's own loss on the true label).

``sign = 1`` favours high scores (confident samples, or samples the teacher finds hard); ``sign = -1``
favours low ones. ``tau > 0`` is the softmax temperature: large tau tends to uniform weights, small tau to
all weight on the top-scoring sample. The weights always sum to 1, and they are **detached**: they only
re-weight the gradient of L and never carry gradient themselves (the teacher is not trained through them).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from edgekd.errors import UsageError

Score = Literal["uniform", "teacher_confidence", "teacher_loss"]
SCORES: tuple[str, ...] = ("uniform", "teacher_confidence", "teacher_loss")


def check_tau(tau: float) -> float:
    """Return `tau` or raise a UsageError when it is not a positive finite number."""
    if not (0.0 < tau < float("inf")):
        raise UsageError(f"--weighting-tau must be > 0, got {tau:g}")
    return tau


def check_sign(sign: int) -> int:
    if sign not in (1, -1):
        raise UsageError(f"--weighting-sign must be 1 or -1, got {sign}")
    return sign


def sample_scores(teacher_logits: Tensor, targets: Tensor | None, score: Score) -> Tensor:
    """The per-sample score of shape (N,) (zeros for 'uniform'), detached, in float32."""
    logits = teacher_logits.detach().float()
    if score == "uniform":
        return torch.zeros(logits.shape[0], device=logits.device)
    if score == "teacher_confidence":
        return F.softmax(logits, dim=1).amax(dim=1)
    if score == "teacher_loss":
        if targets is None:
            raise UsageError("the 'teacher_loss' weighting needs labels: use 'teacher_confidence' without them")
        return F.cross_entropy(logits, targets, reduction="none")
    raise UsageError(f"unknown weighting score {score!r}: choose one of {', '.join(SCORES)}")


def sample_weights(
    teacher_logits: Tensor,
    targets: Tensor | None = None,
    score: Score = "uniform",
    tau: float = 1.0,
    sign: int = 1,
) -> Tensor:
    """w = softmax(sign * score / tau) over the batch: shape (N,), sums to 1, detached."""
    check_tau(tau)
    check_sign(sign)
    n = teacher_logits.shape[0]
    if score == "uniform":
        return torch.full((n,), 1.0 / n, device=teacher_logits.device)
    scores = sample_scores(teacher_logits, targets, score)
    return F.softmax(sign * scores / tau, dim=0).detach()


def weighted_sum(per_sample: Tensor, weights: Tensor) -> Tensor:
    """sum_i w_i * per_sample_i (a scalar); with uniform weights this is ``per_sample.mean()``."""
    if per_sample.shape != weights.shape:
        raise UsageError(
            f"per-sample loss of shape {tuple(per_sample.shape)} does not match weights of shape "
            f"{tuple(weights.shape)}: compute the loss with reduction='none'"
        )
    return (per_sample * weights.to(per_sample.dtype)).sum()


__all__ = ["SCORES", "Score", "check_sign", "check_tau", "sample_scores", "sample_weights", "weighted_sum"]
