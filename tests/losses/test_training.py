"""The distillation loss wired for training (edgekd.losses.training), shared by the distill and qad stages."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from edgekd.losses.composite import DistillLoss, DistillLossConfig
from edgekd.losses.training import build_distill_loss, make_step
from test_distill_loss import Student, Teacher, _cfg  # noqa: E402 (tests/losses is on sys.path under pytest)

PRE = SimpleNamespace(channels=3, input_size=(8, 8))


def test_logit_only_loss_hooks_nothing_and_a_cache_replaces_the_teacher() -> None:
    torch.manual_seed(0)
    student, teacher = Student(), Teacher().eval()
    loss, s_taps, t_taps = build_distill_loss(DistillLossConfig(), student, teacher, PRE, torch.device("cpu"))
    assert isinstance(loss, DistillLoss) and s_taps is None and t_taps is None
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    with torch.no_grad():
        cache = teacher(x)
    live, parts = make_step(loss, s_taps, t_taps, teacher, None)(student, x, y, [0, 1, 2, 3])
    cached, _ = make_step(loss, s_taps, t_taps, lambda _: 1 / 0, cache)(student, x, y, [0, 1, 2, 3])
    assert torch.isfinite(live) and parts["kd"] > 0 and torch.allclose(live, cached)
    shuffled, _ = make_step(loss, s_taps, t_taps, None, cache.flip(0))(student, x, y, [3, 2, 1, 0])
    assert torch.allclose(shuffled, live)  # rows are looked up by dataset index


def test_feature_losses_read_both_models_through_hooks() -> None:
    torch.manual_seed(0)
    student, teacher = Student(), Teacher().eval()
    loss, s_taps, t_taps = build_distill_loss(_cfg(), student, teacher, PRE, torch.device("cpu"))
    assert s_taps is not None and t_taps is not None
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    value, parts = make_step(loss, s_taps, t_taps, teacher, None)(student, x, y, [0, 1, 2, 3])
    value.backward()
    assert torch.isfinite(value) and parts["at"] > 0 and parts["hint"] > 0
    assert student.block1[0].weight.grad is not None and student.block1[0].weight.grad.abs().sum() > 0
    s_taps.close()
    t_taps.close()
