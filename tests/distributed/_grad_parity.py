"""Under torchrun: DDP's averaged gradient equals the single-process gradient of the same global batch.

Every rank computes the reference itself (the whole global batch, one process, no DDP) and the DDP gradient
from its slice (the trainer's own wrap, batches and adapter averaging), then rank 0 writes the largest
absolute and relative differences per check to OUT (JSON). BatchNorm runs in eval mode here: in train
mode its batch statistics are per slice (the documented difference that SyncBatchNorm removes on GPUs).
Uniform weighting only: the other weightings normalise their softmax over each rank's slice (documented).

    torchrun --nproc-per-node 2 _grad_parity.py OUT
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

import torch


def main() -> None:
    out = Path(sys.argv[1])
    from edgekd.data.batches import train_batches
    from edgekd.data.dataset import DataConfig, load_data
    from edgekd.losses.composite import DistillLoss, DistillLossConfig
    from edgekd.models.small import SmallCNN
    from edgekd.stages.common import example_input
    from edgekd.train import dist
    from edgekd.train.loop import Trainer, set_bn_mode

    ctx = dist.context()
    data = load_data(DataConfig())
    pre = data.preprocessing
    report = {}
    for weighting, hint in (("uniform", False), ("uniform", True)):
        torch.manual_seed(0)
        student = SmallCNN(num_classes=10, in_channels=1)
        teacher = SmallCNN(num_classes=10, in_channels=1, widths=(32, 64, 128)).eval()
        cfg = DistillLossConfig.model_validate({
            "kd": {"temperature": 4.0, "alpha": 0.9}, "weighting": {"score": weighting},
            "hint": {"pairs": [{"student": "features.1", "teacher": "features.1"}] if hint else [], "weight": 1.0}})
        loss = DistillLoss(cfg, student, teacher, example_input(pre))
        ref_student, ref_loss = copy.deepcopy(student), copy.deepcopy(loss)
        set_bn_mode(student, "frozen")
        set_bn_mode(ref_student, "frozen")

        def step(net, lossmod, x, y):
            from edgekd.losses.hooks import FeatureTaps

            plain = ref_student if net is ref_student else student
            s_taps = FeatureTaps(plain, list(lossmod.student_paths)) if lossmod.student_paths else None
            t_taps = FeatureTaps(teacher, list(lossmod.teacher_paths)) if lossmod.teacher_paths else None
            s_logits = net(x)
            with torch.no_grad():
                t_logits = teacher(x)
            value, _ = lossmod(s_logits, t_logits, y, dict(s_taps.outputs) if s_taps else {},
                               dict(t_taps.outputs) if t_taps else {})
            for taps in (s_taps, t_taps):
                if taps:
                    taps.close()
            return value

        # no augmentation: its generator is seeded per rank, so augmented slices differ from the reference's
        kw = dict(batch_size=32, seed=3, epoch=0, augment="none")
        x_all, y_all, _ = next(train_batches(data.train, pre, rank=0, world=1, **kw))
        x_mine, y_mine, _ = next(train_batches(data.train, pre, rank=ctx.rank, world=ctx.world, **kw))
        trainer = Trainer(student, lambda *a: None, lambda: 0.0, data.train, pre, Path(tempfile.mkdtemp()), extra=loss)
        net = trainer._wrap()
        net.train()
        set_bn_mode(student, "frozen")
        step(net, loss, x_mine, y_mine).backward()
        dist.average_gradients([p for p in loss.parameters() if p.requires_grad])
        step(ref_student, ref_loss, x_all, y_all).backward()
        pairs = [*zip(student.parameters(), ref_student.parameters()), *zip(loss.parameters(), ref_loss.parameters())]
        abs_diff = max(float((a.grad - b.grad).abs().max()) for a, b in pairs)
        scale = max(float(b.grad.abs().max()) for _, b in pairs)
        report[f"{weighting}{'+hint' if hint else ''}"] = {
            "max_abs_diff": abs_diff, "max_grad": scale, "params": len(pairs),
            "adapter_params": sum(1 for _ in loss.parameters())}
    if ctx.is_main:
        out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
