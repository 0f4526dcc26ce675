"""Typed stage metrics: the fields one stage's manifest holds that another stage, the report or the bundle reads.

Each stage's `metrics` dict is validated against its model when the pipeline writes the manifest
(`check_metrics`), so a stage that drops or renames a field that others read fails there, in the test suite,
instead of a reader silently getting None. Readers use `metrics_of(manifest).field` (attributes, not string
keys). Fields no other module reads stay in the dict as they are (extra="allow"). No torch here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StageMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")


class TeacherMetrics(StageMetrics):
    origin: str
    head_classes: int
    params: int
    top1_before_transfer: float | None = None
    source_task_top1: float | None = None
    trained_on_all_classes: bool = False  # trained here on the data itself (no source task): nothing to transfer
    history: list[dict[str, Any]] = Field(default_factory=list)


class FinetuneMetrics(StageMetrics):
    transfer: str
    top1_after: float | None = None
    top1_before: float | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)


class SearchMetrics(StageMetrics):
    chosen: str
    chosen_arch: str
    candidates: list[dict[str, Any]] = Field(default_factory=list)


class DistillMetrics(StageMetrics):
    student_top1: float
    teacher_top1: float
    history: list[dict[str, Any]] = Field(default_factory=list)
    searched: str | None = None
    float_layers_declared: list[str] = Field(default_factory=list)
    train_wall_s: float | None = None


class QadMetrics(StageMetrics):
    int8_top1: float
    fp32_top1: float | None = None
    kept: str | None = None
    ptq_top1: float | None = None
    qad_top1: float | None = None
    calibration_images: int | None = None
    float_layers: list[Any] = Field(default_factory=list)
    history: list[dict[str, Any]] = Field(default_factory=list)


class QadPt2eMetrics(StageMetrics):
    routes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class CompileMetrics(StageMetrics):
    measured_on_target: bool
    format: str = "onnx"
    runtime_not_measured: str | None = None


class BenchMetrics(StageMetrics):
    rows: list[dict[str, Any]] = Field(default_factory=list)
    teacher_top1: float | None = None  # on the whole test split
    teacher_top1_eval_set: float | None = None  # on eval_set.npz, the images `edgekd bench RUN` measures on
    # (H, W) each model took: a student may take smaller images than its teacher (edgekd.search.resolution); None
    # for a run benched before it could
    student_input_size: tuple[int, int] | None = None
    teacher_input_size: tuple[int, int] | None = None
    budgets: list[dict[str, Any]] = Field(default_factory=list)
    per_class: dict[str, Any] | None = None
    int8_payoff: dict[str, Any] | None = None


METRICS: dict[str, type[StageMetrics]] = {
    "teacher": TeacherMetrics, "finetune": FinetuneMetrics, "search": SearchMetrics, "distill": DistillMetrics,
    "qad": QadMetrics, "qad_pt2e": QadPt2eMetrics, "compile": CompileMetrics, "bench": BenchMetrics,
}


def check_metrics(stage: str, metrics: dict[str, Any]) -> None:
    """Raise ValueError (an internal error: a stage broke its own contract) when `metrics` lacks a field that
    other modules read, or holds one of the wrong type."""
    model = METRICS.get(stage)
    if model is not None:
        model.model_validate(metrics)


def metrics_of(manifest) -> StageMetrics:
    """A manifest's metrics as its stage's model (StageMetrics for stages without one); a manifest that lacks
    a field (written by an older edgekd) is one UsageError saying to rerun the run."""
    from pydantic import ValidationError

    try:
        return METRICS.get(manifest.stage, StageMetrics).model_validate(manifest.metrics)
    except ValidationError as exc:
        from edgekd.errors import UsageError

        field = ".".join(map(str, exc.errors()[0]["loc"]))
        raise UsageError(f"the {manifest.stage} stage's manifest ({manifest.id}) has no valid '{field}': it was "
                         "written by another edgekd version; rerun `edgekd compress` on that run directory") from None
