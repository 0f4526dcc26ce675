"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying More Attention to Attention").

For a feature map A of shape (N, C, H, W) the spatial attention map of sample i is the channel mean of
the p-th power of the absolute activations, flattened and L2-normalised::

    Q_i   = mean_c |A_i,c|^p                       (H x W, flattened to a vector of H*W)
    Q^_i  = Q_i / ||Q_i||_2

The per-sample loss for one (student, teacher) pair is the mean squared difference of the normalised maps,
exactly as in the authors' code (github.com/szagoruyko/attention-transfer, ``at_loss``)::

    AT_i  = (1 / (H*W)) * sum_j ( Q^s_i,j - Q^t_i,j )^2

and the distillation term is ``beta / 2 * sum over pairs of AT`` with the paper's beta = 1000 (the
`weight` of :class:`edgekd.losses.composite.AttentionConfig`). We follow the code rather than the paper's
printed formula (the un-squared p-norm of the difference): the squared form is what produced the published
numbers and what beta = 1000 is tuned for. Note that the 1/(H*W) mean makes the term smaller for larger maps.

Spatial sizes: equal sizes pair directly; when one map is an integer multiple of the other in both height
and width, the larger attention map Q (before normalisation) is average-pooled down to the smaller size,
which keeps the "activation energy per region" meaning of Q. Any other pair is a UsageError, raised at
construction time by :class:`edgekd.losses.composite.DistillLoss`. The teacher side is detached.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor

from edgekd.errors import UsageError

Reduction = Literal["mean", "none"]


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def check_spatial_pair(
    student_hw: tuple[int, int],
    teacher_hw: tuple[int, int],
    student_name: str,
    teacher_name: str,
    purpose: str,
) -> None:
    """Raise a UsageError unless the sizes are equal or one is an integer multiple of the other.

    "Integer multiple" means the same side is at least as large in both dimensions and each of its
    dimensions is divisible by the other's (8x8 with 4x4, 8x4 with 4x2, 8x8 with 8x4).
    """
    (sh, sw), (th, tw) = student_hw, teacher_hw
    ok = (sh >= th and sw >= tw and sh % th == 0 and sw % tw == 0) or (
        th >= sh and tw >= sw and th % sh == 0 and tw % sw == 0
    )
    if not ok or min(sh, sw, th, tw) < 1:
        raise UsageError(
            f"cannot pair student {student_name} ({_hw(student_hw)}) with teacher {teacher_name} "
            f"({_hw(teacher_hw)}) for {purpose}: choose layers with equal or integer-multiple spatial sizes"
        )


def pool_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Average-pool (N, C, H, W) `x` down to `size`, whose dimensions divide H and W exactly."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    return F.avg_pool2d(x, kernel_size=(h // size[0], w // size[1]))


def match_spatial(
    student: Tensor,
    teacher: Tensor,
    student_name: str = "student",
    teacher_name: str = "teacher",
    purpose: str = "distillation",
) -> tuple[Tensor, Tensor]:
    """Pool the larger of two (N, C, H, W) tensors down to the smaller's spatial size (see the module doc)."""
    s_hw, t_hw = tuple(student.shape[-2:]), tuple(teacher.shape[-2:])
    check_spatial_pair(s_hw, t_hw, student_name, teacher_name, purpose)
    small = (min(s_hw[0], t_hw[0]), min(s_hw[1], t_hw[1]))
    return pool_to(student, small), pool_to(teacher, small)


def check_feature_map(shape: tuple[int, ...], side: str, name: str, purpose: str) -> None:
    """Raise a UsageError unless `shape` is a 4-D (N, C, H, W) feature map."""
    if len(shape) != 4:
        raise UsageError(
            f"{purpose} needs a 4-D (N, C, H, W) feature map, but {side} layer '{name}' gives shape "
            f"{tuple(shape)}: choose a convolutional layer"
        )


def attention_map(feature: Tensor, p: float = 2.0) -> Tensor:
    """Q = mean over channels of |A|^p, shape (N, H, W), not normalised. `feature` is (N, C, H, W)."""
    return feature.float().abs().pow(p).mean(dim=1)


def normalized_attention(feature: Tensor, p: float = 2.0, size: tuple[int, int] | None = None) -> Tensor:
    """Q^ = Q / ||Q||_2 per sample, shape (N, H*W); Q is first average-pooled to `size` when given."""
    q = attention_map(feature, p).unsqueeze(1)
    if size is not None:
        q = pool_to(q, size)
    return F.normalize(q.flatten(1), p=2.0, dim=1)


def attention_loss(
    student_feature: Tensor,
    teacher_feature: Tensor,
    p: float = 2.0,
    reduction: Reduction = "none",
    student_name: str = "student",
    teacher_name: str = "teacher",
) -> Tensor:
    """Per-sample AT_i = mean_j (Q^s_i,j - Q^t_i,j)^2, shape (N,); the batch mean with reduction='mean'.

    Not multiplied by beta / 2: the caller (DistillLoss) applies the weight.
    """
    purpose = "attention transfer"
    check_feature_map(tuple(student_feature.shape), "student", student_name, purpose)
    check_feature_map(tuple(teacher_feature.shape), "teacher", teacher_name, purpose)
    if student_feature.shape[0] != teacher_feature.shape[0]:
        raise UsageError(
            f"student layer '{student_name}' and teacher layer '{teacher_name}' saw different batch sizes "
            f"({student_feature.shape[0]} vs {teacher_feature.shape[0]}): feed the same batch to both models"
        )
    s_hw, t_hw = tuple(student_feature.shape[-2:]), tuple(teacher_feature.shape[-2:])
    check_spatial_pair(s_hw, t_hw, student_name, teacher_name, purpose)
    small = (min(s_hw[0], t_hw[0]), min(s_hw[1], t_hw[1]))
    q_s = normalized_attention(student_feature, p, small)
    q_t = normalized_attention(teacher_feature.detach(), p, small)
    per_sample = (q_s - q_t).pow(2).mean(dim=1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction != "none":
        raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return per_sample


__all__ = [
    "attention_loss",
    "attention_map",
    "check_feature_map",
    "check_spatial_pair",
    "match_spatial",
    "normalized_attention",
    "pool_to",
]
