"""Stage 3a, search (`--student auto`): the most accurate student that meets the target's latency budget.

1. Candidates: the family for the input scale (edgekd.search.family, at most `max_family` spread evenly in
   MACs) and the fine-tuned teacher made smaller, keeping its weights: channel-pruned by Torch-Pruning to each
   of `prune_ratios`, depth-pruned to each of `prune_depths` (edgekd.search.depth), and the shallowest one
   channel-pruned too (edgekd.search.candidates.pruned_candidates). A teacher Torch-Pruning cannot trace, or
   one without removable residual blocks: those candidates skipped, the reason in the notes.
2. Latency first (edgekd.search.latency): every candidate is quantized, compiled and timed on the target
   (or estimated, labelled) before anything trains; candidates over the latency budget, or whose INT8
   artifact is over the size budget, are dropped. None left: exit 1 naming the fastest candidate and its
   latency.
3. Successive halving (Jamieson & Talwalkar 2016; Li et al., Hyperband, 2018): each survivor is distilled
   from the teacher on a fraction `proxy_fraction` of the training split (at least PROXY_MIN_IMAGES) for
   `proxy_epochs`, ranked on the val split only (on equal top-1 the faster first); the best 1/`eta` go on
   with `eta` times the data, until one is left. Weights carry over between rungs; the winner's are this
   stage's `model`, which distill trains on with the full schedule.
4. `time_budget_s` bounds the stage: once it is spent no new proxy run starts (the first one always runs),
   and the best candidate so far (highest rung, best val top-1) wins; the notes say so. `state/best.json`
   in the work folder always names the best so far (its weights in state/weights/); the stage resumes from
   `state/state.json` (latencies and finished proxy runs are not redone).
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.batches import eval_batches
from edgekd.errors import StageFailed
from edgekd.fsio import write_atomic
from edgekd.losses.composite import DistillLossConfig
from edgekd.manifest import ArtifactKind, Manifest, make_artifact
from edgekd.models.checkpoint import load_edgekd_checkpoint, save_edgekd_checkpoint
from edgekd.search import Share
from edgekd.stages.common import load_model, save_model
from edgekd.targets import TargetProfile
from edgekd.train import dist
from edgekd.train.loop import Phase, TrainConfig

PROXY_MIN_IMAGES = 1000  # a first-rung proxy run sees at least this many images (or the whole split)
NAME = "search"
READS_DATA = True
DISTRIBUTED = False  # under torchrun: rank 0 alone, as a single process; the other ranks wait (dist.wait_for_main)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: dict
    family: list[str] | None = None  # None: edgekd.search.family.family_for(input size)
    max_family: int = Field(default=5, ge=0)
    prune_ratios: list[Share] = Field(default_factory=lambda: [0.5, 0.75])
    prune_depths: list[Share] = Field(default_factory=lambda: [0.5, 0.25])
    importance: Literal["magnitude", "taylor"] = "magnitude"
    preset: Literal["trt", "mixed"] = "mixed"
    proxy_epochs: int = Field(default=1, ge=1)
    proxy_fraction: float = Field(default=0.25, gt=0, le=1)
    eta: int = Field(default=2, ge=2)
    time_budget_s: float | None = Field(default=None, gt=0)
    loss: DistillLossConfig = DistillLossConfig()
    train: TrainConfig = TrainConfig(epochs=1)


def _calib(data, n: int = 256) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    batches = []
    for x, y in eval_batches(data.train.subset(torch.randperm(len(data.train))[:n].numpy()), data.preprocessing, 32):
        batches.append((x, y))
    return torch.cat([x for x, _ in batches]), batches


def _candidate_base(tmeta: dict) -> str | None:
    """A file-safe name for the candidates cut from a model the user brought (its arch is a path or an import
    path): the factory's or class's name, or the file's stem. None for a registry teacher (its arch)."""
    label = tmeta.get("source_label")
    if not label:
        return None
    core = str(label).split(" (")[0].rsplit(":", 1)[-1]
    core = Path(core).stem if core.endswith((".pt2", ".onnx")) else core
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", core) or "teacher"


def _candidates(cfg: Config, teacher, teacher_arch: str, kwargs: dict, calib, grad_batches, notes: list[str],
                name: str | None = None):
    from edgekd.search.candidates import family_candidates, pruned_candidates, spread_by_macs
    from edgekd.search.family import family_for

    names = cfg.family if cfg.family is not None else family_for(kwargs["input_size"])
    fam = spread_by_macs(family_candidates(names, kwargs, calib), cfg.max_family) if cfg.max_family else []
    if getattr(teacher, "edgekd_onnx", False) or getattr(teacher, "edgekd_exported", False):
        kind = "an ONNX model" if getattr(teacher, "edgekd_onnx", False) else "a torch.export program"
        pruned, why = [], [f"the teacher is {kind}, whose layers cannot be pruned here; the family alone is searched"]
    else:
        pruned, why = pruned_candidates(teacher, teacher_arch, cfg.prune_ratios, cfg.importance, calib, grad_batches,
                                        cfg.prune_depths, name)
    for reason in why:
        notes.append(f"pruned-teacher candidates skipped: {reason}")
    return fam + pruned


def _extra(cand, tmeta: dict) -> dict | None:
    """A candidate checkpoint's extra fields: its structure, plus the teacher's source fields when it is the
    user's own model pruned (so it is rebuilt from the same source)."""
    from edgekd.models.checkpoint import source_extra

    derived = source_extra(tmeta) if cand.arch == str(tmeta["arch"]) else {}
    return {**(cand.checkpoint_extra() or {}), **derived} or None


class _State:
    """state.json in the work folder: what is done, so an interrupted search resumes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.d: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else \
            {"latency": {}, "rungs": {}, "spent_s": 0.0}

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.d, indent=1))


def _proxy(cand, rung: int, cfg: Config, teacher, data, work: Path) -> float:
    """Distil `cand.model` on a `proxy_fraction * eta**rung` share of train; val top-1 of the best epoch."""
    from edgekd.losses.training import build_distill_loss, make_step
    from edgekd.train.evaluate import accuracy
    from edgekd.train.loop import Trainer

    device = dist.context().device
    pre = data.preprocessing
    n = len(data.train)
    take = min(n, int(max(cfg.proxy_fraction * n, PROXY_MIN_IMAGES) * cfg.eta ** rung))
    g = torch.Generator().manual_seed(cfg.train.seed + rung)
    idx = torch.randperm(n, generator=g)[:take]
    model = cand.model.to(device)
    loss, s_taps, t_taps = build_distill_loss(cfg.loss, model, teacher, pre, device)
    trainer = Trainer(model, make_step(loss, s_taps, t_taps, teacher, None),
                      lambda: accuracy(model, data.val, pre, device), data.train.subset(idx.sort().values.numpy()),
                      pre, work / "state" / f"{cand.name}.r{rung}", None, extra=loss)
    result = trainer.fit([Phase(f"proxy-{cand.name}-r{rung}", cfg.train.model_copy(update={"epochs": cfg.proxy_epochs}))])
    for taps in (s_taps, t_taps):
        if taps:
            taps.close()
    return float(result.best_top1)


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    from edgekd.search.latency import measure_candidate

    t0 = time.perf_counter()
    target = TargetProfile.model_validate(cfg.target)
    data, pre = ctx.data, ctx.data.preprocessing
    teacher, tmeta = load_model(ctx.parent_dirs["teacher"], parents["teacher"])
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    kwargs = {"num_classes": data.num_classes, "in_channels": pre.channels, "input_size": pre.input_size[0]}
    calib, grad_batches = _calib(data)
    notes: list[str] = []
    with torch.enable_grad():
        for p in teacher.parameters():
            p.requires_grad_(True)
        cands = _candidates(cfg, teacher, str(tmeta["arch"]), kwargs, calib, grad_batches, notes,
                            _candidate_base(tmeta))
        for p in teacher.parameters():
            p.requires_grad_(False)
    st = _State(ctx.work_dir / "state" / "state.json")  # state/ survives an interruption (edgekd.pipeline)
    spent0 = float(st.d["spent_s"])
    budget_ms = target.budgets.latency_ms

    def spent() -> float:
        return spent0 + time.perf_counter() - t0

    rows = {c.name: dict(c.record(), fate="", proxy_top1={}) for c in cands}
    for c in cands:  # 1. latency first
        if c.name not in st.d["latency"]:
            st.d["latency"][c.name] = measure_candidate(c.model, calib, target, ctx.work_dir / "lat" / c.name,
                                                        cfg.preset)
            st.d["spent_s"] = spent()
            st.save()
        rows[c.name]["latency"] = st.d["latency"][c.name]
    latency_s = spent()
    lat = {c.name: st.d["latency"][c.name]["latency_ms"] for c in cands}
    size_mb = target.budgets.model_size_mb
    big = {c.name for c in cands if size_mb is not None and st.d["latency"][c.name].get("size_bytes", 0) > size_mb * 1e6}
    for name in big:
        rows[name]["fate"] = f"over the size budget ({st.d['latency'][name]['size_bytes'] / 1e6:.2f} > {size_mb:g} MB)"
    alive = [c for c in cands if (budget_ms is None or lat[c.name] <= budget_ms) and c.name not in big]
    for c in cands:
        if c not in alive and c.name not in big:
            judged = st.d["latency"][c.name].get("judged_on", target.budgets.latency_percentile)
            rows[c.name]["fate"] = f"over budget ({judged} {lat[c.name]:.3f} > {budget_ms:g} ms)"
    fastest = min(cands, key=lambda c: lat[c.name])
    if not alive and st.d["latency"][fastest.name]["estimated"]:
        # judged on estimates alone: like every estimated budget, not an exit 1 (DECISIONS.md); keep the fastest
        alive = [fastest]
        notes.append(f"estimated fail: no candidate meets the {budget_ms:g} ms budget on the estimate for "
                     f"{target.device.name}; the fastest, {fastest.name} ({lat[fastest.name]:.3f} ms estimated), "
                     "was kept")
    if not alive:
        size = f" and the {size_mb:g} MB size budget" if size_mb is not None else ""
        lat_budget = f"the {target.budgets.latency_percentile} budget of {budget_ms:g} ms" if budget_ms else \
            "the budgets"
        raise StageFailed(f"no candidate student meets {lat_budget}{size} on {target.name}: the fastest, "
                          f"{fastest.name}, takes {lat[fastest.name]:.3f} ms "
                          f"({st.d['latency'][fastest.name].get('size_bytes', 0) / 1e6:.2f} MB); no student was "
                          "trained. Relax the budget or pass --student", exit_code=1)
    # 2. successive halving on the val split (pruning and timing ran on the CPU; training where the run trains)
    teacher.to(dist.context().device)
    rung, ran_out, last_top1 = 0, False, {}

    def rank(c) -> tuple:  # highest rung, then val top-1; on a tie the faster candidate
        return (*last_top1[c.name], -lat[c.name])

    wdir = ctx.work_dir / "state" / "weights"
    while True:
        for c in alive:
            key = f"{rung}:{c.name}"
            done = st.d["rungs"].get(key)
            wfile = wdir / f"{c.name}.r{rung}.pt"
            if done is not None and wfile.is_file():
                c.model, _ = load_edgekd_checkpoint(wfile)
            elif cfg.time_budget_s is not None and spent() > cfg.time_budget_s and last_top1:
                ran_out = True  # (the first proxy run always happens, so there is a best-so-far to choose)
                break
            else:
                t1 = time.perf_counter()
                done = _proxy(c, rung, cfg, teacher, data, ctx.work_dir)
                st.d.setdefault("proxy_s", {})[key] = round(time.perf_counter() - t1, 1)
                save_edgekd_checkpoint(wfile, c.model.cpu(), c.arch, kwargs, extra=_extra(c, tmeta))
                st.d["rungs"][key] = done
                st.d["spent_s"] = spent()
                st.save()
            last_top1[c.name] = (rung, done)
            rows[c.name]["proxy_top1"][str(rung)] = done
            rows[c.name].setdefault("proxy_s", {})[str(rung)] = st.d.get("proxy_s", {}).get(key)
            best = max(last_top1.items(), key=lambda kv: (*kv[1], -lat[kv[0]]))
            write_atomic(ctx.work_dir / "state" / "best.json", json.dumps({"name": best[0], "rung": best[1][0],
                                                                 "val_top1": best[1][1], "spent_s": spent()}))
        ranked = sorted((c for c in alive if c.name in last_top1), key=rank, reverse=True)
        if ran_out or len(ranked) <= 1:
            break
        keep = max(1, math.ceil(len(ranked) / cfg.eta))
        for c in ranked[keep:]:
            rows[c.name]["fate"] = f"dropped after rung {rung} (val {last_top1[c.name][1]:.2%})"
        if keep == 1:  # the winner goes on to the full distillation, not to another proxy run
            break
        alive, rung = ranked[:keep], rung + 1
    trained = [c for c in cands if c.name in last_top1]
    if not trained:
        raise StageFailed(f"the search's time budget ({cfg.time_budget_s:g} s) ran out before one proxy run "
                          f"finished (latency measurements took {latency_s:.0f} s): raise --time-budget")
    winner = max(trained, key=rank)
    for c in alive:
        if c is not winner and not rows[c.name]["fate"]:
            rows[c.name]["fate"] = "not trained further: time budget" if ran_out else "runner-up"
    rows[winner.name]["fate"] = "chosen"
    if ran_out:
        notes.append(f"time budget of {cfg.time_budget_s:g} s ran out after {spent():.0f} s: the best candidate "
                     f"so far ({winner.name}) was chosen")
    art = save_model(ctx.work_dir, "model", winner.model.cpu(), winner.arch, kwargs, extra=_extra(winner, tmeta),
                     candidate=winner.name)
    plot = ctx.work_dir / "pareto.png"
    from edgekd.report.plots import pareto_png

    plot.write_bytes(pareto_png(list(rows.values()), budget_ms, target.budgets.latency_percentile))
    metrics = {"chosen": winner.name, "chosen_arch": winner.arch, "chosen_source": winner.source,
               "chosen_latency_ms": lat[winner.name], "chosen_val_top1": last_top1[winner.name][1],
               "budget_ms": budget_ms, "percentile": target.budgets.latency_percentile,
               "candidates": list(rows.values()), "rungs": rung + 1, "time_budget_s": cfg.time_budget_s,
               "ran_out_of_time": ran_out, "latency_phase_s": round(latency_s, 1),
               "proxy_phase_s": round(spent() - latency_s, 1), "decided_on": data.facts("val")}
    return Manifest(stage=NAME, id="", config={}, preprocessing=pre, metrics=metrics, notes=notes,
                    artifacts=[art, make_artifact(ctx.work_dir, "pareto", ArtifactKind.plot, plot)])
