"""Stage 2, finetune: transfer the teacher to the dataset's classes.

Modes (the seed's three kinds of transfer, plus staged unfreezing):
- `feature`: frozen pretrained extractor (BatchNorm statistics frozen too), new head trained: a linear probe;
- `full`: every weight fine-tuned;
- `hybrid`: linear probe first (`probe_epochs`), then a full fine-tune with the backbone at
  `backbone_lr_mult` times the head's learning rate;
- `staged`: unfreeze group by group from the head backwards, `epochs` spread over the groups;
- `none`: no transfer; allowed only when the teacher already predicts the dataset's classes, and said so.
A new head is attached when the teacher's class count differs from the dataset's.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.errors import UsageError
from edgekd.manifest import Manifest
from edgekd.models.heads import find_head, replace_head, unfreeze_stages
from edgekd.models.checkpoint import source_extra
from edgekd.stages.metrics import metrics_of
from edgekd.stages.common import load_model, save_model, trainer_for
from edgekd.train.evaluate import accuracy
from edgekd.train.loop import Phase, TrainConfig

NAME = "finetune"
READS_DATA = True
DISTRIBUTED = True

Transfer = Literal["feature", "full", "hybrid", "staged", "none"]


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transfer: Transfer = "hybrid"
    probe_epochs: int = Field(default=2, ge=0)
    backbone_lr_mult: float = Field(default=0.1, gt=0, le=1)
    bn: Literal["train", "frozen"] = "train"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    train: TrainConfig = TrainConfig(epochs=5, lr=0.01)
    sync_bn: bool = False  # torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)


def _phases(cfg: Config, model: torch.nn.Module) -> list[Phase]:
    head_name, _ = find_head(model)
    in_head = lambda n: n.startswith(head_name + ".")  # noqa: E731
    probe_cfg = cfg.train.model_copy(update={"bn": "frozen"})
    if cfg.transfer == "feature":
        return [Phase("probe", probe_cfg, trainable=in_head)]
    full_cfg = cfg.train.model_copy(update={"bn": cfg.bn})
    backbone_mult = lambda n: 1.0 if in_head(n) else cfg.backbone_lr_mult  # noqa: E731
    if cfg.transfer == "full":
        return [Phase("full", full_cfg)]
    if cfg.transfer == "hybrid":
        return [Phase("probe", probe_cfg.model_copy(update={"epochs": cfg.probe_epochs}), trainable=in_head),
                Phase("full", full_cfg, lr_mult=backbone_mult)]
    groups = unfreeze_stages(model)
    per = max(1, cfg.train.epochs // len(groups))
    phases, names = [], set()
    for i, group in enumerate(groups):
        names |= set(group)
        frozen_names = frozenset(names)
        phases.append(Phase(f"unfreeze{i + 1}", full_cfg.model_copy(update={"epochs": per, "seed": cfg.train.seed + i}),
                            trainable=lambda n, s=frozen_names: n in s, lr_mult=backbone_mult))
    return phases


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    data = ctx.data
    pre, k = data.preprocessing, data.num_classes
    model, meta = load_model(ctx.parent_dirs["teacher"], parents["teacher"])
    kwargs = dict(meta["arch_kwargs"])
    metrics: dict = {"transfer": cfg.transfer, "decided_on": data.facts("val")}  # best epoch; top1_* on val
    notes: list[str] = []
    onnx_teacher = getattr(model, "edgekd_onnx", False)
    if kwargs["num_classes"] != k:
        if cfg.transfer == "none":
            raise UsageError(f"--transfer none needs a teacher that predicts the dataset's {k} classes; this one "
                             f"predicts {kwargs['num_classes']}: choose feature, full, hybrid or staged")
        model = replace_head(model, k)
        kwargs["num_classes"] = k
        notes.append(f"New {k}-class head replaced the teacher's {meta['arch_kwargs']['num_classes']}-class head.")
    else:
        metrics["top1_before"] = accuracy(model, data.val, pre)
    if cfg.transfer == "none" or onnx_teacher:
        if onnx_teacher:
            why = "an ONNX teacher runs on ONNX Runtime and cannot be fine-tuned; it predicts these classes"
        elif metrics_of(parents["teacher"]).trained_on_all_classes:
            why = "the teacher was trained on this data"
        else:
            why = "--transfer none: the teacher already predicts these classes"
        notes.append("finetune skipped: the teacher was trained on this data." if why.startswith("the teacher was")
                     else f"finetune skipped ({why}).")
        metrics.update(top1_after=metrics["top1_before"], skipped=why)
    else:
        def ce(net, x, y, _idx):
            loss = torch.nn.functional.cross_entropy(net(x), y, label_smoothing=cfg.label_smoothing)
            return loss, {}

        result = trainer_for(model, ce, ctx, sync_bn=cfg.sync_bn).fit(_phases(cfg, model))
        metrics.update(top1_after=result.best_top1, best_epoch=result.best_epoch, history=result.history,
                       train_wall_s=result.wall_s)
        if cfg.transfer in ("hybrid", "staged"):
            metrics["backbone_lr_mult"] = cfg.backbone_lr_mult
            notes.append(f"{cfg.transfer} transfer: the backbone trained at {cfg.backbone_lr_mult:g}x the head's "
                         f"learning rate (--backbone-lr-mult).")
    art = save_model(ctx.work_dir, "model", model, meta["arch"], kwargs, extra=source_extra(meta) or None)
    return Manifest(stage=NAME, id="", config={}, artifacts=[art], preprocessing=pre, metrics=metrics, notes=notes)
