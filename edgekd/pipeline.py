"""Runs stages in order and resumes by id.

A stage module exposes `NAME`, `Config` (pydantic, extra="forbid"), `READS_DATA` and
`run(config, parents, ctx) -> Manifest`. The pipeline computes each stage's id from its name, config,
parent ids and (for stages that read data) the data fingerprint; a finished stage folder with that id is
reused, anything else runs in `.work-<stage>-<id>/` and is renamed into place when it is done.
"""

from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from pydantic import BaseModel
from rich.console import Console

from edgekd.manifest import (
    Manifest, load_manifest, library_versions, now_iso, save_manifest, stage_id, finalize_stage_dir,
)

STAGE_MODULES = ("teacher", "finetune", "distill", "qad", "export", "compile", "bench")


def stage_module(name: str) -> ModuleType:
    return importlib.import_module(f"edgekd.stages.{name}")


@dataclass
class StageSpec:
    name: str
    config: BaseModel
    parents: dict[str, str] = field(default_factory=dict)  # role -> stage name earlier in the pipeline


@dataclass
class StageContext:
    """What a stage may use besides its config and its parents' manifests."""

    run_dir: Path
    work_dir: Path
    console: Console
    progress: Any  # a rich Progress (or None when quiet)
    data_loader: Callable[[], Any]  # returns the loaded edgekd.data.dataset.Dataset (cached)
    parent_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def data(self):
        return self.data_loader()


@dataclass
class StageOutcome:
    spec: StageSpec
    manifest: Manifest
    stage_dir: Path
    skipped: bool


def stage_dir_name(name: str, sid: str) -> str:
    return f"{name}-{sid}"


def run_pipeline(specs: list[StageSpec], run_dir: Path, *, fingerprint: Callable[[], str],
                 data_loader: Callable[[], Any], console: Console, progress: Any,
                 on_stage: Callable[[StageOutcome], None] | None = None) -> list[StageOutcome]:
    from edgekd.train import dist  # torch only when a pipeline really runs

    ctx_dist = dist.context()
    run_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, StageOutcome] = {}
    outcomes: list[StageOutcome] = []
    for spec in specs:
        mod = stage_module(spec.name)
        cfg_dump = spec.config.model_dump(mode="json")
        parent_ids = {role: done[src].manifest.id for role, src in spec.parents.items()}
        fp = fingerprint() if getattr(mod, "READS_DATA", False) else None
        sid = stage_id(spec.name, cfg_dump, parent_ids, fp)
        final = run_dir / stage_dir_name(spec.name, sid)
        if (final / "manifest.json").is_file():
            outcome = StageOutcome(spec, load_manifest(final), final, skipped=True)
        else:
            work = run_dir / f".work-{spec.name}-{sid}"
            trains = getattr(mod, "DISTRIBUTED", False)
            if ctx_dist.is_main or trains:
                if ctx_dist.is_main:
                    work.mkdir(parents=True, exist_ok=True)
                dist.barrier()
                ctx = StageContext(run_dir, work, console, progress, data_loader,
                                   {role: done[src].stage_dir for role, src in spec.parents.items()})
                started, t0 = now_iso(), time.perf_counter()
                manifest = mod.run(spec.config, {r: done[s].manifest for r, s in spec.parents.items()}, ctx)
                if ctx_dist.is_main:
                    manifest = manifest.model_copy(update=dict(
                        stage=spec.name, id=sid, config=cfg_dump, parents=parent_ids, input_fingerprint=fp,
                        versions=library_versions(), started_at=started, finished_at=now_iso(),
                        wall_s=round(time.perf_counter() - t0, 3)))
                    _clean_work_state(work)
                    save_manifest(manifest, work)
                    finalize_stage_dir(work, final)
            dist.barrier()
            outcome = StageOutcome(spec, load_manifest(final), final, skipped=False)
        done[spec.name] = outcome
        outcomes.append(outcome)
        if on_stage is not None and ctx_dist.is_main:
            on_stage(outcome)
    return outcomes


def _clean_work_state(work: Path) -> None:
    """Per-epoch resume state is not part of a finished stage."""
    state = work / "state"
    if state.is_dir():
        shutil.rmtree(state)


def config_of(module: str, **values: Any) -> BaseModel:
    return stage_module(module).Config(**values)
