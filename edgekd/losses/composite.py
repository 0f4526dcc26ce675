"""The distillation objective of the distill and QAD stages: KD + attention transfer + hints, per sample, weighted.

Per sample i (see each module for the formula and its paper)::

    total_i = alpha * T^2 * KL(p_t,i || p_s,i)                  kd.py          (Hinton et al. 2015)
            + (1 - alpha) * CE(s_i, y_i)                        kd.py
            + attention.weight / 2 * sum_pairs AT_i             attention.py   (Zagoruyko & Komodakis 2017)
            + hint.weight * sum_pairs HINT_i                    hint.py        (Romero et al. 2015)

    loss = sum_i w_i * total_i,   w = softmax(sign * score / tau)            weighting.py (uniform: the mean)

`DistillLoss` is built once, before training, from the config, both models and one example batch: it checks
the layer paths on both models, runs one no-grad forward in eval mode (each module's train/eval flag is
restored afterwards) to learn feature shapes, builds the hint regressors, and checks class counts and
spatial compatibility, so that every user error surfaces before the first step. Its own parameters (the
hint regressors, created on the student's device; move them with ``.to()`` if the student moves later)
must go to the optimiser with the student's. The models are not registered as
sub-modules: ``DistillLoss.state_dict()`` holds only the regressors.

Typical use::

    loss_fn = DistillLoss(cfg, student, teacher, example_batch, "cifar_resnet8", "cifar_resnet56")
    s_taps, t_taps = loss_fn.taps(student, teacher)
    opt = SGD([*student.parameters(), *loss_fn.parameters()], lr=0.1)
    s_logits = student(x)
    with torch.no_grad():
        t_logits = teacher(x)
    loss, parts = loss_fn(s_logits, t_logits, y, s_taps.outputs, t_taps.outputs)
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from edgekd.errors import UsageError
from edgekd.losses import kd as _kd
from edgekd.losses.attention import attention_loss, check_feature_map, check_spatial_pair
from edgekd.losses.hint import HintLoss
from edgekd.losses.hooks import FeatureTaps, module_device, probe_shapes, validate_paths
from edgekd.losses.weighting import check_tau, sample_weights, weighted_sum

# ---------------------------------------------------------------------------------------------- configs
# Range checks raise UsageError (one line, exit 2) straight through pydantic; unknown keys stay pydantic
# ValidationErrors (extra="forbid").


def _finite_non_negative(v: float, flag: str) -> float:
    if not (0.0 <= v < float("inf")):
        raise UsageError(f"{flag} must be >= 0, got {v:g}")
    return v


class KDConfig(BaseModel):
    """Hinton logit distillation: temperature T in (0, 100], alpha (weight of the soft term) in [0, 1]."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = 4.0
    alpha: float = 0.9

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        return _kd.check_temperature(v)

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float) -> float:
        return _kd.check_alpha(v)


class LayerPair(BaseModel):
    """A student layer path matched to a teacher layer path (paths as in ``model.named_modules()``)."""

    model_config = ConfigDict(extra="forbid")
    student: str
    teacher: str

    @field_validator("student", "teacher")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise UsageError("a layer pair needs a student and a teacher layer path, got an empty one")
        return v


class AttentionConfig(BaseModel):
    """Attention transfer pairs; `weight` is the paper's beta (the term is beta / 2 * sum of AT)."""

    model_config = ConfigDict(extra="forbid")
    pairs: list[LayerPair] = Field(default_factory=list)
    weight: float = 1000.0
    p: float = 2.0

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: float) -> float:
        return _finite_non_negative(v, "--attention-weight")

    @field_validator("p")
    @classmethod
    def _p(cls, v: float) -> float:
        if not (0.0 < v <= 16.0):
            raise UsageError(f"--attention-p must be in (0, 16], got {v:g} (the paper uses 2)")
        return v


class HintConfig(BaseModel):
    """FitNets hint pairs; `batch_norm` adds BatchNorm after the 1x1 regressor (when channels differ)."""

    model_config = ConfigDict(extra="forbid")
    pairs: list[LayerPair] = Field(default_factory=list)
    weight: float = 1.0
    batch_norm: bool = False

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: float) -> float:
        return _finite_non_negative(v, "--hint-weight")


class WeightingConfig(BaseModel):
    """Per-sample weights w = softmax(sign * score / tau) over the batch; 'uniform' is the plain mean."""

    model_config = ConfigDict(extra="forbid")
    score: Literal["uniform", "teacher_confidence", "teacher_loss"] = "uniform"
    tau: float = 1.0
    sign: Literal[1, -1] = 1

    @field_validator("tau")
    @classmethod
    def _tau(cls, v: float) -> float:
        return check_tau(v)


class DistillLossConfig(BaseModel):
    """Everything the distillation objective needs; part of the distill/QAD stage configs."""

    model_config = ConfigDict(extra="forbid")
    kd: KDConfig = Field(default_factory=KDConfig)
    attention: AttentionConfig = Field(default_factory=AttentionConfig)
    hint: HintConfig = Field(default_factory=HintConfig)
    weighting: WeightingConfig = Field(default_factory=WeightingConfig)
    label_smoothing: float = 0.0

    @field_validator("label_smoothing")
    @classmethod
    def _label_smoothing(cls, v: float) -> float:
        return _kd.check_label_smoothing(v)


# ------------------------------------------------------------------------------------------------- module


class DistillLoss(nn.Module):
    """The weighted per-sample sum of KD, CE, attention-transfer and hint terms (see the module doc)."""

    def __init__(
        self,
        cfg: DistillLossConfig,
        student: nn.Module,
        teacher: nn.Module,
        example_input: Tensor,
        student_name: str | None = None,
        teacher_name: str | None = None,
        student_example: Tensor | None = None,  # when the student takes another input size than the teacher
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.student_name = student_name or type(student).__name__
        self.teacher_name = teacher_name or type(teacher).__name__
        pairs = [*cfg.attention.pairs, *cfg.hint.pairs]
        self.student_paths: tuple[str, ...] = tuple(dict.fromkeys(p.student for p in pairs))
        self.teacher_paths: tuple[str, ...] = tuple(dict.fromkeys(p.teacher for p in pairs))
        validate_paths(student, self.student_paths, self.student_name)
        validate_paths(teacher, self.teacher_paths, self.teacher_name)

        s_example = example_input if student_example is None else student_example
        s_logits, s_shapes = probe_shapes(student, list(self.student_paths), s_example, self.student_name)
        t_logits, t_shapes = probe_shapes(teacher, list(self.teacher_paths), example_input, self.teacher_name)
        if s_logits is not None and t_logits is not None:
            self.check_compatible(s_logits, t_logits)
        self.feature_shapes = {"student": s_shapes, "teacher": t_shapes}

        for pair in cfg.attention.pairs:
            s_shape, t_shape = s_shapes[pair.student], t_shapes[pair.teacher]
            check_feature_map(s_shape, "student", pair.student, "attention transfer")
            check_feature_map(t_shape, "teacher", pair.teacher, "attention transfer")
            check_spatial_pair(s_shape[-2:], t_shape[-2:], pair.student, pair.teacher, "attention transfer")

        self.hints = nn.ModuleDict(
            {
                str(k): HintLoss.from_shapes(
                    s_shapes[pair.student], t_shapes[pair.teacher], cfg.hint.batch_norm, pair.student, pair.teacher
                )
                for k, pair in enumerate(cfg.hint.pairs)
            }
        )
        self.hints.to(module_device(student, example_input.device))

    @staticmethod
    def check_compatible(student_logits_shape: tuple[int, ...], teacher_logits_shape: tuple[int, ...]) -> None:
        """UsageError unless both logits are (N, classes) with the same class count."""
        _kd.check_compatible(tuple(student_logits_shape), tuple(teacher_logits_shape))

    @property
    def needs_teacher_features(self) -> bool:
        """True when some term reads teacher feature maps (attention or hint pairs are configured)."""
        return bool(self.teacher_paths)

    def taps(self, student: nn.Module, teacher: nn.Module) -> tuple[FeatureTaps, FeatureTaps]:
        """Feature taps on exactly the layers this loss reads; close both when training ends."""
        return (
            FeatureTaps(student, self.student_paths, self.student_name),
            FeatureTaps(teacher, self.teacher_paths, self.teacher_name),
        )

    @staticmethod
    def _feature(feats: dict[str, Tensor] | None, path: str, side: str) -> Tensor:
        if feats is None or path not in feats:
            raise ValueError(
                f"{side} feature '{path}' missing: tap DistillLoss.{side}_paths with FeatureTaps and pass "
                f"its .outputs"
            )
        return feats[path]

    def per_sample_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        targets: Tensor,
        student_feats: dict[str, Tensor] | None = None,
        teacher_feats: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Each weighted term per sample, shape (N,): kd, ce, at, hint (their sum is the total)."""
        cfg = self.cfg
        soft, hard = _kd.kd_terms(
            student_logits, teacher_logits, targets, cfg.kd.temperature, cfg.label_smoothing
        )
        terms = {"kd": cfg.kd.alpha * soft, "ce": (1.0 - cfg.kd.alpha) * hard}
        at = torch.zeros_like(soft)
        for pair in cfg.attention.pairs:
            s = self._feature(student_feats, pair.student, "student")
            t = self._feature(teacher_feats, pair.teacher, "teacher")
            at = at + attention_loss(s, t, cfg.attention.p, "none", pair.student, pair.teacher)
        terms["at"] = (cfg.attention.weight / 2.0) * at
        hint = torch.zeros_like(soft)
        for k, pair in enumerate(cfg.hint.pairs):
            s = self._feature(student_feats, pair.student, "student")
            t = self._feature(teacher_feats, pair.teacher, "teacher")
            hint = hint + self.hints[str(k)](s, t, "none")
        terms["hint"] = cfg.hint.weight * hint
        return terms

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        targets: Tensor,
        student_feats: dict[str, Tensor] | None = None,
        teacher_feats: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """(scalar loss, {kd, ce, at, hint, total} as floats, each weighted so that the parts sum to total)."""
        terms = self.per_sample_terms(student_logits, teacher_logits, targets, student_feats, teacher_feats)
        w = self.cfg.weighting
        weights = sample_weights(teacher_logits, targets, w.score, w.tau, w.sign)
        per_sample = terms["kd"] + terms["ce"] + terms["at"] + terms["hint"]
        loss = weighted_sum(per_sample, weights)
        names = [*terms, "total"]
        values = torch.stack([*(weighted_sum(t, weights) for t in terms.values()), loss]).detach()
        return loss, dict(zip(names, values.tolist(), strict=True))  # one host sync for all parts


__all__ = [
    "AttentionConfig",
    "DistillLoss",
    "DistillLossConfig",
    "HintConfig",
    "KDConfig",
    "LayerPair",
    "WeightingConfig",
]
