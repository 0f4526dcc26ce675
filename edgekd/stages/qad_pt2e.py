"""Stage 4b, qad_pt2e: INT8 quantization-aware distillation for mobile runtimes, by PT2E (edgekd.quant.pt2e).

Runs when the target profile's `quantizers` lists a PT2E route (`pt2e-xnnpack` for ExecuTorch, `pt2e-litert`
for LiteRT); one pass per route. Each pass mirrors the NNCF qad stage:
1. PTQ: the distilled student (BatchNorm folded), captured with torch.export, quantized by the runtime's own
   quantizer and calibrated on the **same calibration images** as the NNCF route (the qad stage's
   calibration.npz).
2. QAD: prepare_qat_pt2e on a fresh capture, the same calibration, then the distill stage's losses with the
   teacher teaching, through the same Trainer (frozen BatchNorm: it is folded).
3. The better of PTQ and QAD on the **val** split is kept and the manifest says which; test is left for the
   bundle, which runs every artifact on it.
The kept model is saved as a torch.export program (`<route>.pt2`, quantize/dequantize ops explicit): the PyTorch
quantized reference the .pte/.tflite/.mlpackage writers lower and are compared with. Attention/hint losses read
module paths through hooks, which an exported graph no longer has: the PT2E pass keeps the logit terms (KD, CE,
weighting) and says so.
"""

from __future__ import annotations

import time
from typing import Literal
import torch
from pydantic import BaseModel, ConfigDict, Field

from edgekd.data.batches import eval_batches
from edgekd.data.calibration import read_calibration
from edgekd.losses.composite import DistillLossConfig
from edgekd.manifest import ArtifactKind, Manifest, make_artifact
from edgekd.quant import pt2e
from edgekd.stages.common import load_frozen_teacher, load_model, student_data, trainer_for
from edgekd.losses.training import build_distill_loss, make_step
from edgekd.train.evaluate import accuracy
from edgekd.train.loop import Phase, TrainConfig

NAME = "qad_pt2e"
READS_DATA = True
DISTRIBUTED = False  # under torchrun: rank 0 alone, as a single process (edgekd.train.dist.alone)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[str] = Field(min_length=1)
    ranges: Literal["ptq", "moving-average"] = "ptq"  # activation ranges during QAD (edgekd.quant.pt2e.prepare_qat)
    loss: DistillLossConfig = DistillLossConfig()
    train: TrainConfig = TrainConfig(epochs=2, lr=0.002, bn="frozen", weight_decay=0.0)


def logit_only(cfg: DistillLossConfig) -> tuple[DistillLossConfig, list[str]]:
    """The loss without the hook-based terms (attention, hint), and what was dropped."""
    dropped = [name for name in ("attention", "hint") if getattr(cfg, name).pairs]
    update = {name: getattr(cfg, name).model_copy(update={"pairs": []}) for name in dropped}
    return cfg.model_copy(update=update), dropped


def run(cfg: Config, parents: dict[str, Manifest], ctx) -> Manifest:
    for name in cfg.routes:
        pt2e.require_route(name)
    data = student_data(ctx, parents["student"])  # the student's input size (the teacher's may be larger)
    pre = data.preprocessing
    size = None if data is ctx.data else tuple(pre.input_size)
    device = torch.device("cpu")  # PT2E fake-quant graphs are exported and lowered on CPU
    teacher = load_frozen_teacher(ctx, parents, device)
    student, meta = load_model(ctx.parent_dirs["student"], parents["student"])
    student.eval()
    qad = parents["qad"]
    calib_file = ctx.parent_dirs["qad"] / qad.artifact("calibration").path
    calib = read_calibration(calib_file, pre)
    calib_x = [x for x, _ in eval_batches(calib, pre, 64)]
    example = torch.zeros(2, pre.channels, *pre.input_size)
    loss_cfg, dropped = logit_only(cfg.loss)
    notes = [f"Calibrated on the NNCF route's {len(calib)} calibration images (qad/{qad.artifact('calibration').path})."]
    if dropped:
        notes.append(f"PT2E QAD uses the logit losses only: {', '.join(dropped)} read module hooks that an exported "
                     "graph does not have.")
    fp32_top1 = accuracy(student, data.val, pre, device)
    artifacts, per_route, histories = [], {}, []
    for name in cfg.routes:
        t0 = time.perf_counter()
        ptq_model = pt2e.ptq(student, example, calib_x, name)
        pt2e.allow_train_eval(ptq_model)
        ptq_top1 = accuracy(ptq_model, data.val, pre, device)
        ptq_s = time.perf_counter() - t0
        qad_top1, qad_model, qad_s = None, None, 0.0
        if cfg.train.epochs > 0:
            t0 = time.perf_counter()
            prepared = pt2e.prepare_qat(student, example, calib_x, name, cfg.ranges)
            loss, s_taps, t_taps = build_distill_loss(loss_cfg, student, teacher, ctx.data.preprocessing, device, pre)
            trainer = trainer_for(prepared, make_step(loss, s_taps, t_taps, teacher, None, size), ctx, extra=loss,
                                  mixed_precision=False, eval_data=data)
            trainer.state_dir = ctx.work_dir / "state" / name
            result = trainer.fit([Phase(f"qad {name}", cfg.train)])
            histories.extend(dict(h, route=name) for h in result.history)
            qad_model = pt2e.convert_qat(prepared)
            pt2e.allow_train_eval(qad_model)
            qad_top1 = accuracy(qad_model, data.val, pre, device)
            qad_s = time.perf_counter() - t0
        kept = "qad" if qad_top1 is not None and qad_top1 >= ptq_top1 else "ptq"
        model = qad_model if kept == "qad" else ptq_model
        path = pt2e.save_program(model, ctx.work_dir / f"{name}.pt2", example)
        route = pt2e.route(name)
        artifacts.append(make_artifact(ctx.work_dir, name, ArtifactKind.quantized_checkpoint, path, route=name,
                                       runtime=route.runtime, scheme=route.scheme, kept=kept, arch=meta["arch"],
                                       format="torch.export program (.pt2), quantize/dequantize ops explicit",
                                       quantized_ops=pt2e.quantized_ops(model)))
        per_route[name] = {"ptq_top1": ptq_top1, "qad_top1": qad_top1, "int8_top1": qad_top1 if kept == "qad"
                           else ptq_top1, "kept": kept, "ptq_s": round(ptq_s, 1), "qad_s": round(qad_s, 1)}
        if kept == "ptq" and qad_top1 is not None:
            notes.append(f"{name}: QAD ended below PTQ ({qad_top1:.2%} < {ptq_top1:.2%}): the PTQ model is kept.")
    metrics = {"fp32_top1": fp32_top1, "routes": per_route, "calibration_images": len(calib),
               "losses_dropped": dropped, "history": histories, "decided_on": data.facts("val")}
    return Manifest(stage=NAME, id="", config={}, artifacts=artifacts, preprocessing=pre, metrics=metrics, notes=notes)

