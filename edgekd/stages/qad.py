"""Stage 4, qad: INT8 quantization-aware distillation, with a PTQ baseline and a floating-point fallback.

1. The distilled student is quantized with NNCF (symmetric per-channel weights, symmetric per-tensor
   activations: a preset TensorRT's explicit quantization accepts), calibrated on a stratified calibration
   set written into this stage's folder. That model, calibrated only, is the PTQ baseline.
2. A copy is fine-tuned with the teacher still teaching (the distill stage's losses), BatchNorm statistics
   frozen (right after quantization, train-mode BN makes the loss ~4x worse than eval mode).
3. The better of PTQ and QAD on the **val** split is kept, and the report says which. When it misses the
   accuracy requirement, the most sensitive layers go back to floating point: float layer sets are tried as PTQ only (calibrate and
   evaluate, no training), QAD runs once on the most promising set, and the search stops at
   `fallback_budget_min` minutes (edgekd.quant.fallback). It is skipped when the FP32 student is already below
   the requirement. Every attempt is reported with its cost; the layers are named. Missing the floor is a
   budget failure (exit 1), with the best artifact kept.
   Every accuracy here (the requirement's teacher figure included) is on val; test is left for the bench
   stage, which reports and judges.
"""

from __future__ import annotations

import copy
from typing import Literal
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.accuracy import AccuracyRequirement
from edgekd.data.batches import eval_batches
from edgekd.data.calibration import read_calibration, sample_calibration, write_calibration
from edgekd.losses.composite import DistillLossConfig
from edgekd.losses.training import build_distill_loss, make_step
from edgekd.manifest import ArtifactKind, Manifest, make_artifact
from edgekd.quant.nncf_quant import QuantSpec, prepare_for_qat, quantize, save_quantized
from edgekd.quant.fallback import Attempt, bounded_fallback
from edgekd.quant.se_blocks import QUANTIZE_SE_BLOCKS
from edgekd.quant.sensitivity import layer_sensitivity
from edgekd.stages.common import example_input, load_frozen_teacher, load_model, student_data, trainer_for
from edgekd.train import dist
from edgekd.train.evaluate import accuracy
from edgekd.train.loop import Phase, TrainConfig

NAME = "qad"
READS_DATA = True
DISTRIBUTED = True


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loss: DistillLossConfig = DistillLossConfig()
    train: TrainConfig = TrainConfig(epochs=2, lr=0.002, bn="frozen", weight_decay=0.0)
    preset: Literal["trt", "mixed"] = "mixed"
    calib_size: int = Field(default=300, ge=1)
    min_calibration: int = Field(default=32, ge=1)
    calib: str | None = None
    calib_sha256: str | None = None
    ignored_layers: list[str] = Field(default_factory=list)
    quantize_se_blocks: bool = QUANTIZE_SE_BLOCKS  # in the stage id: the default changed (edgekd.quant.se_blocks)
    accuracy: AccuracyRequirement = AccuracyRequirement()
    max_fallback_layers: int = Field(default=3, ge=0)
    fallback_budget_min: float = Field(default=10.0, ge=0)  # 0: no fallback


def attempts_text(attempts: list[Attempt]) -> str:
    """'0 float ptq 91.2% (3 s), 0 float qad 93.0% (41 s), ...' in the order tried."""
    return ", ".join(f"{len(a.float_layers)} float {a.method} {a.metric:.2%} ({a.cost_s:.0f} s)" for a in attempts)


def _calibration(cfg: Config, data, work_dir: Path):
    split = read_calibration(Path(cfg.calib), data.preprocessing) if cfg.calib else \
        sample_calibration(data.train, cfg.calib_size, cfg.train.seed)
    path = work_dir / "calibration.npz"
    if dist.context().is_main:
        write_calibration(path, split, data.preprocessing)
    return split, path


def _qad_attempt(cfg: Config, ctx, teacher, histories: list[dict], sdata=None):
    """QAD of a copy of a PTQ model `base` built with `layers` in float, as bounded_fallback calls it. `sdata`:
    the student's data when it takes smaller inputs than the teacher (edgekd.search.resolution)."""
    pre, device = ctx.data.preprocessing, dist.context().device
    size = None if sdata is None or sdata is ctx.data else tuple(sdata.preprocessing.input_size)

    def qad(layers: list[str], base: torch.nn.Module) -> torch.nn.Module:
        qmodel = prepare_for_qat(copy.deepcopy(base))
        loss, s_taps, t_taps = build_distill_loss(cfg.loss, qmodel, teacher, pre, device,
                                                  None if sdata is None else sdata.preprocessing)
        # float32 on every device: fake-quant ranges and rounding are what the INT8 export runs
        trainer = trainer_for(qmodel, make_step(loss, s_taps, t_taps, teacher, None, size), ctx, extra=loss,
                              mixed_precision=False, eval_data=sdata)
        trainer.state_dir = ctx.work_dir / "state" / ("float-" + "-".join(layers) if layers else "all-int8")
        result = trainer.fit([Phase("qad", cfg.train)])
        for taps in (s_taps, t_taps):
            if taps:
                taps.close()
        histories.extend(dict(h, float_layers=len(layers)) for h in result.history)
        return qmodel.eval()

    return qad


def _notes(cfg: Config, result, required: float) -> tuple[list[str], list[str]]:
    """(notes on what was kept and why, layers the fallback returned to float)."""
    ptq_top1 = result.metric_of(result.ignored_layers, "ptq")
    qad_top1 = result.metric_of(result.ignored_layers, "qad")
    notes = list(result.notes)
    if result.method == "ptq" and qad_top1 is not None:
        notes.append(f"QAD ended below PTQ ({qad_top1:.2%} < {ptq_top1:.2%}): the PTQ model is kept.")
    fallback = [l for l in result.ignored_layers if l not in cfg.ignored_layers]
    if fallback:
        notes.append(f"Accuracy requirement {required:.2%} (on val): layers returned to floating point: "
                     f"{', '.join(fallback)}.")
    if not result.met:
        notes.append(f"No setting reached the required {required:.2%} on val (tried {len(result.attempts)}: "
                     f"{attempts_text(result.attempts)}); the best artifact is kept.")
    return notes, fallback


def _save(cfg: Config, ctx, result, spec: QuantSpec, meta: dict, calib, calib_path: Path) -> list:
    """Write the kept quantized model (main process) and return its and the calibration set's artifacts."""
    if not dist.context().is_main:
        return []
    out = ctx.work_dir / "quantized.pt"
    q_meta = {"arch": meta["arch"], "arch_kwargs": meta["arch_kwargs"], "spec": spec.model_dump(mode="json"),
              "ignored_layers": result.ignored_layers, "kept": result.method}
    save_quantized(result.model, out, q_meta)
    return [make_artifact(ctx.work_dir, "quantized", ArtifactKind.quantized_checkpoint, out, **q_meta),
            make_artifact(ctx.work_dir, "calibration", ArtifactKind.calibration, calib_path, images=len(calib),
                          source=cfg.calib or "stratified sample of the training split")]


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    import logging

    import nncf

    nncf.set_log_level(logging.WARNING)  # NNCF's INFO lines about its C++ extension are not for users
    full = ctx.data  # the teacher's: the data's input size
    data = student_data(ctx, parents["student"])  # the student's (a searched student may take smaller images)
    pre = data.preprocessing
    device = dist.context().device
    teacher = load_frozen_teacher(ctx, parents, device)
    student, meta = load_model(ctx.parent_dirs["student"], parents["student"])
    student.to(device).eval()
    calib, calib_path = _calibration(cfg, data, ctx.work_dir)
    calib_x = [x for x, _ in eval_batches(calib, pre, 64)]
    example = example_input(pre).to(device)
    spec = QuantSpec(preset=cfg.preset, subset_size=len(calib), min_calibration=cfg.min_calibration,
                     ignored_layers=cfg.ignored_layers, quantize_se_blocks=cfg.quantize_se_blocks)
    teacher_top1 = accuracy(teacher, full.val, full.preprocessing, device)
    fp32_top1 = accuracy(student, data.val, pre, device)
    required = cfg.accuracy.required(teacher_top1)
    histories: list[dict] = []

    def ptq(layers: list[str]) -> torch.nn.Module:
        return quantize(student, calib_x, spec.model_copy(update={"ignored_layers": layers}), example)

    result = bounded_fallback(
        ptq, _qad_attempt(cfg, ctx, teacher, histories, data) if cfg.train.epochs > 0 else None,
        lambda m: accuracy(m, data.val, pre, device),
        lambda m: layer_sensitivity(m, student, calib_x), required, base_layers=cfg.ignored_layers,
        max_layers=cfg.max_fallback_layers, budget_s=cfg.fallback_budget_min * 60, fp32_metric=fp32_top1,
        agree=dist.broadcast_object)
    notes, fallback = _notes(cfg, result, required)
    artifacts = _save(cfg, ctx, result, spec, meta, calib, calib_path)
    metrics = {
        "teacher_top1": teacher_top1, "fp32_top1": fp32_top1,
        "ptq_top1": result.metric_of(result.ignored_layers, "ptq"),
        "qad_top1": result.metric_of(result.ignored_layers, "qad"),
        "int8_top1": result.metric, "kept": result.method, "required_top1": required, "requirement_met": result.met,
        "float_layers": result.ignored_layers, "fallback_layers": fallback,
        "attempts": [a.to_dict() for a in result.attempts], "fallback_notes": result.notes,
        "fallback_budget_s": cfg.fallback_budget_min * 60, "ranking_s": result.ranking_s,
        "sensitivity": [{"layer": r.layer, "kl_recovered": r.metric} for r in result.ranking[:10]],
        "calibration_images": len(calib), "history": histories,
        "decided_on": data.facts("val"),  # PTQ vs QAD, fallback layers; every *_top1 here is on val
    }
    return Manifest(stage=NAME, id="", config={}, artifacts=artifacts, preprocessing=pre, metrics=metrics, notes=notes)
