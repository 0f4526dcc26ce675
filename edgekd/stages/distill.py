"""Stage 3, distill: train a small student from the fine-tuned teacher.

Losses compose (see edgekd/losses): logit KD (Hinton 2015), attention transfer (Zagoruyko & Komodakis 2017),
FitNets hints (Romero 2015) and per-sample weighting; intermediate tensors come from forward hooks keyed
by module path, so neither model's code changes. When the teacher sees deterministic inputs (no
augmentation) and only its logits are needed, its outputs are computed once and reused every epoch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from edgekd.data.batches import eval_batches
from edgekd.losses.composite import DistillLossConfig
from edgekd.losses.training import build_distill_loss, make_step  # noqa: F401 (make_step: also imported from here)
from edgekd.manifest import Manifest
from edgekd.models.checkpoint import load_weights, read_state_dict, source_extra
from edgekd.models.heads import find_head
from edgekd.models.registry import build_model
from edgekd.models.reshape import structure_of
from edgekd.errors import StageFailed
from edgekd.stages.common import example_input, load_frozen_teacher, load_model, save_model, student_data, trainer_for
from edgekd.train import dist
from edgekd.train.evaluate import accuracy
from edgekd.train.loop import Phase, TrainConfig

NAME = "distill"
READS_DATA = True
DISTRIBUTED = True


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    student: str  # a registry name, auto, or a model source (edgekd.models.sources)
    kwargs: dict = {}  # an import-path student's factory arguments (--student-kwargs)
    output: str | None = None  # the logits among a tuple/dict output (--student-output)
    source_sha256: str | None = None  # content of the student's source file: part of the id
    student_weights: str | None = None
    student_weights_sha256: str | None = None
    # a student at a smaller input size than the teacher (--student-input-size); with student auto, the search's
    student_input_size: tuple[int, int] | None = None
    loss: DistillLossConfig = DistillLossConfig()
    train: TrainConfig = TrainConfig(epochs=10)
    cache_teacher: bool = True
    sync_bn: bool = False


@torch.no_grad()
def teacher_logits_cache(teacher: torch.nn.Module, data, device) -> torch.Tensor:
    """The teacher's logits for every training image, in dataset order (inputs without augmentation)."""
    teacher.eval()
    return torch.cat([teacher(x.to(device)).float() for x, _ in eval_batches(data.train, data.preprocessing)])


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    data = ctx.data
    pre, k = data.preprocessing, data.num_classes
    device = dist.context().device
    teacher = load_frozen_teacher(ctx, parents, device)
    kwargs = {"num_classes": k, "in_channels": pre.channels, "input_size": pre.input_size[0]}
    arch, extra = cfg.student, None
    sdata, spre = data, pre  # the student's data: the search may have chosen a smaller input size
    if cfg.student_input_size is not None and tuple(cfg.student_input_size) != tuple(pre.input_size):
        from edgekd.search.resolution import at_size

        sdata = ctx.data_at(at_size(pre, cfg.student_input_size, "--student-input-size"))
        spre = sdata.preprocessing
    if cfg.student == "auto":  # the search stage's winner, with the weights of its proxy runs
        sdata = student_data(ctx, parents["search"])
        spre = sdata.preprocessing  # (its architecture is built as for the data's size: kwargs unchanged)
        student, meta = load_model(ctx.parent_dirs["search"], parents["search"])
        student.to(device)
        # its structure (pruned channels, dropped blocks) and, for a pruned model the user brought, its source
        arch, extra = str(meta["arch"]), {**(structure_of(meta) or {}), **source_extra(meta)} or None
    else:
        student = build_model(cfg.student, **kwargs, source_kwargs=cfg.kwargs or None,
                              source_output=cfg.output).to(device)
        from edgekd.models import registry, sources

        if not registry.is_registered(cfg.student):
            source = sources.resolve(cfg.student, role="student", kwargs=cfg.kwargs, output=cfg.output)
            sources.check_logits(student.eval(), example_input(pre).to(device), cfg.student, "--student")
            arch = source.rebuild_spec
            extra = source.checkpoint_extra() or None
    if cfg.student_weights:
        state = read_state_dict(Path(cfg.student_weights))
        head, module = find_head(student)
        fits = tuple(state.get(f"{head}.weight", torch.empty(0)).shape) == tuple(module.weight.shape)
        load_weights(student, state, strict=True, skip_head=not fits, arch=cfg.student)
    size = None if spre is pre else tuple(spre.input_size)
    loss, s_taps, t_taps = build_distill_loss(cfg.loss, student, teacher, pre, device, spre)
    notes: list[str] = []
    if size is not None:
        if loss.needs_teacher_features:
            raise StageFailed(f"the student takes {size[0]}x{size[1]} inputs and the teacher {pre.input_size[0]}x"
                              f"{pre.input_size[1]}: attention and hint losses need both at one size")
        notes.append(f"The student takes {size[0]}x{size[1]} inputs, the teacher {pre.input_size[0]}x"
                     f"{pre.input_size[1]}: each batch is downscaled for the student (bilinear, antialiased); val "
                     "is decoded at the student's size.")
    cache = None
    if cfg.cache_teacher and cfg.train.augment == "none" and not loss.needs_teacher_features:
        cache = teacher_logits_cache(teacher, data, device)
        notes.append("Teacher logits computed once and reused every epoch (inputs are not augmented).")
    elif cfg.cache_teacher:
        why = "augmentation changes the inputs every epoch" if cfg.train.augment != "none" else \
            "attention/hint losses need the teacher's intermediate features"
        notes.append(f"Teacher outputs not cached: {why}.")
    trainer = trainer_for(student, make_step(loss, s_taps, t_taps, teacher, cache, size), ctx,
                          extra=loss, sync_bn=cfg.sync_bn, eval_data=sdata)
    result = trainer.fit([Phase("distill", cfg.train)])
    metrics = {
        "student_top1": result.best_top1, "best_epoch": result.best_epoch, "history": result.history,
        "teacher_top1": accuracy(teacher, data.val, pre, device), "train_wall_s": result.wall_s,
        "decided_on": data.facts("val"),  # best epoch; student_top1 and teacher_top1 are on val too
        "student_params": sum(p.numel() for p in student.parameters()),
        "teacher_params": sum(p.numel() for p in teacher.parameters()), "teacher_cached": cache is not None,
    }
    for taps in (s_taps, t_taps):
        if taps:
            taps.close()
    if cfg.student == "auto":
        metrics["searched"] = parents["search"].metrics.get("chosen")
    from edgekd.models.family import expected_float_layers

    # layers NNCF keeps in float on purpose (squeeze-excitation convs, unless quantized: edgekd's default):
    # declared, so the INT8 checks name them
    metrics["float_layers_declared"] = expected_float_layers(student)
    if size is not None:
        metrics["student_input_size"] = list(size)
    art = save_model(ctx.work_dir, "model", student, arch, kwargs, extra=extra)
    # the student's preprocessing: what every later stage, the bundle and `edgekd eval` feed it
    return Manifest(stage=NAME, id="", config={}, artifacts=[art], preprocessing=spre, metrics=metrics, notes=notes)
