"""Hint learning (Romero et al., ICLR 2015, "FitNets: Hints for Thin Deep Nets").

A student "guided" feature map F_s is mapped by a learned regressor r (here a 1x1 convolution, optionally
followed by BatchNorm) to the channel count of the teacher's "hint" feature map F_t, and the two are
matched with a mean squared error, per sample i::

    HINT_i = (1 / (C_t * H * W)) * || r(F_s,i) - F_t,i ||_2^2

The paper's loss is 1/2 * ||.||^2 summed over elements, and its regressor is convolutional; the mean over
elements (rather than the sum) keeps the term's scale independent of layer size, and the 1/2 is folded into
the `weight` of :class:`edgekd.losses.composite.HintConfig`. When the channel counts are equal the
regressor is the identity (no parameters). The regressor is an ``nn.Module`` owned by this loss: pass
``hint_loss.parameters()`` (or ``DistillLoss.parameters()``) to the optimiser with the student's, so it
trains alongside the student; it is used only in training and never exported.

Spatial sizes follow the attention-transfer rule: equal, or one an integer multiple of the other (the
larger is average-pooled down, before the regressor); any other pair is a UsageError. 2-D features
(N, C), such as a pooled embedding, are treated as (N, C, 1, 1). The teacher side is detached.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from edgekd.errors import UsageError
from edgekd.losses.attention import check_spatial_pair, pool_to

Reduction = Literal["mean", "none"]


def _as_map(shape: tuple[int, ...], side: str, name: str) -> tuple[int, int, int]:
    """(C, H, W) of a 4-D feature map or of a 2-D feature seen as (N, C, 1, 1)."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 2:
        return shape[1], 1, 1
    raise UsageError(
        f"hint learning needs a (N, C, H, W) or (N, C) feature, but {side} layer '{name}' gives shape "
        f"{tuple(shape)}: choose a convolutional or embedding layer"
    )


def _view4d(x: Tensor) -> Tensor:
    return x[:, :, None, None] if x.dim() == 2 else x


class HintLoss(nn.Module):
    """FitNets hint loss for one (student layer, teacher layer) pair, with its learned 1x1 regressor."""

    def __init__(
        self,
        student_channels: int,
        teacher_channels: int,
        batch_norm: bool = False,
        student_name: str = "student",
        teacher_name: str = "teacher",
    ) -> None:
        super().__init__()
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels
        self.student_name = student_name
        self.teacher_name = teacher_name
        self.adapter: nn.Module
        if student_channels == teacher_channels:
            self.adapter = nn.Identity()
        else:
            conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=not batch_norm)
            self.adapter = nn.Sequential(conv, nn.BatchNorm2d(teacher_channels)) if batch_norm else conv

    @classmethod
    def from_shapes(
        cls,
        student_shape: tuple[int, ...],
        teacher_shape: tuple[int, ...],
        batch_norm: bool = False,
        student_name: str = "student",
        teacher_name: str = "teacher",
    ) -> HintLoss:
        """Build the loss for features of these shapes, raising a UsageError now if they cannot pair."""
        cs, sh, sw = _as_map(tuple(student_shape), "student", student_name)
        ct, th, tw = _as_map(tuple(teacher_shape), "teacher", teacher_name)
        check_spatial_pair((sh, sw), (th, tw), student_name, teacher_name, "hint learning")
        return cls(cs, ct, batch_norm, student_name, teacher_name)

    def forward(self, student_feature: Tensor, teacher_feature: Tensor, reduction: Reduction = "none") -> Tensor:
        """Per-sample MSE between the adapted student feature and the teacher feature, shape (N,)."""
        cs, sh, sw = _as_map(tuple(student_feature.shape), "student", self.student_name)
        _, th, tw = _as_map(tuple(teacher_feature.shape), "teacher", self.teacher_name)
        if cs != self.student_channels:
            raise UsageError(
                f"student layer '{self.student_name}' has {cs} channels, the hint regressor was built for "
                f"{self.student_channels}: rebuild the loss for this model"
            )
        check_spatial_pair((sh, sw), (th, tw), self.student_name, self.teacher_name, "hint learning")
        small = (min(sh, th), min(sw, tw))
        s = pool_to(_view4d(student_feature), small)
        t = pool_to(_view4d(teacher_feature.detach()), small)
        s = self.adapter(s)
        if s.shape != t.shape:
            raise UsageError(
                f"cannot pair student {self.student_name} {tuple(s.shape[1:])} with teacher "
                f"{self.teacher_name} {tuple(t.shape[1:])} for hint learning: feed the same batch to both"
            )
        per_sample = (s.float() - t.float()).pow(2).flatten(1).mean(dim=1)
        if reduction == "mean":
            return per_sample.mean()
        if reduction != "none":
            raise UsageError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        return per_sample

    def extra_repr(self) -> str:
        return f"{self.student_name} ({self.student_channels}) -> {self.teacher_name} ({self.teacher_channels})"


__all__ = ["HintLoss"]
