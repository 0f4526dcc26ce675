"""Stage 3a, search (`--student auto`): the most accurate student that meets the target's latency budget.

1. Candidates: the family for the input scale (edgekd.search.family, at most `max_family` spread evenly in
   MACs) and the fine-tuned teacher made smaller, keeping its weights: channel-pruned by Torch-Pruning to each
   of `prune_ratios`, depth-pruned to each of `prune_depths` (edgekd.search.depth), and the shallowest one
   channel-pruned too (edgekd.search.candidates.pruned_candidates). A teacher Torch-Pruning cannot trace, or
   one without removable residual blocks: those candidates skipped, the reason in the notes.
2. Latency first (edgekd.search.latency): every candidate is quantized, compiled and timed on the target
   (or estimated, labelled) before anything trains; candidates over the latency budget, or whose INT8
   artifact is over the size budget, are dropped; one over the latency budget alone is tried again at each
   smaller input size of `resolutions` in turn (edgekd.search.resolution: 3/4 and 1/2 of the data's size,
   never below 32 px; named `<name>-<H>x<W>`). Fewer than MIN_CHOICES left: more are generated and timed
   (_more_candidates: deeper and finer pruning ratios and depth shares, cheaper family members not yet
   tried). None left: exit 1 naming the fastest candidate and its latency (an estimated fail keeps it).
3. Successive halving (Jamieson & Talwalkar 2016; Li et al., Hyperband, 2018): each survivor is distilled
   from the teacher on a fraction `proxy_fraction` of the training split (at least PROXY_MIN_IMAGES) for
   `proxy_epochs`, scored on the val split only (top-1, agreement with the teacher's top-1, KD loss) and
   ranked by edgekd.search.confidence (a smaller-input candidate trains on the batches downscaled while the
   teacher sees them as read, and is scored on val decoded at its size): a candidate at chance is never
   ranked above one that is not, and candidates whose top-1 is within the val split's noise of the best are
   ranked by teacher agreement; the best 1/`eta` go on with `eta` times the data, until one is left. When
   every score of the last rung is at chance, the best two by KD loss train one more rung (EXTRA_RUNGS) if
   the time budget allows, then KD loss decides. Weights carry over between rungs; the winner's are this stage's `model`, which distill
   trains on with the full schedule. How confident the choice is ("confident", "tie within noise: chosen by
   teacher agreement", "all proxies at chance: chosen by KD loss") is printed, and recorded in the metrics
   (`confidence`) and the report's search section.
4. `time_budget_s` bounds the stage: once it is spent no new proxy run starts (the first one always runs),
   and the best candidate so far (highest rung, by the same ranking) wins; the notes say so. `state/best.json`
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
from edgekd.search.confidence import ProxyScore, rank
from edgekd.stages.common import load_model, save_model
from edgekd.targets import TargetProfile
from edgekd.train import dist
from edgekd.train.loop import Phase, TrainConfig

PROXY_MIN_IMAGES = 1000  # a first-rung proxy run sees at least this many images (or the whole split)
MIN_CHOICES = 3  # fewer candidates than this within the budgets: more are generated (_more_candidates)
EXTRA_RUNGS = 1  # rungs added when every proxy score is at chance (a constant: the config, and so the id, of
#                  a search that never needs one is what it was before)
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
    resolutions: list[float] = Field(default_factory=lambda: [0.75, 0.5])  # edgekd.search.resolution
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


def _proxy(cand, rung: int, cfg: Config, teacher, data, work: Path, teacher_val: torch.Tensor,
           sdata=None) -> ProxyScore:
    """Distil `cand.model` on a `proxy_fraction * eta**rung` share of train; the best epoch's scores on val.
    A candidate at a smaller input size trains on the batches downscaled (the teacher sees them as read) and is
    scored on `sdata`, the val split decoded at its size."""
    from edgekd.losses.training import build_distill_loss, make_step
    from edgekd.train.evaluate import accuracy
    from edgekd.train.loop import Trainer

    device = dist.context().device
    pre = data.preprocessing
    sdata = sdata if sdata is not None else data
    n = len(data.train)
    take = min(n, int(max(cfg.proxy_fraction * n, PROXY_MIN_IMAGES) * cfg.eta ** rung))
    g = torch.Generator().manual_seed(cfg.train.seed + rung)
    idx = torch.randperm(n, generator=g)[:take]
    model = cand.model.to(device)
    loss, s_taps, t_taps = build_distill_loss(cfg.loss, model, teacher, pre, device, sdata.preprocessing)
    trainer = Trainer(model, make_step(loss, s_taps, t_taps, teacher, None, cand.input_size),
                      lambda: accuracy(model, sdata.val, sdata.preprocessing, device),
                      data.train.subset(idx.sort().values.numpy()),
                      pre, work / "state" / f"{cand.name}.r{rung}", None, extra=loss)
    trainer.fit([Phase(f"proxy-{cand.name}-r{rung}", cfg.train.model_copy(update={"epochs": cfg.proxy_epochs}))])
    for taps in (s_taps, t_taps):
        if taps:
            taps.close()
    return val_scores(model, teacher_val, sdata, cfg.loss.kd.temperature, rung, device)


def val_scores(model: torch.nn.Module, teacher_val: torch.Tensor, data, temperature: float, rung: int,
               device="cpu") -> ProxyScore:
    """Top-1, agreement with the teacher's top-1 and KD loss (KL(t_T || s_T) T^2) of `model` on the val split
    (edgekd.search.confidence); `teacher_val` holds the teacher's val logits."""
    from edgekd.train.evaluate import predict

    s = torch.from_numpy(predict(model, data.val, data.preprocessing, device))
    labels = torch.as_tensor(data.val.labels)
    t = teacher_val.float()
    kd = torch.nn.functional.kl_div(torch.log_softmax(s / temperature, 1), torch.log_softmax(t / temperature, 1),
                                    log_target=True, reduction="batchmean") * temperature ** 2
    correct = (s.argmax(1) == labels).numpy()
    return ProxyScore(float(correct.mean()), float((s.argmax(1) == t.argmax(1)).float().mean()), float(kd),
                      correct, rung)


class _Grad:
    """The teacher's parameters require gradients inside (Taylor importance needs them), not after."""

    def __init__(self, teacher: torch.nn.Module) -> None:
        self.teacher, self.grad = teacher, torch.enable_grad()

    def __enter__(self) -> None:
        self.grad.__enter__()
        for p in self.teacher.parameters():
            p.requires_grad_(True)

    def __exit__(self, *exc) -> None:
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.grad.__exit__(*exc)


def _more_candidates(cfg: Config, teacher, arch: str, kwargs: dict, calib, grad_batches, cands, over: set[str],
                     name: str | None = None):
    """Candidates generated when fewer than MIN_CHOICES fit: deeper and finer pruning of the teacher
    (edgekd.search.candidates.finer_shares) and the family members not yet tried that are cheaper than every
    family member over budget. Returns (candidates, what was generated, in words)."""
    from edgekd.search.candidates import family_candidates, finer_shares, pruned_candidates, spread_by_macs
    from edgekd.search.family import family_for

    have = {c.name for c in cands}
    names = cfg.family if cfg.family is not None else family_for(kwargs["input_size"])
    fam: list = []
    if cfg.max_family:
        over_fam = [c.macs for c in cands if c.source == "family" and c.name in over]
        untried = family_candidates([n for n in names if n not in have], kwargs, calib)
        fam = spread_by_macs([c for c in untried if not over_fam or c.macs < min(over_fam)], MIN_CHOICES)
    ratios = finer_shares(cfg.prune_ratios, smaller="up") if cfg.prune_ratios else []
    depths = finer_shares(cfg.prune_depths, smaller="down") if cfg.prune_depths else []
    prunable = not (getattr(teacher, "edgekd_onnx", False) or getattr(teacher, "edgekd_exported", False))
    pruned, _ = pruned_candidates(teacher, arch, ratios, cfg.importance, calib, grad_batches, depths, name) \
        if prunable and (ratios or depths) else ([], [])
    out = [c for c in fam + pruned if c.name not in have]
    said = [f"channel ratios {', '.join(f'{r:g}' for r in ratios)}"] if ratios else []
    said += [f"depth shares {', '.join(f'{d:g}' for d in depths)}"] if depths else []
    said += [f"{len(fam)} untried family member(s)"] if fam else []
    return out, "; ".join(said) or "nothing left to try"


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    from edgekd.search.latency import measure_candidate
    from edgekd.search.resolution import at_size, downscale, student_sizes
    from edgekd.train.evaluate import predict

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
    with _Grad(teacher):
        cands = _candidates(cfg, teacher, str(tmeta["arch"]), kwargs, calib, grad_batches, notes,
                            _candidate_base(tmeta))
    st = _State(ctx.work_dir / "state" / "state.json")  # state/ survives an interruption (edgekd.pipeline)
    spent0 = float(st.d["spent_s"])
    budget_ms = target.budgets.latency_ms
    size_mb = target.budgets.model_size_mb

    def spent() -> float:
        return spent0 + time.perf_counter() - t0

    rows: dict[str, dict] = {}

    def measure(batch) -> None:  # 1. latency first
        for c in batch:
            rows[c.name] = dict(c.record(), fate="", proxy_top1={}, proxy_agree={}, proxy_kd={})
            if c.name not in st.d["latency"]:
                st.d["latency"][c.name] = measure_candidate(c.model, downscale(calib, c.input_size), target,
                                                            ctx.work_dir / "lat" / c.name, cfg.preset)
                st.d["spent_s"] = spent()
                st.save()
            rows[c.name]["latency"] = st.d["latency"][c.name]

    def fits(c) -> bool:
        rec = st.d["latency"][c.name]
        return (budget_ms is None or rec["latency_ms"] <= budget_ms) and \
            (size_mb is None or rec.get("size_bytes", 0) <= size_mb * 1e6)

    sizes = student_sizes(pre, cfg.resolutions)

    def smaller(batch) -> list:
        """Candidates over the latency budget (and within the size budget, which a smaller input does not change)
        tried again at each smaller input size in turn, until they fit or the sizes run out."""
        out: list = []
        todo = [c for c in batch if not fits(c) and (size_mb is None or
                                                     st.d["latency"][c.name].get("size_bytes", 0) <= size_mb * 1e6)]
        for size in sizes:
            todo = [c.at_size(size, calib) for c in todo if c.input_size is None or size[0] < c.input_size[0]]
            if not todo:
                break
            measure(todo)
            out += todo
            todo = [c for c in todo if not fits(c)]
        return out

    measure(cands)
    if sizes:
        shrunk = smaller(cands)
        cands += shrunk
        if shrunk:
            notes.append(f"{len({c.name.rsplit('-', 1)[0] for c in shrunk})} candidate(s) over the latency budget at "
                         f"{pre.input_size[0]}x{pre.input_size[1]} tried at smaller inputs "
                         f"({', '.join(f'{h}x{w}' for h, w in sizes)}): {len([c for c in shrunk if fits(c)])} of "
                         f"{len(shrunk)} fit")
    if len([c for c in cands if fits(c)]) < MIN_CHOICES:
        n_fit = len([c for c in cands if fits(c)])
        with _Grad(teacher):
            more, what = _more_candidates(cfg, teacher, str(tmeta["arch"]), kwargs, calib, grad_batches, cands,
                                          {c.name for c in cands if not fits(c)}, _candidate_base(tmeta))
        measure(more)
        more += smaller(more) if sizes else []
        cands += more
        notes.append(f"only {n_fit} of the first candidates fit the budgets: {len(more)} more were generated "
                     f"({what}), {len([c for c in more if fits(c)])} of them fit")
    latency_s = spent()
    lat = {c.name: st.d["latency"][c.name]["latency_ms"] for c in cands}
    big = {c.name for c in cands if size_mb is not None and st.d["latency"][c.name].get("size_bytes", 0) > size_mb * 1e6}
    for name in big:
        rows[name]["fate"] = f"over the size budget ({st.d['latency'][name]['size_bytes'] / 1e6:.2f} > {size_mb:g} MB)"
    alive = [c for c in cands if fits(c)]
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
        ctx.console.print(f"search: {notes[-1]}", markup=False)
    if not alive:
        size = f" and the {size_mb:g} MB size budget" if size_mb is not None else ""
        lat_budget = f"the {target.budgets.latency_percentile} budget of {budget_ms:g} ms" if budget_ms else \
            "the budgets"
        tried = f" at any input size down to {sizes[-1][0]}x{sizes[-1][1]}" if sizes else ""
        raise StageFailed(f"no candidate student meets {lat_budget}{size} on {target.name}{tried}: the fastest, "
                          f"{fastest.name}, takes {lat[fastest.name]:.3f} ms "
                          f"({st.d['latency'][fastest.name].get('size_bytes', 0) / 1e6:.2f} MB); no student was "
                          "trained. Relax the budget or pass --student", exit_code=1)
    # 2. successive halving on the val split (pruning and timing ran on the CPU; training where the run trains)
    device = dist.context().device
    teacher.to(device)
    teacher_val = torch.from_numpy(predict(teacher, data.val, pre, device))
    by_name = {c.name: c for c in cands}
    pre_of = {c.name: at_size(pre, c.input_size) if c.input_size else pre for c in cands}
    last: dict[str, ProxyScore] = {}
    rung, ran_out, extra = 0, False, 0

    def ranking(names) -> Any:
        return rank({n: last[n] for n in names if n in last}, len(data.val), data.num_classes, lat)

    wdir = ctx.work_dir / "state" / "weights"
    while True:
        for c in alive:
            key = f"{rung}:{c.name}"
            done = st.d["rungs"].get(key)
            wfile = wdir / f"{c.name}.r{rung}.pt"
            if done is not None and wfile.is_file():
                c.model, _ = load_edgekd_checkpoint(wfile)
                score = ProxyScore.from_record(done, rung)
            elif cfg.time_budget_s is not None and spent() > cfg.time_budget_s and last:
                ran_out = True  # (the first proxy run always happens, so there is a best-so-far to choose)
                break
            else:
                t1 = time.perf_counter()
                score = _proxy(c, rung, cfg, teacher, data, ctx.work_dir, teacher_val, ctx.data_at(pre_of[c.name]))
                st.d.setdefault("proxy_s", {})[key] = round(time.perf_counter() - t1, 1)
                save_edgekd_checkpoint(wfile, c.model.cpu(), c.arch, kwargs, extra=_extra(c, tmeta))
                st.d["rungs"][key] = score.record()
                st.d["spent_s"] = spent()
                st.save()
            last[c.name] = score
            for field, value in (("proxy_top1", score.top1), ("proxy_agree", score.agree), ("proxy_kd", score.kd)):
                rows[c.name][field][str(rung)] = value
            rows[c.name].setdefault("proxy_s", {})[str(rung)] = st.d.get("proxy_s", {}).get(key)
            best = ranking(last).order[0]
            write_atomic(ctx.work_dir / "state" / "best.json", json.dumps({
                "name": best, "rung": last[best].rung, "val_top1": last[best].top1, "spent_s": spent()}))
        choice = ranking([c.name for c in alive])
        ranked = [by_name[n] for n in choice.order]
        if ran_out:
            break
        keep = max(1, math.ceil(len(ranked) / cfg.eta))
        if keep == 1 and last[choice.order[0]].top1 <= choice.chance_top1 and extra < EXTRA_RUNGS:
            again = ranked[:min(len(ranked), 2)]  # at chance: the proxy was too short; train the best two further
            need = sum(st.d.get("proxy_s", {}).get(f"{rung}:{c.name}") or 0 for c in again) * cfg.eta
            if cfg.time_budget_s is None or spent() + need <= cfg.time_budget_s:
                notes.append(f"after rung {rung} {choice.line}; {', '.join(c.name for c in again)} trained "
                             f"further (rung {rung + 1}, {cfg.eta}x the images)")
                for c in ranked[len(again):]:
                    rows[c.name]["fate"] = f"dropped after rung {rung} (at chance; val KD loss {last[c.name].kd})"
                alive, rung, extra = again, rung + 1, extra + 1
                continue
            notes.append(f"after rung {rung} {choice.line}; no time left in the budget to train them further "
                         f"(about {need:.0f} s more)")
        if len(ranked) <= 1:
            break
        for c in ranked[keep:]:
            rows[c.name]["fate"] = f"dropped after rung {rung} (val {last[c.name].top1:.2%})"
        if keep == 1:  # the winner goes on to the full distillation, not to another proxy run
            break
        alive, rung = ranked[:keep], rung + 1
    trained = [c for c in cands if c.name in last]
    if not trained:
        raise StageFailed(f"the search's time budget ({cfg.time_budget_s:g} s) ran out before one proxy run "
                          f"finished (latency measurements took {latency_s:.0f} s): raise --time-budget")
    final = ranking([c.name for c in trained])
    winner = by_name[final.order[0]]
    for c in alive:
        if c is not winner and not rows[c.name]["fate"]:
            rows[c.name]["fate"] = "not trained further: time budget" if ran_out else "runner-up"
    rows[winner.name]["fate"] = "chosen"
    if ran_out:
        notes.append(f"time budget of {cfg.time_budget_s:g} s ran out after {spent():.0f} s: the best candidate "
                     f"so far ({winner.name}) was chosen")
    notes.append(f"search choice {winner.name}: {final.line}")
    ctx.console.print(f"search: chose {winner.name}: {final.line}", markup=False)
    art = save_model(ctx.work_dir, "model", winner.model.cpu(), winner.arch, kwargs, extra=_extra(winner, tmeta),
                     candidate=winner.name)
    plot = ctx.work_dir / "pareto.png"
    from edgekd.report.plots import pareto_png

    plot.write_bytes(pareto_png(list(rows.values()), budget_ms, target.budgets.latency_percentile))
    metrics = {"chosen": winner.name, "chosen_arch": winner.arch, "chosen_source": winner.source,
               "chosen_latency_ms": lat[winner.name], "chosen_val_top1": last[winner.name].top1,
               "chosen_input_size": list(pre_of[winner.name].input_size), "sizes_tried": [list(v) for v in sizes],
               "confidence": final.record(), "budget_ms": budget_ms, "percentile": target.budgets.latency_percentile,
               "candidates": list(rows.values()), "rungs": rung + 1, "time_budget_s": cfg.time_budget_s,
               "ran_out_of_time": ran_out, "latency_phase_s": round(latency_s, 1),
               "proxy_phase_s": round(spent() - latency_s, 1), "decided_on": data.facts("val")}
    # the winner's preprocessing: a smaller input size when it was chosen at one (distill and later read it)
    return Manifest(stage=NAME, id="", config={}, preprocessing=pre_of[winner.name], metrics=metrics, notes=notes,
                    artifacts=[art, make_artifact(ctx.work_dir, "pareto", ArtifactKind.plot, plot)])
