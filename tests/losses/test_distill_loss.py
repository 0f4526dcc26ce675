"""DistillLoss end to end on two tiny conv nets, construction-time checks, and config validation."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn

from edgekd.errors import UsageError
from edgekd.losses.composite import (
    AttentionConfig,
    DistillLoss,
    DistillLossConfig,
    HintConfig,
    KDConfig,
    LayerPair,
    WeightingConfig,
)
from edgekd.losses.kd import kd_loss
from edgekd.losses.weighting import sample_weights


class Student(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())  # 8x8
        self.block1 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU())  # 4x4
        self.odd = nn.Conv2d(8, 8, 2)  # 3x3, for the incompatible-size error
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block1(self.stem(x))
        self.odd(h)
        return self.fc(h.mean((2, 3)))


class Teacher(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())  # 8x8
        self.layer1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())  # 4x4
        self.layer2 = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())  # 2x2
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(self.stem(x))).mean((2, 3)))


def _cfg(**kw: object) -> DistillLossConfig:
    base: dict = {
        "kd": {"temperature": 4.0, "alpha": 0.9},
        "attention": {"pairs": [{"student": "block1", "teacher": "layer2"}], "weight": 1000.0},
        "hint": {"pairs": [{"student": "block1", "teacher": "layer1"}], "weight": 1.0},
    }
    base.update(kw)
    return DistillLossConfig.model_validate(base)


def _models() -> tuple[Student, Teacher, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return Student(), Teacher(), torch.rand(6, 3, 8, 8), torch.randint(0, 10, (6,))


def test_end_to_end_with_backward() -> None:
    student, teacher, x, y = _models()
    student.train()
    teacher.eval()
    loss_fn = DistillLoss(_cfg(), student, teacher, x[:2], "tiny_student", "tiny_teacher")
    assert loss_fn.student_paths == ("block1",)
    assert loss_fn.teacher_paths == ("layer2", "layer1")
    assert loss_fn.needs_teacher_features
    adapter = loss_fn.hints["0"].adapter
    assert adapter.weight.shape == (16, 8, 1, 1)
    assert {id(p) for p in loss_fn.parameters()} == {id(p) for p in adapter.parameters()}

    s_taps, t_taps = loss_fn.taps(student, teacher)
    with s_taps, t_taps:
        s_logits = student(x)
        with torch.no_grad():
            t_logits = teacher(x)
        loss, parts = loss_fn(s_logits, t_logits, y, s_taps.outputs, t_taps.outputs)
    assert loss.shape == () and torch.isfinite(loss)
    assert set(parts) == {"kd", "ce", "at", "hint", "total"}
    assert parts["at"] > 0 and parts["hint"] > 0
    assert parts["kd"] + parts["ce"] + parts["at"] + parts["hint"] == pytest.approx(parts["total"], rel=1e-5)
    assert parts["total"] == pytest.approx(loss.item(), rel=1e-6)
    torch.testing.assert_close(
        torch.tensor(parts["kd"] + parts["ce"]), kd_loss(s_logits, t_logits, y, 4.0, 0.9), rtol=1e-5, atol=1e-6
    )

    loss.backward()
    assert student.stem[0].weight.grad is not None and student.stem[0].weight.grad.abs().sum() > 0
    assert adapter.weight.grad is not None and adapter.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())

    opt = torch.optim.SGD([*student.parameters(), *loss_fn.parameters()], lr=0.1)
    before = adapter.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, adapter.weight)


def test_construction_leaves_batchnorm_statistics_and_modes_alone() -> None:
    student, teacher, x, _ = _models()
    student.train()
    teacher.train()
    teacher.stem[1].eval()  # a deliberately frozen BN must stay in eval
    mean_before = student.stem[1].running_mean.clone()
    DistillLoss(_cfg(), student, teacher, x)
    assert torch.equal(student.stem[1].running_mean, mean_before)
    assert student.training and student.stem[1].training
    assert teacher.training and not teacher.stem[1].training


def test_logits_only_needs_no_features_and_equals_kd() -> None:
    student, teacher, x, y = _models()
    loss_fn = DistillLoss(DistillLossConfig(), student, teacher, x)
    assert loss_fn.student_paths == () and not loss_fn.needs_teacher_features
    s_logits, t_logits = student(x), teacher(x).detach()
    loss, parts = loss_fn(s_logits, t_logits, y)
    torch.testing.assert_close(loss, kd_loss(s_logits, t_logits, y, 4.0, 0.9))
    assert parts["at"] == 0.0 and parts["hint"] == 0.0


def test_weighting_is_applied_to_the_per_sample_total() -> None:
    student, teacher, x, y = _models()
    cfg = _cfg(weighting={"score": "teacher_confidence", "tau": 0.05, "sign": -1})
    loss_fn = DistillLoss(cfg, student, teacher, x)
    s_taps, t_taps = loss_fn.taps(student, teacher)
    s_logits, t_logits = student(x), teacher(x).detach()
    loss, _ = loss_fn(s_logits, t_logits, y, s_taps.outputs, t_taps.outputs)
    terms = loss_fn.per_sample_terms(s_logits, t_logits, y, s_taps.outputs, t_taps.outputs)
    per_sample = sum(terms.values())
    w = sample_weights(t_logits, y, "teacher_confidence", 0.05, -1)
    torch.testing.assert_close(loss, (w * per_sample).sum())
    assert not torch.allclose(loss, per_sample.mean())
    s_taps.close()
    t_taps.close()


def test_errors_surface_at_construction() -> None:
    student, teacher, x, _ = _models()
    with pytest.raises(UsageError, match="teacher predicts 100 classes, student 10: fine-tune the teacher"):
        DistillLoss(DistillLossConfig(), student, Teacher(classes=100), x)
    bad_at = _cfg(attention={"pairs": [{"student": "odd", "teacher": "layer2"}]}, hint={})
    with pytest.raises(UsageError) as info:
        DistillLoss(bad_at, student, teacher, x)
    assert str(info.value) == (
        "cannot pair student odd (3x3) with teacher layer2 (2x2) for attention transfer: "
        "choose layers with equal or integer-multiple spatial sizes"
    )
    bad_hint = _cfg(attention={}, hint={"pairs": [{"student": "odd", "teacher": "layer1"}]})
    with pytest.raises(UsageError, match="for hint learning"):
        DistillLoss(bad_hint, student, teacher, x)
    bad_path = _cfg(attention={"pairs": [{"student": "block1", "teacher": "layer3"}]})
    with pytest.raises(UsageError, match="layer 'layer3' not found in tiny_teacher; nearest: layer"):
        DistillLoss(bad_path, student, teacher, x, "tiny_student", "tiny_teacher")
    with pytest.raises(ValueError, match="student feature 'block1' missing"):
        DistillLoss(_cfg(), student, teacher, x)(student(x), teacher(x), torch.zeros(6, dtype=torch.long), {}, {})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: KDConfig(alpha=1.5), "--alpha must be in [0, 1], got 1.5"),
        (lambda: KDConfig(temperature=0), "--temperature must be in (0, 100], got 0"),
        (lambda: KDConfig(temperature=250), "--temperature must be in (0, 100], got 250"),
        (lambda: DistillLossConfig(label_smoothing=1.0), "--label-smoothing must be in [0, 1), got 1"),
        (lambda: WeightingConfig(tau=-1), "--weighting-tau must be > 0, got -1"),
        (lambda: AttentionConfig(weight=-1), "--attention-weight must be >= 0, got -1"),
        (lambda: HintConfig(weight=-2), "--hint-weight must be >= 0, got -2"),
        (lambda: LayerPair(student="", teacher="layer1"), "a layer pair needs a student and a teacher"),
        (
            lambda: DistillLossConfig.model_validate({"kd": {"alpha": 2}}),
            "--alpha must be in [0, 1], got 2",
        ),
    ],
)
def test_config_range_errors_are_one_line_usage_errors(build, message: str) -> None:  # noqa: ANN001
    with pytest.raises(UsageError) as info:
        build()
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_config_forbids_unknown_keys_and_round_trips() -> None:
    with pytest.raises(pydantic.ValidationError):
        KDConfig.model_validate({"temprature": 3.0})
    with pytest.raises(pydantic.ValidationError):
        WeightingConfig(sign=2)  # type: ignore[arg-type]
    cfg = _cfg(weighting={"score": "teacher_loss", "sign": -1})
    assert DistillLossConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert AttentionConfig().pairs == [] and AttentionConfig().pairs is not AttentionConfig().pairs
