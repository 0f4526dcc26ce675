"""Runs stages in order and resumes by id.

A stage module exposes `NAME`, `Config` (pydantic, extra="forbid"), `READS_DATA` and
`run(config, parents, ctx) -> Manifest`. The pipeline computes each stage's id from its name, config,
parent ids, (for stages that read data) the data fingerprint, and its code; a finished stage folder with that id
is reused, anything else runs in `.work-<stage>-<id>/` and is renamed into place when it is done.

The id knows the code: the guarantee is that a stage's id changes whenever the source of its stage module, or
of any edgekd module that module imports directly or through others, changes (edgekd.codehash finds them
statically with ast and hashes their bytes; the manifest records module -> hash). So after a fix to
`stages/qad.py` or to `quant/kernels.py` (or an upgrade of edgekd that changes them), a rerun in an old run
directory reruns qad and every stage after it and reuses the stages before it; it prints one line per stage
whose own code changed, naming the changed files (`note: qad reruns: its code changed since qad-<old id>
(edgekd/quant/kernels.py)`). The old folders stay beside the new ones. Not covered: third-party libraries
(their versions are in every manifest, and a change is warned about: edgekd.stage_env) and code loaded by a
name computed at run time other than the runtime registry's and the stage table's (see edgekd.codehash).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from pydantic import BaseModel
from rich.console import Console

from edgekd import codehash
from edgekd.errors import UsageError
from edgekd.fsio import move_aside, short_hash
from edgekd.stage_env import made_on
from edgekd.manifest import (
    MANIFEST_NAME, Manifest, artifact_hashes, canonical_json, finalize_stage_dir, library_versions, load_manifest,
    now_iso, save_manifest, stage_id, verify_artifacts,
)

STAGE_MODULES = ("teacher", "finetune", "search", "distill", "qad", "qad_pt2e", "export", "compile", "bench")


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

    def data_at(self, pre):
        """The data decoded at `pre`'s input size (a student searched at a smaller resolution): the run's data
        when the size is the data's own (edgekd.data.dataset.DataLoader.at_size)."""
        data = self.data
        if tuple(pre.input_size) == tuple(data.preprocessing.input_size):
            return data
        at_size = getattr(self.data_loader, "at_size", None)
        if at_size is None:
            raise RuntimeError(f"this pipeline's data loader cannot decode the data at {pre.input_size}")
        return at_size(pre)


@dataclass
class StageOutcome:
    spec: StageSpec
    manifest: Manifest
    stage_dir: Path
    skipped: bool


def stage_dir_name(name: str, sid: str) -> str:
    return f"{name}-{sid}"


@dataclass
class _Planned:
    spec: StageSpec
    mod: ModuleType
    cfg_dump: dict[str, Any]
    parent_ids: dict[str, str]
    fingerprint: str | None
    sid: str
    final: Path
    code: dict[str, str] = field(default_factory=dict)  # module -> short hash (edgekd.codehash)
    seed_key: str = ""  # the id without the code: what seeds the stage (see _plan)


def _plan(specs: list[StageSpec], run_dir: Path, fingerprint: Callable[[], str],
          seed_fingerprint: Callable[[], str] | None = None) -> list[_Planned]:
    """Every stage's id before anything runs (a parent's id is known from its own name, config and parents).
    `seed_fingerprint`: the data as it seeds the stages (Dataset.seed_key: without file times); default the same."""
    planned: list[_Planned] = []
    ids: dict[str, str] = {}
    seed_keys: dict[str, str] = {}  # ids without the code: an edit elsewhere in edgekd does not reshuffle the seeds
    fp_cache: list[str] = []
    for spec in specs:
        mod = stage_module(spec.name)
        cfg_dump = spec.config.model_dump(mode="json")
        parent_ids = {role: ids[src] for role, src in spec.parents.items()}
        fp = sfp = None
        if getattr(mod, "READS_DATA", False):
            if not fp_cache:
                fp_cache.append(fingerprint())
                fp_cache.append(seed_fingerprint() if seed_fingerprint else fp_cache[0])
            fp, sfp = fp_cache
        env = mod.environment(spec.config) if hasattr(mod, "environment") else None  # runtimes + host (compile, bench)
        name = getattr(mod, "__name__", None)  # a stand-in stage object (tests) has no source to hash
        code = codehash.code_fingerprint(name) if name else {}
        inputs = fp if env is None else {"inputs": fp, "environment": env}
        sid = stage_id(spec.name, cfg_dump, parent_ids, inputs, codehash.code_id(name) if name else "")
        ids[spec.name] = sid
        seed_keys[spec.name] = stage_id(spec.name, cfg_dump, {r: seed_keys[src] for r, src in spec.parents.items()},
                                        sfp if env is None else {"inputs": sfp, "environment": env})
        planned.append(_Planned(spec, mod, cfg_dump, parent_ids, fp, sid, run_dir / stage_dir_name(spec.name, sid),
                                code, seed_keys[spec.name]))
    return planned


def run_pipeline(specs: list[StageSpec], run_dir: Path, *, fingerprint: Callable[[], str],
                 data_loader: Callable[[], Any], console: Console, progress: Any,
                 on_stage: Callable[[StageOutcome], None] | None = None,
                 seed_fingerprint: Callable[[], str] | None = None) -> list[StageOutcome]:
    """Run (or reuse) each stage in order. Under torchrun, stages with DISTRIBUTED = True run on every rank,
    the others on rank 0 alone; only rank 0 writes into the run directory (manifests, checkpoints, renames).
    After the last stage that runs on every rank, the other ranks return (with the outcomes so far) and rank 0
    runs the rest alone, so no collective timeout limits how long export, compile or bench may take.
    Before anything trains, the ranks check that they agree on every stage's config and data, that they
    share the run directory, and that each training stage's global batch divides by the world size."""
    from edgekd.train import dist  # torch only when a pipeline really runs

    ctx_dist = dist.context()
    planned = _plan(specs, run_dir, fingerprint, seed_fingerprint)
    # the pipeline's own collectives: a peer lost there is one line, not an internal error
    between = functools.partial(_peer_failures, ctx_dist, "stopped between stages", "finished stages are kept")
    if ctx_dist.distributed:
        with between():
            _check_ranks_agree(planned, ctx_dist)
    _check_global_batches(planned, ctx_dist.world)
    if ctx_dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if ctx_dist.distributed:
        with between():
            _check_shared_run_dir(run_dir, ctx_dist)
    done: dict[str, StageOutcome] = {}
    outcomes: list[StageOutcome] = []
    # After the last stage that runs on every rank, rank 0 goes on alone and the others leave: waiting for it
    # in a collective would time out (EDGEKD_DIST_TIMEOUT_S) whenever export, compile, bench or the PT2E pass
    # take longer than that, and kill a run whose training had finished.
    shared_until = max((i for i, p in enumerate(planned) if getattr(p.mod, "DISTRIBUTED", False)), default=-1)
    with _stop_cleanly_on_sigterm(ctx_dist):
        for index, item in enumerate(planned):
            spec, mod, final = item.spec, item.mod, item.final
            together = ctx_dist.distributed and index <= shared_until
            if ctx_dist.distributed and not together and not ctx_dist.is_main:
                break
            reusable = _reusable(item, done) if ctx_dist.is_main else None
            if reusable and not hasattr(mod, "environment"):
                from edgekd.stage_env import warn_if_stack_changed

                warn_if_stack_changed(final)
            if together:
                with between():
                    reusable = dist.broadcast_object(reusable)  # rank 0 alone checks (and moves aside) what it finds
            if reusable:
                outcome = StageOutcome(spec, load_manifest(final), final, skipped=True)
            else:
                if ctx_dist.is_main:
                    _say_if_code_changed(item, run_dir)
                work = run_dir / f".work-{spec.name}-{item.sid}"
                every_rank = getattr(mod, "DISTRIBUTED", False)
                if ctx_dist.is_main or every_rank:
                    _run_stage(item, work, done, run_dir, console, progress, data_loader, ctx_dist, every_rank)
                if together:  # a stage rank 0 ran alone (the search) may take longer than any collective timeout
                    with between():
                        dist.barrier() if every_rank else dist.wait_for_main()
                outcome = StageOutcome(spec, load_manifest(final), final, skipped=False)
            done[spec.name] = outcome
            outcomes.append(outcome)
            if on_stage is not None and ctx_dist.is_main:
                on_stage(outcome)
    return outcomes


def _run_stage(item: _Planned, work: Path, done: dict[str, StageOutcome], run_dir: Path, console: Console,
               progress: Any, data_loader: Callable[[], Any], ctx_dist, every_rank: bool) -> None:
    """One stage on this rank. Rank 0 works in `.work-<stage>-<id>/`; other ranks in a private scratch folder,
    so nothing but rank 0 ever writes into the run directory."""
    from edgekd.train import dist

    spec = item.spec
    if ctx_dist.is_main:
        work.mkdir(parents=True, exist_ok=True)
        for leftover in work.iterdir():  # an interrupted attempt: keep only the resume state
            if leftover.name != "state":
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        stage_work = work
    else:
        stage_work = Path(tempfile.mkdtemp(prefix=f"edgekd-rank{ctx_dist.rank}-{spec.name}-"))
    # a stage on every rank: a lost peer is one line; a rank-0-only stage has no peer, its errors pass as they are
    lost_peer = functools.partial(_peer_failures, ctx_dist, f"stage {spec.name} stopped",
                                  f"the last good checkpoint is kept in {work / 'state'}") if every_rank \
        else contextlib.nullcontext
    try:
        if every_rank:
            with lost_peer():
                dist.barrier()  # rank 0 has created the work folder; a rank-0-only stage has no partner here
        ctx = StageContext(run_dir, stage_work, console, progress if ctx_dist.is_main else None, data_loader,
                           {role: done[src].stage_dir for role, src in spec.parents.items()})
        started, t0 = now_iso(), time.perf_counter()
        from edgekd.train.loop import seed_everything

        # Random initialisations (new heads, students, adapters) follow from the stage id without its code part:
        # the same inputs give the same weights, every rank starts from the same ones, and an edit to edgekd that
        # reruns a stage does not also draw it new random numbers.
        seed_everything(int(item.seed_key, 16) % 2**31)
        # A rank-0-only stage runs as a single process: a Trainer in it (the PT2E pass) must not wait in
        # collectives for ranks that have left.
        alone = dist.alone() if ctx_dist.distributed and not every_rank else contextlib.nullcontext()
        with lost_peer(), alone:
            manifest = item.mod.run(spec.config, {r: done[s].manifest for r, s in spec.parents.items()}, ctx)
        from edgekd.stages.metrics import check_metrics

        if getattr(item.mod, "__name__", "").startswith("edgekd.stages."):  # edgekd's own stages (not test stand-ins)
            check_metrics(spec.name, manifest.metrics)  # the fields other stages read are there (typed)
        if ctx_dist.is_main:
            manifest = manifest.model_copy(update=dict(
                stage=spec.name, id=item.sid, config=item.cfg_dump, parents=item.parent_ids,
                parent_artifacts={r: artifact_hashes(done[s].manifest) for r, s in spec.parents.items()},
                input_fingerprint=item.fingerprint, code=item.code, versions=library_versions(), started_at=started,
                made_on=made_on(),
                finished_at=now_iso(), wall_s=round(time.perf_counter() - t0, 3)))
            _clean_work_state(work)
            save_manifest(manifest, work)
            finalize_stage_dir(work, item.final)
    finally:
        if not ctx_dist.is_main:
            shutil.rmtree(stage_work, ignore_errors=True)


def _reusable(item: _Planned, done: dict[str, StageOutcome]) -> bool:
    """Whether the finished folder of this stage can be reused as it is. A folder whose manifest does not load
    or does not match its id, or whose files no longer match their recorded sha256, is moved aside as
    `<folder>.corrupt-<time>` (one warning line) and the stage reruns; a stage built from parent files that
    have changed since (a parent rerun that did not reproduce them) reruns in place."""
    final = item.final
    if not final.exists():
        return False
    rerun = "the stage reruns"
    if not (final / MANIFEST_NAME).is_file():
        move_aside(final, f"has no {MANIFEST_NAME}", rerun)
        return False
    try:
        manifest = load_manifest(final)
    except UsageError as exc:
        move_aside(final, f"has a {MANIFEST_NAME} that does not load ({str(exc).rsplit('(', 1)[-1].rstrip(')')})",
                   rerun)
        return False
    if manifest.stage != item.spec.name or manifest.id != item.sid:
        move_aside(final, f"holds the manifest of {manifest.stage}-{manifest.id}", rerun)
        return False
    problems = verify_artifacts(manifest, final)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        move_aside(final, f"is damaged: {problems[0]}{more}", rerun)
        return False
    for role, src in item.spec.parents.items():
        recorded = manifest.parent_artifacts.get(role)
        if recorded is not None and recorded != artifact_hashes(done[src].manifest):
            sys.stderr.write(f"warning: {final.name} was built from {src} files that have changed since: the "
                             "stage reruns\n")
            return False
    return True


def _say_if_code_changed(item: _Planned, run_dir: Path) -> None:
    """A stage about to run whose run directory holds a finished folder of the same stage and config made by
    other code: say so on stderr, naming the edgekd files whose source differs (at most five)."""
    if item.final.exists():
        return
    older = []
    for folder in run_dir.glob(f"{item.spec.name}-*"):
        if len(folder.name) != len(item.final.name) or not (folder / MANIFEST_NAME).is_file():
            continue  # .corrupt-<time> folders, other stages with this prefix
        try:
            manifest = load_manifest(folder)
        except UsageError:
            continue
        if manifest.config == item.cfg_dump and manifest.code != item.code:
            older.append((manifest.finished_at, folder.name, manifest.code))
    if not older:
        return
    _, name, code = max(older)
    if not code:
        why = "its manifest was written before stage ids covered the code"
    else:
        changed = sorted(m for m in set(code) | set(item.code) if code.get(m) != item.code.get(m))
        paths = [str(codehash.source_path(m)) if m in item.code else f"{m} (gone)" for m in changed]
        more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
        why = f"{', '.join(paths[:5])}{more}"
    sys.stderr.write(f"note: {item.spec.name} reruns: its code changed since {name} ({why})\n")


def _short_hash(value: Any) -> str:
    return short_hash(canonical_json(value))


def _check_ranks_agree(planned: list[_Planned], ctx_dist) -> None:
    """Every rank must run the same stages with the same configs on the same data and the same edgekd code (one
    all_gather)."""
    from edgekd.train import dist

    mine = [(p.spec.name, _short_hash(p.cfg_dump), p.fingerprint, _short_hash(p.code)) for p in planned]
    every = dist.all_gather_object(mine)
    ref = every[0]
    for rank, theirs in enumerate(every[1:], start=1):
        if [t[0] for t in theirs] != [t[0] for t in ref]:
            raise UsageError(f"rank {rank} runs different stages ({', '.join(t[0] for t in theirs)}) than rank 0 "
                             f"({', '.join(t[0] for t in ref)}): start every rank with the same command")
        for (name, h, fp, code), (_, h0, fp0, code0) in zip(theirs, ref):
            if code != code0:
                raise UsageError(f"rank {rank} runs other edgekd code for stage {name} (code {code} vs {code0} on rank "
                                 "0): install the same edgekd on every node")
            if h != h0:
                raise UsageError(f"rank {rank} has a different config for stage {name} (hash {h} vs {h0} on rank 0): "
                                 "start every rank with the same command")
            if fp != fp0:
                raise UsageError(f"rank {rank} sees different data for stage {name} (fingerprint {str(fp)[:12]} vs "
                                 f"{str(fp0)[:12]} on rank 0): every rank must read the same --data")


def _check_shared_run_dir(run_dir: Path, ctx_dist) -> None:
    """Rank 0 writes the run directory and every rank reads it back: on several machines it must be shared."""
    from edgekd.train import dist

    token = dist.broadcast_object(secrets.token_hex(8) if ctx_dist.is_main else None)
    probe = run_dir / f".edgekd-rank-check-{token}"
    if ctx_dist.is_main:
        probe.write_text(token)
    dist.barrier()
    try:
        seen = probe.is_file() and probe.read_text() == token
    except OSError:
        seen = False
    every = dist.all_gather_object(seen)
    dist.barrier()
    if ctx_dist.is_main:
        probe.unlink(missing_ok=True)
    blind = [r for r, ok in enumerate(every) if not ok]
    if blind:
        raise UsageError(f"rank {blind[0]} does not see the run directory {run_dir} that rank 0 writes: on several "
                         "machines, put --run-dir on a filesystem that every node shares (same path)")


def _train_configs(config: BaseModel) -> list[BaseModel]:
    from edgekd.train.loop import TrainConfig

    return [v for v in (getattr(config, f) for f in type(config).model_fields) if isinstance(v, TrainConfig)]


def _check_global_batches(planned: list[_Planned], world: int) -> None:
    """Each training stage that will run splits its global batch into `world` equal slices: check it first."""
    if world == 1:
        return
    for p in planned:
        if not getattr(p.mod, "DISTRIBUTED", False) or (p.final / "manifest.json").is_file():
            continue
        for train in _train_configs(p.spec.config):
            if train.epochs > 0 and train.batch_size % world:
                lower = train.batch_size - train.batch_size % world
                hint = f"{lower} or {lower + world}" if lower else f"{world}"
                raise UsageError(f"global batch {train.batch_size} of stage {p.spec.name} does not divide by the "
                                 f"{world} processes: choose a --batch-size that is a multiple of {world} (e.g. {hint})")


@contextlib.contextmanager
def _peer_failures(ctx_dist, what: str, kept: str):
    """Under torchrun, a collective that fails because another process died, closed its socket or hung past
    EDGEKD_DIST_TIMEOUT_S becomes one line saying so and how to resume (not an internal error)."""
    from edgekd.errors import StageFailed
    from edgekd.train import dist

    try:
        yield
    except Exception as exc:
        if not (ctx_dist.distributed and dist.is_comm_failure(exc)):
            raise
        first = (str(exc).strip().splitlines() or ["no detail"])[0][:200]
        raise StageFailed(f"{what} on rank {ctx_dist.rank}: another process died, was killed or hung for over "
                          f"{ctx_dist.timeout_s:g}s (EDGEKD_DIST_TIMEOUT_S) [{first}]; {kept}: rerun the same "
                          "command with the same number of processes to resume") from None


@contextlib.contextmanager
def _stop_cleanly_on_sigterm(ctx_dist):
    """Under torchrun, a failed rank makes the launcher SIGTERM the others: say so in one line instead of dying
    silently (or with a traceback from inside a collective)."""
    if not ctx_dist.distributed or threading.current_thread() is not threading.main_thread():
        yield
        return
    from edgekd.errors import StageFailed

    def handler(_signum, _frame):
        raise StageFailed(f"rank {ctx_dist.rank} stopped by the launcher: another process failed (see torchrun's "
                          "summary); finished stages and the last per-epoch checkpoint are kept: rerun the same "
                          "command with the same number of processes to resume")

    global _SIGTERM_IS_OURS
    previous = signal.signal(signal.SIGTERM, handler)
    _SIGTERM_IS_OURS = True
    try:
        yield
    except BaseException:
        # This rank is already failing (it saw the dead peer first) and is on its way to print why: the launcher's
        # SIGTERM, which may arrive any moment now, must not kill it silently before it does.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise
    signal.signal(signal.SIGTERM, previous)
    _SIGTERM_IS_OURS = False


_SIGTERM_IS_OURS = False


def _default_sigterm_in_child() -> None:
    """A process forked while a rank's SIGTERM handling is in place (OpenVINO's telemetry sender, a fork-started
    DataLoader worker) gets the default action back. Inheriting the Python handler, a child blocked in C never
    runs it: seen under torchrun, the telemetry child deadlocked in getaddrinfo after the fork ignored the
    SIGTERM its parent sent, and rank 0 waited for it forever at exit after finishing the run."""
    if _SIGTERM_IS_OURS:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # not the main thread of the main interpreter: nothing was inherited there to undo
            pass


os.register_at_fork(after_in_child=_default_sigterm_in_child)


def _clean_work_state(work: Path) -> None:
    """Per-epoch resume state is not part of a finished stage."""
    state = work / "state"
    if state.is_dir():
        shutil.rmtree(state)


def config_of(module: str, **values: Any) -> BaseModel:
    return stage_module(module).Config(**values)
