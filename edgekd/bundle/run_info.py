"""Read a finished run: report.json plus the manifests of the stage folders it names (no torch needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.stages.metrics import metrics_of
from edgekd.errors import UsageError
from edgekd.manifest import Manifest, load_manifest
from edgekd.model_roles import student_role
from edgekd.paths import require_dir

REPORT_JSON = "report.json"


@dataclass
class RunView:
    """A run directory as the bundle and the reports read it: report.json and the current stage folders."""

    run_dir: Path
    report: dict[str, Any]
    dirs: dict[str, Path] = field(default_factory=dict)  # stage name -> its folder (the ids report.json names)
    _manifests: dict[str, Manifest] = field(default_factory=dict)

    def has(self, stage: str) -> bool:
        return stage in self.dirs

    def manifest(self, stage: str) -> Manifest:
        if stage not in self.dirs:
            raise UsageError(f"run {self.run_dir} has no finished '{stage}' stage in {REPORT_JSON}")
        if stage not in self._manifests:
            self._manifests[stage] = load_manifest(self.dirs[stage])
        return self._manifests[stage]

    def path(self, stage: str, artifact: str) -> Path:
        """The file of one artifact of one stage (UsageError when the run does not have it)."""
        m = self.manifest(stage)
        if not m.has(artifact):
            raise UsageError(f"run {self.run_dir}: stage '{stage}' has no artifact '{artifact}'")
        return self.dirs[stage] / m.artifact(artifact).path

    @property
    def target(self) -> dict[str, Any]:
        return self.report.get("target", {})

    def final_role(self) -> str:
        return student_role(self.target.get("precision"))

    def histories(self) -> dict[str, list[dict[str, Any]]]:
        """Per training stage, its per-epoch history (phase, epoch, loss, val_top1)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for stage in ("teacher", "finetune", "distill", "qad"):
            if self.has(stage):
                hist = metrics_of(self.manifest(stage)).history
                if hist:
                    out[stage] = list(hist)
        return out


def read_report(run_dir: Path) -> dict[str, Any]:
    require_dir(Path(run_dir), "run directory", "the folder edgekd compress wrote")
    path = Path(run_dir) / REPORT_JSON
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {REPORT_JSON}: not a finished edgekd run (run edgekd compress first)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({str(exc).splitlines()[0]})") from None


def open_run(run_dir: Path, report: dict[str, Any] | None = None) -> RunView:
    """The run as its report.json describes it, or as `report` (the report about to be written) does."""
    run_dir = Path(run_dir)
    report = read_report(run_dir) if report is None else report
    dirs = {}
    for s in report.get("stages", []):
        d = run_dir / s["dir"]
        if not d.is_dir():
            raise UsageError(f"{d} is named in {REPORT_JSON} but missing: the run folder is incomplete")
        dirs[s["stage"]] = d
    return RunView(run_dir=run_dir, report=report, dirs=dirs)
