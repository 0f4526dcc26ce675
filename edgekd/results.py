"""Typed results: what `edgekd.compress`, `edgekd.bench` and `edgekd.eval` return and the CLI prints and dumps.

report.json keeps its shape (every key the report had is still there: the models allow extra fields), and
readers use attributes: `report.verdict`, `report.model("student_int8").top1`, `report.budget("model
size").verdict`. A renamed field then fails in one place, here, instead of silently in a reader. No torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

REPORT_SCHEMA = 1


class _Open(BaseModel):
    """A result whose named fields are checked and whose other fields are kept as they are."""

    model_config = ConfigDict(extra="allow")


class Latency(_Open):
    n: int
    median_ms: float
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    cv: float | None = None


class ModelResult(_Open):
    """One measured artifact (a row of the report's table)."""

    role: str
    model: str | None = None
    precision: str | None = None
    runtime: str | None = None
    file: str | None = None
    measured_on: str | None = None
    top1: float | None = None
    latency: Latency | None = None


class BudgetVerdict(_Open):
    name: str
    limit: float | None = None
    value: float | None = None
    basis: str = ""
    verdict: str


class StageResult(_Open):
    stage: str
    id: str
    dir: str
    reused: bool = False
    wall_s: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class TargetSummary(_Open):
    name: str
    runtime: str
    device: str | None = None
    precision: str | None = None
    measured_here: bool | None = None


class Report(_Open):
    """The report of one `compress` run (report.json)."""

    schema_version: int = REPORT_SCHEMA
    edgekd_version: str
    run_dir: str
    target: TargetSummary
    data: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageResult] = Field(default_factory=list)
    models: list[ModelResult] = Field(default_factory=list)
    budgets: list[BudgetVerdict] = Field(default_factory=list)
    verdict: str
    exit_code: int
    strict: bool = False
    bundle: str | None = None

    def model(self, role: str) -> ModelResult:
        """The artifact measured in `role` (teacher_fp32, student_fp32, student_int8)."""
        for row in self.models:
            if row.role == role:
                return row
        raise KeyError(f"no model in role {role!r}; roles: {', '.join(r.role for r in self.models)}")

    def stage(self, name: str) -> StageResult:
        for st in self.stages:
            if st.stage == name:
                return st
        raise KeyError(f"no stage {name!r}; stages: {', '.join(s.stage for s in self.stages)}")

    def budget(self, name: str) -> BudgetVerdict:
        for b in self.budgets:
            if b.name == name:
                return b
        raise KeyError(f"no budget {name!r}; budgets: {', '.join(b.name for b in self.budgets)}")

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class BenchReport(_Open):
    """`edgekd bench` / `edgekd.bench`: the measured artifacts and their verdicts on a target."""

    verdict: str | None = None
    exit_code: int


class EvalReport(_Open):
    """`edgekd eval` / `edgekd.eval`: top-1 of every runnable artifact of a bundle on raw image files."""
