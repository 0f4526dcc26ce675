"""Logit knowledge distillation (Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network").

For logits s (student) and t (teacher), labels y, temperature T and mixing weight alpha, per sample i::

    L_i = alpha * T^2 * KL( softmax(t_i / T) || softmax(s_i / T) ) + (1 - alpha) * CE(s_i, y_i)

    KL(p || q) = sum_c p_c * (log p_c - log q_c)        (summed over classes, per sample)

The T^2 factor keeps the gradient magnitude of the soft term roughly independent of T (the soft-target
gradients scale as 1/T^2). Both distributions are formed with ``log_softmax`` and the KL is computed by
``F.kl_div(log q, log p, log_target=True)``, which is stable for peaked teachers. The CE term uses the true
labels at temperature 1 with optional label smoothing. The teacher side is detached: no gradient ever
reaches the teacher through this loss. Logits are promoted to float32, so the loss is safe under autocast.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from edgekd.errors import UsageError

Reduction = Literal["mean", "none"]

MAX_TEMPERATURE = 100.0


def check_alpha(alpha: float) -> float:
    """Return `alpha` or raise a UsageError when it is outside [0, 1] (NaN included)."""
    if not (0.0 <= alpha <= 1.0):
        raise UsageError(f"--alpha must be in [0, 1], got {alpha:g}")
    return alpha


def check_temperature(temperature: float) -> float:
    """Return `temperature` or raise a UsageError when it is outside (0, 100] (NaN included)."""
    if not (0.0 < temperature <= MAX_TEMPERATURE):
        raise UsageError(f"--temperature must be in (0, {MAX_TEMPERATURE:g}], got {temperature:g}")
    return temperature


def check_label_smoothing(label_smoothing: float) -> float:
    """Return `label_smoothing` or raise a UsageError when it is outside [0, 1)."""
    if not (0.0 <= label_smoothing < 1.0):
        raise UsageError(f"--label-smoothing must be in [0, 1), got {label_smoothing:g}")
    return label_smoothing


def check_compatible(student_logits_shape: tuple[int, ...], teacher_logits_shape: tuple[int, ...]) -> None:
    """Raise a UsageError unless both models output (N, classes) logits with the same class count."""
    s, t = tuple(student_logits_shape), tuple(teacher_logits_shape)
    if len(s) != 2 or len(t) != 2:
        raise UsageError(
            f"distillation needs (batch, classes) logits from both models, got student {s} and teacher {t}: "
            f"use a classification head on both"
        )
    if s[1] != t[1]:
        raise UsageError(
            f"teacher predicts {t[1]} classes, student {s[1]}: fine-tune the teacher to the dataset first"
        )
    if s[0] != t[0]:
        raise UsageError(
            f"student and teacher logits have different batch sizes ({s[0]} vs {t[0]}): "
            f"feed the same batch to both models"
        )


def kd_terms(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    temperature: float,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """The two unweighted per-sample terms: (T^2 * KL(p_t || p_s), CE(s, y)), each of shape (N,)."""
    check_temperature(temperature)
    check_label_smoothing(label_smoothing)
    check_compatible(tuple(student_logits.shape), tuple(teacher_logits.shape))
    s = student_logits.float()
    t = teacher_logits.detach().float()
    log_p_s = F.log_softmax(s / temperature, dim=1)
    log_p_t = F.log_softmax(t / temperature, dim=1)
    kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(dim=1)
    soft = kl * (temperature * temperature)
    hard = F.cross_entropy(s, targets, reduction="none", label_smoothing=label_smoothing)
    return soft, hard


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    targets: Tensor,
    temperature: float,
    alpha: float,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Hinton KD: ``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(s, y)``.

    Returns a scalar (``reduction='mean'``: the batch mean) or the per-sample losses of shape (N,)
    (``reduction='none'``). ``alpha=0`` is plain cross-entropy; ``alpha=1`` is pure distillation.
    """
    check_alpha(alpha)
    if reduction not in ("mean", "none"):
        raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    soft, hard = kd_terms(student_logits, teacher_logits, targets, temperature, label_smoothing)
    per_sample = alpha * soft + (1.0 - alpha) * hard
    return per_sample.mean() if reduction == "mean" else per_sample


__all__ = [
    "MAX_TEMPERATURE",
    "check_alpha",
    "check_compatible",
    "check_label_smoothing",
    "check_temperature",
    "kd_loss",
    "kd_terms",
]
