"""Helpers the stages share: saving and loading models through manifests, training plumbing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgekd.manifest import Artifact, ArtifactKind, Manifest, make_artifact
from edgekd.models.checkpoint import load_edgekd_checkpoint, save_edgekd_checkpoint
from edgekd.train import dist
from edgekd.train.evaluate import accuracy
from edgekd.train.loop import Trainer


def save_model(work_dir: Path, name: str, model: torch.nn.Module, arch: str, arch_kwargs: dict[str, Any],
               extra: dict[str, Any] | None = None, **facts: Any) -> Artifact:
    """`extra` goes into the checkpoint (e.g. {"pruned_from": arch} for a channel-pruned model)."""
    path = work_dir / f"{name}.pt"
    save_edgekd_checkpoint(path, model, arch, arch_kwargs, extra=extra)
    if extra and extra.get("source_label"):  # a model the user brought: reports name it by its label
        facts.setdefault("label", extra["source_label"])
    return make_artifact(work_dir, name, ArtifactKind.checkpoint, path, arch=arch, **arch_kwargs, **facts)


def load_model(stage_dir: Path, manifest: Manifest, name: str = "model") -> tuple[torch.nn.Module, dict]:
    art = manifest.artifact(name)
    model, meta = load_edgekd_checkpoint(stage_dir / art.path)
    return model, meta


def load_frozen_teacher(ctx, parents: dict[str, Manifest], device) -> torch.nn.Module:
    """The fine-tuned teacher on `device`, in eval mode with gradients off (distill and qad read it only).
    Loading it consumes none of the stage's random numbers (building a model initialises its weights before the
    checkpoint overwrites them): the student's initialisation and the data order then do not depend on how the
    teacher is built, so the same teacher from a registry name, a .pt2 or an import path distils the same
    student (bench/RESULTS.md, "Model sources")."""
    with torch.random.fork_rng(devices=[]):
        teacher, _ = load_model(ctx.parent_dirs["teacher"], parents["teacher"])
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def student_data(ctx, holder: Manifest | None):
    """The student's data: the run's data decoded at the input size of the parent manifest `holder` that holds
    the student (a searched student may take smaller images than the teacher: edgekd.search.resolution); the
    run's data itself when it has none or the same size."""
    pre = holder.preprocessing if holder is not None else None
    return ctx.data if pre is None else ctx.data_at(pre)


def trainer_for(model, loss_fn, ctx, extra=None, sync_bn: bool = False, mixed_precision: bool = True,
                eval_data=None) -> Trainer:
    """A Trainer on the val split's accuracy (of `eval_data`, default the run's data: a student at a smaller
    input size is judged on the val images decoded at its size, while it trains on the run's batches
    downscaled); on CUDA with autocast unless `mixed_precision` is False (edgekd.train.accel)."""
    data = ctx.data
    scored = eval_data if eval_data is not None else data
    device = dist.context().device
    return Trainer(model, loss_fn, lambda: accuracy(model, scored.val, scored.preprocessing, device),
                   data.train, data.preprocessing, ctx.work_dir / "state", ctx.progress, extra=extra,
                   sync_bn=sync_bn, mixed_precision=mixed_precision)


def example_input(pre, batch: int = 2) -> torch.Tensor:
    return torch.zeros(batch, pre.channels, *pre.input_size)
