"""The distillation loss wired for training: the composite loss, hooks on both models, and the per-batch step
the trainer calls. One construction for every stage that distills (distill, qad) and the bench scripts."""

from __future__ import annotations

import torch

from edgekd.losses.composite import DistillLoss, DistillLossConfig
from edgekd.losses.hooks import FeatureTaps


def build_distill_loss(cfg: DistillLossConfig, student, teacher, pre, device, student_pre=None):
    """The composite loss plus hooks on both models: (loss, student taps or None, teacher taps or None).
    `pre` (Preprocessing) gives the input shape the loss probes the teacher with, and the student unless
    `student_pre` says its own (a student at a smaller input size: edgekd.search.resolution)."""
    example = torch.zeros(2, pre.channels, *pre.input_size).to(device)  # as edgekd.stages.common.example_input
    s_example = None if student_pre is None else torch.zeros(2, pre.channels, *student_pre.input_size).to(device)
    loss = DistillLoss(cfg, student, teacher, example, student_example=s_example).to(device)
    s_taps = FeatureTaps(student, list(loss.student_paths)) if loss.student_paths else None
    t_taps = FeatureTaps(teacher, list(loss.teacher_paths)) if loss.teacher_paths else None
    return loss, s_taps, t_taps


def make_step(loss, s_taps, t_taps, teacher, cache: torch.Tensor | None, student_size: tuple[int, int] | None = None):
    """The per-batch loss closure the trainer calls: student forward, teacher (cached or live), loss. With
    `student_size` the student sees the batch downscaled to it and the teacher the batch as read
    (edgekd.search.resolution)."""
    from edgekd.search.resolution import downscale

    def step(net, x, y, idx):
        s_logits = net(downscale(x, student_size))
        s_feats = dict(s_taps.outputs) if s_taps else {}
        if cache is not None:
            t_logits, t_feats = cache[torch.as_tensor(idx, device=cache.device)], {}
        else:
            with torch.no_grad():
                t_logits = teacher(x)
            t_feats = dict(t_taps.outputs) if t_taps else {}
        return loss(s_logits, t_logits, y, s_feats, t_feats)

    return step
