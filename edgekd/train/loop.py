"""The training engine: phases of epochs over an in-memory split, resumable and DDP-aware.

One `fit` serves finetune (probe, full, hybrid, staged unfreezing), distill and qad. It owns what every
stage needs and none should rewrite: seeding, optimizer and schedule, label smoothing (through the stage's
loss), gradient clipping, an optional cap on each step's update norm, trainable-parameter selection by
name patterns, frozen or updated BatchNorm statistics, a NaN/Inf stop that names the step, per-epoch
validation with the best weights kept, and a checkpoint after every epoch (model, optimizer, scheduler,
RNG state) so an interrupted stage resumes where it stopped.

Under torchrun the model is wrapped in DistributedDataParallel (optionally with SyncBatchNorm), each rank
trains on an equal slice of every global batch and computes the mean loss over its slice; DDP averages the
gradients over ranks, which equals the gradient of the mean loss over the global batch (BatchNorm in train
mode aside: its batch statistics are per rank unless SyncBatchNorm is on). Parameters outside the model
(hint adapters in the loss) are averaged by one extra all-reduce. Losses are reduced over ranks; the
validation accuracy is rank 0's (broadcast, so every rank keeps the same best weights). Only rank 0 writes
the per-epoch checkpoint, recording the world size; a resume reads it on rank 0 and broadcasts it, and
refuses a different world size.
"""

from __future__ import annotations

import fnmatch
import math
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.batches import Augment, num_train_steps, train_batches
from edgekd.data.sources import Split
from edgekd.errors import StageFailed, UsageError
from edgekd.fsio import move_aside, publish, tmp_name, write_atomic
from edgekd.manifest import Preprocessing, sha256_file
from edgekd.train import dist
from edgekd.train.accel import policy_for

LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, np.ndarray], tuple[torch.Tensor, dict[str, float]]]

# Called as callback(phase name, epoch number from 1, DistContext) on every rank after each epoch's checkpoint is
# on disk: a neutral point for instrumentation (tests/distributed/_driver.py kills a rank here to test resume).
EPOCH_END: list[Callable[[str, int, dist.DistContext], None]] = []


class TrainConfig(BaseModel):
    """Options of one training phase. `batch_size` is the global batch (all ranks together)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=5, ge=0)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=0.05, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0)
    grad_clip_norm: float | None = Field(default=5.0, gt=0)
    max_update_norm: float | None = Field(default=None, gt=0)
    trainable: list[str] | None = None  # fnmatch patterns over parameter names; None: all
    bn: Literal["train", "frozen"] = "train"
    augment: Augment = "crop"
    seed: int = 0


@dataclass
class Phase:
    """A run of epochs with its own trainable set and learning-rate multipliers (by parameter name)."""

    name: str
    config: TrainConfig
    trainable: Callable[[str], bool] | None = None  # in addition to config.trainable
    lr_mult: Callable[[str], float] = field(default=lambda _name: 1.0)


@dataclass
class FitResult:
    best_top1: float
    best_epoch: int
    history: list[dict[str, float]]
    wall_s: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def select_trainable(model: torch.nn.Module, patterns: Sequence[str] | None,
                     extra: Callable[[str], bool] | None = None) -> list[str]:
    """Set requires_grad by name patterns; unknown patterns are an error that lists some names."""
    names = [n for n, p in model.named_parameters() if p.is_floating_point()]
    if patterns:
        for pat in patterns:
            if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                raise UsageError(f"--train-only pattern '{pat}' matches no parameter; names look like "
                                 f"{', '.join(names[:3])}, ..., {names[-1]}")
    chosen = []
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            continue
        on = (not patterns or any(fnmatch.fnmatchcase(name, pat) for pat in patterns)) and (extra is None or extra(name))
        p.requires_grad_(on)
        if on:
            chosen.append(name)
    if not chosen:
        raise UsageError("no parameter is left to train: widen --train-only")
    return chosen


def set_bn_mode(model: torch.nn.Module, mode: str) -> None:
    if mode == "frozen":
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _make_optimizer(params: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total)
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _rng_state() -> dict:
    """RNG states as tensors and plain values, so the checkpoint loads with weights_only=True."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     cached], "python": list(random.getstate())}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


class _Stepper:
    """One optimizer update from a loss: backward (scaled under float16 autocast), the loss's own gradients
    averaged across ranks, clipping, the step, the per-step update cap, the schedule."""

    def __init__(self, opt, sched, scaler, trained: list[torch.nn.Parameter], outside: list[torch.nn.Parameter],
                 grad_clip_norm: float | None, max_update_norm: float | None) -> None:
        self.opt, self.sched, self.scaler = opt, sched, scaler
        self.trained, self.outside = trained, outside
        self.grad_clip_norm, self.max_update_norm = grad_clip_norm, max_update_norm

    def __call__(self, loss: torch.Tensor) -> None:
        opt, scaler = self.opt, self.scaler
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        dist.average_gradients(self.outside)
        if scaler is not None:
            scaler.unscale_(opt)  # clipping and the update cap see true gradient sizes
        if self.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(self.trained, self.grad_clip_norm)
        before = [p.detach().clone() for p in self.trained] if self.max_update_norm else None
        if scaler is not None:
            scaler.step(opt)  # skipped when a gradient overflowed; the scale adapts
            scaler.update()
        else:
            opt.step()
        if before is not None:
            _cap_update(self.trained, before, self.max_update_norm)
        self.sched.step()


class Trainer:
    """Runs phases over `model` (+ `extra` modules such as hint adapters) and keeps the best weights."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, evaluate: Callable[[], float],
                 train: Split, pre: Preprocessing, state_dir: Path, progress=None,
                 extra: torch.nn.Module | None = None, sync_bn: bool = False, mixed_precision: bool = True) -> None:
        self.ctx = dist.context()
        self.accel = policy_for(self.ctx.device, mixed_precision)  # CUDA: autocast, channels_last, pinned memory
        self.model = self.accel.prepare_model(model.to(self.ctx.device))
        self.extra = extra.to(self.ctx.device) if extra is not None else None
        self.loss_fn = loss_fn
        self.evaluate = evaluate
        self.train_split = train
        self.pre = pre
        self.state_dir = state_dir
        self.progress = progress
        self.history: list[dict[str, float]] = []
        self.best_top1, self.best_epoch = -1.0, -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.sync_bn = sync_bn

    # -- checkpointing ------------------------------------------------------------------------------
    def _checkpoints(self, phase: str) -> list[tuple[int, Path]]:
        """This phase's per-epoch checkpoints `<phase>.e<epoch>.pt`, newest first."""
        pattern = re.compile(rf"^{re.escape(phase)}\.e(\d+)\.pt$")
        found = [(int(m.group(1)), p) for p in self.state_dir.glob(f"{phase}.e*.pt")
                 if (m := pattern.match(p.name))] if self.state_dir.is_dir() else []
        return sorted(found, reverse=True)

    def _save(self, phase: str, epoch: int, opt, sched) -> None:
        """Rank 0 writes the checkpoint atomically; every rank waits until it is on disk."""
        if self.ctx.is_main:
            self._write_checkpoint(phase, epoch, opt, sched)
        dist.barrier()

    def _write_checkpoint(self, phase: str, epoch: int, opt, sched) -> None:
        """`<phase>.e<epoch>.pt` with its sha256 in `<file>.sha256` (written first, so a published checkpoint
        always has one); the previous epoch's checkpoint is kept as a fallback, older ones are removed."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "epoch": epoch, "model": self.model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": _rng_state(), "history": self.history,
            "best_top1": self.best_top1, "best_epoch": self.best_epoch, "best_state": self.best_state,
            "world": self.ctx.world,
        }
        if self.extra is not None:
            state["extra"] = self.extra.state_dict()
        path = self.state_dir / f"{phase}.e{epoch:04d}.pt"
        tmp = tmp_name(path)
        with open(tmp, "wb") as fh:  # through a file object: the bytes do not depend on the temporary name
            torch.save(state, fh)
        write_atomic(_sidecar(path), sha256_file(tmp))
        publish(tmp, path)
        for old_epoch, old in self._checkpoints(phase):
            if old_epoch < epoch - 1:
                old.unlink(missing_ok=True)
                _sidecar(old).unlink(missing_ok=True)

    def _load_checkpoint(self, phase: str) -> tuple[dict | None, Path | None]:
        """The newest checkpoint of `phase` that matches its recorded sha256 and loads; a bad one is moved aside
        (`.corrupt-<time>`, one warning) and the one before it is tried, else the phase starts from scratch."""
        for epoch, path in self._checkpoints(phase):
            why, state = _checkpoint_problem(path), None
            if why is None:
                try:
                    state = torch.load(path, map_location="cpu", weights_only=True)
                except Exception as exc:  # a damaged file fails in zip, pickle or tensor code: all mean corrupt
                    why = f"does not load ({type(exc).__name__})"
                else:
                    if not isinstance(state, dict) or state.get("epoch") != epoch:
                        why = "does not hold the training state of its epoch"
            if why is None:
                return state, path
            earlier = [e for e, _ in self._checkpoints(phase) if e < epoch]
            then = (f"resuming from the checkpoint of epoch {earlier[0] + 1}" if earlier
                    else f"{phase} restarts from its first epoch")
            move_aside(path, why, then)
            if _sidecar(path).exists():
                move_aside(_sidecar(path), None)
        return None, None

    def _resume(self, phase: str, opt, sched, epochs: int) -> int:
        """The epoch to start from: rank 0 reads its checkpoint (if any) and broadcasts it to every rank."""
        state, path = self._load_checkpoint(phase) if self.ctx.is_main else (None, None)
        if self.ctx.distributed:
            state = dist.broadcast_object(state)
        if state is None:
            return 0
        if state.get("world", 1) != self.ctx.world:
            raise UsageError(f"{path or self.state_dir} was written by a run with {state['world']} processes; resume "
                             f"it with the same world size (now {self.ctx.world}) or delete {self.state_dir}")
        self.model.load_state_dict(state["model"])
        if self.extra is not None and "extra" in state:
            self.extra.load_state_dict(state["extra"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.history = state["history"]
        self.best_top1, self.best_epoch, self.best_state = state["best_top1"], state["best_epoch"], state["best_state"]
        start = int(state["epoch"]) + 1
        if self.ctx.is_main:
            sys.stderr.write(f"{phase}: resuming at epoch {start + 1}/{epochs} from {path} "
                             f"({self.ctx.world} process{'es' if self.ctx.world > 1 else ''})\n")
        return start

    # -- training -----------------------------------------------------------------------------------
    def run_phase(self, phase: Phase) -> None:
        cfg = phase.config
        if cfg.epochs == 0:
            return
        if cfg.batch_size % self.ctx.world:
            raise UsageError(f"global batch {cfg.batch_size} does not divide by the world size {self.ctx.world}: "
                             "choose a batch that is a multiple of the number of processes")
        seed_everything(cfg.seed)
        params = self._param_groups(phase)
        opt = _make_optimizer(params, cfg)
        steps = num_train_steps(len(self.train_split), cfg.batch_size)
        if steps == 0:
            raise UsageError(f"the training split has {len(self.train_split)} images, fewer than one batch of "
                             f"{cfg.batch_size}: lower --batch-size")
        sched = _make_schedule(opt, cfg, steps)
        start = self._resume(phase.name, opt, sched, cfg.epochs)
        net = self._wrap()
        if self.ctx.distributed and self.extra is not None:
            dist.broadcast_module(self.extra)  # DDP syncs the model's initial weights; this, the loss's adapters
        step = _Stepper(opt, sched, self.accel.grad_scaler(),  # float16 autocast only; restarts with a resumed phase
                        trained=[p for g in params for p in g["params"]],
                        outside=[p for p in self.extra.parameters() if p.requires_grad] if self.extra is not None
                        else [], grad_clip_norm=cfg.grad_clip_norm, max_update_norm=cfg.max_update_norm)
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            task = self.progress.add_task(f"{phase.name} epoch {epoch + 1}/{cfg.epochs}", total=steps) if self.progress else None
            sums = self._train_epoch(net, phase, epoch, step, task)
            record = self._end_epoch(phase, epoch, sums, opt, t0)
            if task is not None:
                self.progress.update(task, description=f"{phase.name} epoch {epoch + 1}/{cfg.epochs} "
                                                       f"loss {record['loss']:.3f} val {record['val_top1']:.1%}")
            self._save(phase.name, epoch, opt, sched)
            for callback in EPOCH_END:
                callback(phase.name, epoch + 1, self.ctx)

    def _param_groups(self, phase: Phase) -> list[dict[str, Any]]:
        """Optimizer groups: the phase's trainable parameters by learning-rate multiplier, then the loss's own."""
        cfg = phase.config
        chosen = set(select_trainable(self.model, cfg.trainable, phase.trainable))
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            if name in chosen and p.requires_grad:
                groups.setdefault(phase.lr_mult(name), []).append(p)
        params = [{"params": ps, "lr": cfg.lr * mult} for mult, ps in sorted(groups.items())]
        if self.extra is not None:
            params.append({"params": [p for p in self.extra.parameters() if p.requires_grad], "lr": cfg.lr})
        return params

    def _train_epoch(self, net, phase: Phase, epoch: int, step: _Stepper, task) -> tuple[torch.Tensor, dict, int]:
        """One pass over this rank's share of the training split: (loss sum, loss parts' sums, steps)."""
        cfg = phase.config
        loss_sum, parts_sum, n_steps = torch.zeros(()), {}, 0
        net.train()
        set_bn_mode(self.model, cfg.bn)
        for i, (x, y, idx) in enumerate(train_batches(
                self.train_split, self.pre, batch_size=cfg.batch_size, seed=cfg.seed, epoch=epoch,
                augment=cfg.augment, rank=self.ctx.rank, world=self.ctx.world)):
            x, y = self.accel.to_device(x, y)
            with self.accel.autocast():
                loss, parts = self.loss_fn(net, x, y, idx)
            if not self._finite(loss):
                raise StageFailed(f"{phase.name}: the loss became {loss.item()} at epoch {epoch + 1}, step "
                                  f"{i + 1}: lower --lr or enable gradient clipping (stage stopped; the last "
                                  f"good checkpoint is kept in {self.state_dir})")
            step(loss)
            loss_sum += loss.detach().cpu()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v
            n_steps += 1
            if task is not None:
                self.progress.update(task, advance=1)
        return loss_sum, parts_sum, n_steps

    def _end_epoch(self, phase: Phase, epoch: int, sums: tuple[torch.Tensor, dict, int], opt, t0: float,
                   ) -> dict[str, Any]:
        """Average the epoch's losses over all ranks, evaluate, record the epoch, keep the best weights."""
        loss_sum, parts_sum, n_steps = sums
        keys = sorted(parts_sum)
        reduced = dist.all_reduce_sum(torch.tensor([loss_sum.item(), float(n_steps)] +
                                                   [float(parts_sum[k]) for k in keys], dtype=torch.float64))
        total_steps = max(float(reduced[1]), 1.0)
        train_s = time.perf_counter() - t0
        top1 = self.evaluate()
        if self.ctx.distributed:
            top1 = dist.broadcast_object(top1)  # one verdict for all ranks, so they keep the same best weights
        record = {"phase": phase.name, "epoch": epoch + 1, "loss": float(reduced[0]) / total_steps,
                  "val_top1": top1, "lr": opt.param_groups[0]["lr"], "train_s": train_s,
                  "epoch_s": time.perf_counter() - t0, "precision": self.accel.precision}
        record.update({k: float(reduced[2 + i]) / total_steps for i, k in enumerate(keys)})
        self.history.append(record)
        if top1 > self.best_top1:
            self.best_top1, self.best_epoch = top1, len(self.history)
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return record

    def _finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (so all ranks stop together, with the same message)."""
        ok = bool(torch.isfinite(loss.detach()).all())
        if self.ctx.distributed:
            ok = float(dist.all_reduce_sum(torch.tensor([0.0 if ok else 1.0]))[0]) == 0.0
        return ok

    def _wrap(self) -> torch.nn.Module:
        if not self.ctx.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        if self.sync_bn and has_bn and self.ctx.device.type == "cpu":
            raise UsageError("--sync-bn needs GPUs (NCCL): PyTorch's SyncBatchNorm does not run on CPU; drop "
                             "--sync-bn for a CPU/gloo run (each process then normalises over its own slice)")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model) if self.sync_bn else self.model
        ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
        # static_graph: the set of used parameters is the same every step (it is fixed per phase), so DDP handles
        # parameters a model never uses without find_unused_parameters's extra graph traversal each step.
        return DDP(model, device_ids=ids, static_graph=True)

    def fit(self, phases: Sequence[Phase], keep: Literal["best", "last"] = "best") -> FitResult:
        t0 = time.perf_counter()
        if self.ctx.is_main:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        for phase in phases:
            self.run_phase(phase)
        if keep == "best" and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        for p in self.model.parameters():
            if p.is_floating_point():
                p.requires_grad_(True)
        return FitResult(self.best_top1, self.best_epoch, self.history, time.perf_counter() - t0)


def _sidecar(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".sha256")


def _checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be trusted (its recorded sha256 is missing or differs), or None."""
    side = _sidecar(path)
    try:
        recorded = side.read_text().strip()
    except OSError:
        return f"has no recorded sha256 ({side.name})"
    return None if recorded == sha256_file(path) else "does not match its recorded sha256"


@torch.no_grad()
def _cap_update(params: list[torch.Tensor], before: list[torch.Tensor], cap: float) -> None:
    """Scale this step's update so that its global L2 norm is at most `cap` (the seed's bounded update)."""
    deltas = [p - b for p, b in zip(params, before)]
    norm = torch.sqrt(sum((d.float() ** 2).sum() for d in deltas))
    if norm > cap:
        scale = cap / norm
        for p, b, d in zip(params, before, deltas):
            p.copy_(b + d * scale)
