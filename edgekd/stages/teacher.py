"""Stage 1, teacher: a large model by name, from a local checkpoint, or trained here.

Trained here, the teacher learns the first `source_classes` classes. On the embedded digits that is a
*source task* - the first half of the classes - so that the finetune stage performs a real transfer (new
head, new classes) rather than a no-op. On a user's folder it is every class (edgekd.teacher_choice): the
teacher then already predicts the dataset's classes and the finetune stage says it was skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from edgekd.data.sources import Split
from edgekd.errors import UsageError
from edgekd.manifest import Manifest
from edgekd.models.checkpoint import load_weights, read_state_dict
from edgekd.models.heads import find_head
from edgekd.models.registry import build_model
from edgekd.stages.common import save_model, trainer_for
from edgekd.train.evaluate import accuracy
from edgekd.train.loop import Phase, TrainConfig

NAME = "teacher"
READS_DATA = True
DISTRIBUTED = True


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str  # a registry name or a model source (edgekd.models.sources)
    kwargs: dict = {}  # keyword arguments of an import-path factory (--teacher-kwargs)
    output: str | None = None  # the logits among a tuple/dict output (--teacher-output)
    source_sha256: str | None = None  # content of a model source (file, factory's module): part of the id
    weights: str | None = None  # a local checkpoint file
    weights_sha256: str | None = None  # identity of the weights file (set by the CLI)
    pretrained: bool = False  # the registry's pretrained weights (torchvision weights enum, timm)
    source_classes: int | None = None  # training from scratch: the first N classes form the source task
    train: TrainConfig | None = None  # only when trained from scratch (None: TrainConfig's defaults)
    sync_bn: bool = False  # torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)


def _classes_in_checkpoint(state: dict[str, torch.Tensor], model: torch.nn.Module) -> int | None:
    head_name, _ = find_head(model)
    weight = state.get(f"{head_name}.weight")
    return int(weight.shape[0]) if weight is not None else None


def _source_split(split: Split, n: int) -> Split:
    return split.subset(np.flatnonzero(split.labels < n))


def _from_source(cfg: Config, source, data, kwargs: dict) -> tuple[torch.nn.Module, int, str]:
    """A model the user brought (import path, .pt2, .onnx, in-memory module): taken as trained, with
    --teacher-weights loaded on top when given; its own head is kept (the finetune stage transfers it)."""
    from edgekd.models import sources
    from edgekd.stages.common import example_input

    chans = kwargs["in_channels"]
    model = sources.build(source, None, chans)
    if cfg.weights:
        state = read_state_dict(Path(cfg.weights))
        classes = _classes_in_checkpoint(state, model)
        if classes is not None and classes != find_head(model)[1].out_features:
            sources.fit_io(model, classes, chans, source.spec)
        load_weights(model, state, strict=True, arch=source.spec)
    model.eval()
    if getattr(model, "edgekd_onnx", False):
        model.check_fits(data.num_classes, chans, data.preprocessing.input_size)
        classes = model.num_classes or sources.check_logits(model, example_input(data.preprocessing), source.spec,
                                                            "--teacher")
    else:
        classes = sources.check_logits(model, example_input(data.preprocessing), source.spec, "--teacher")
    origin = source.describe() + (f", weights {Path(cfg.weights).name}" if cfg.weights else "")
    return model, classes, origin


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    from edgekd.models import sources

    data = ctx.data
    pre = data.preprocessing
    k, chans = data.num_classes, pre.channels
    kwargs = {"in_channels": chans, "input_size": pre.input_size[0]}
    metrics: dict = {}
    notes: list[str] = []
    source = sources.resolve(cfg.arch, kwargs=cfg.kwargs, output=cfg.output)
    arch, extra = cfg.arch, {}
    if source.kind != "registry":
        model, classes, origin = _from_source(cfg, source, data, kwargs)
        arch = source.rebuild_spec
        extra = source.checkpoint_extra()
        metrics["source"] = source.facts()
    elif cfg.weights:
        state = read_state_dict(Path(cfg.weights))
        probe = build_model(cfg.arch, num_classes=k, **kwargs)
        classes = _classes_in_checkpoint(state, probe) or k
        model = build_model(cfg.arch, num_classes=classes, **kwargs) if classes != k else probe
        load_weights(model, state, strict=True, arch=cfg.arch)
        origin = f"checkpoint {Path(cfg.weights).name}"
    elif cfg.pretrained:
        model = build_model(cfg.arch, num_classes=k, pretrained=True, **kwargs)
        classes = k
        origin = f"{cfg.arch} pretrained weights (published head replaced by a new {k}-class head)"
    else:
        n_src = cfg.source_classes or max(2, k // 2)
        if not 2 <= n_src <= k:
            raise UsageError(f"--source-classes must be between 2 and {k}, the number of "
                             f"classes in the data; got {n_src}")
        classes = n_src
        model = build_model(cfg.arch, num_classes=n_src, **kwargs)
        src_train, src_val = _source_split(data.train, n_src), _source_split(data.val, n_src)

        def ce(net, x, y, _idx):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            return loss, {}

        trainer = trainer_for(model, ce, ctx, sync_bn=cfg.sync_bn)
        trainer.train_split = src_train
        trainer.evaluate = lambda: accuracy(model, src_val, pre, trainer.ctx.device)
        every = n_src == k
        result = trainer.fit([Phase("teacher-all" if every else "teacher-source", cfg.train or TrainConfig())])
        classes_text = f"{pre.class_names[0]}..{pre.class_names[n_src - 1]}"
        metrics.update(history=result.history, train_wall_s=result.wall_s, trained_on_all_classes=every,
                       decided_on={**data.facts("val"), "images": len(src_val), "classes": classes_text})
        if every:
            origin = f"trained from scratch on all {k} classes of the training split"
            notes.append(f"No pretrained teacher was given: the teacher was {origin} (no source task).")
        else:
            origin = (f"trained from scratch on a source task: classes {classes_text} ({n_src} of {k}) of the "
                      "training split")
            metrics["source_task_top1"] = result.best_top1
            notes.append(f"No pretrained teacher was given: the teacher was {origin}; the finetune stage transfers "
                         f"it to all {k} classes.")
    model.eval()
    if classes == k:
        metrics["top1_before_transfer"] = accuracy(model, data.val, pre)
    metrics.update(origin=origin, head_classes=classes,
                   params=sum(p.numel() for p in model.parameters()))
    art = save_model(ctx.work_dir, "model", model, arch, {"num_classes": classes, **kwargs}, extra=extra or None)
    return Manifest(stage=NAME, id="", config={}, artifacts=[art], preprocessing=pre, metrics=metrics, notes=notes)
