"""Bench (issue 3): transfer fine-tuning of a CIFAR-10 ResNet-56 teacher to CIFAR-10-JPEG, distillation of a
ResNet-20 student (CE vs KD vs KD + attention transfer), and the distill stage's speed against a bare loop.

    python bench/bench_transfer_distill.py --data-tar ../shared/data/cifar10-jpeg \
        --models ../shared/models/cifar10-resnet --work /tmp/edgekd-bench \
        [--train-per-class 200] [--test-per-class 200] [--finetune-epochs 3] [--distill-epochs 4] \
        [--parts transfer,distill,timing] [--results-md bench/RESULTS.md]

The archives are extracted once to --extract-to (default /tmp/cifar10-jpeg, outside the repository) and
decoded once into an .npz cache under --work. Stages run through edgekd's own pipeline
(`edgekd.plan.build_specs` + `edgekd.pipeline.run_pipeline`) in one run folder, so the fine-tuned teacher of
a transfer mode is reused by every distillation variant and by bench_qad.py (same options -> same stage id).
Each part writes WORK/results/<part>.json; the RESULTS.md section is rendered from all part files present,
so parts may run in separate (even concurrent) processes and be rendered at the end with `--parts report`.

Subsets and epochs are part of every number written: see `--train-per-class`, `--test-per-class`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

TEACHER_FILE = "resnet56-4bfd9763.th"
STUDENT_FILE = "resnet20-12fca82f.th"
JPEG_BASELINE = {"resnet56": 0.8320, "resnet20": 0.8103, "resnet56_clean": 0.9339}  # ../shared SOURCE.md
SECTION = "bench_transfer_distill"


# ------------------------------------------------------------------------------------------------ setup
def build_parser(doc: str = __doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data-tar", type=Path, required=True, help="folder with train.tar.gz and test.tar.gz")
    p.add_argument("--models", type=Path, required=True, help="folder with the akamaster resnet*.th files")
    p.add_argument("--work", type=Path, default=Path("/tmp/edgekd-bench"))
    p.add_argument("--extract-to", type=Path, default=Path("/tmp/cifar10-jpeg"))
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--finetune-epochs", type=int, default=3, help="total transfer epochs (hybrid: 1 probe + rest)")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--modes", default="feature,full,hybrid", help="transfer modes (feature,full,hybrid,staged)")
    p.add_argument("--distill-teacher", default="full", help="transfer mode whose teacher the students learn from")
    p.add_argument("--distill-epochs", type=int, default=4)
    p.add_argument("--pretrained-epochs", type=int, default=2, help="epochs of the pretrained-student variants")
    p.add_argument("--lr", type=float, default=0.05, help="distillation learning rate (from scratch)")
    p.add_argument("--pretrained-lr", type=float, default=0.01, help="distillation lr from the pretrained student")
    p.add_argument("--variants", default="ce,kd,kd_at", help="from-scratch student variants (ce,kd,kd_at)")
    p.add_argument("--pretrained-variants", default="ce,kd", help="pretrained-student variants ('' for none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--timing-per-class", type=int, default=100)
    p.add_argument("--timing-rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: see RESULTS.md on contention)")
    p.add_argument("--parts", default="transfer,distill,timing,report")
    p.add_argument("--results-md", type=Path, default=None, help="write this script's section into this file")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def extract(data_tar: Path, dest: Path) -> Path:
    """Extract train/test archives once (a marker file records a finished extraction)."""
    marker = dest / ".extracted"
    if marker.is_file():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("train.tar.gz", "test.tar.gz"):
        with tarfile.open(data_tar / name) as tar:
            tar.extractall(dest, filter="data")
    marker.write_text("ok\n")
    return dest


def machine() -> dict:
    try:
        model = next(l.split(":", 1)[1].strip() for l in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name"))
    except Exception:  # pragma: no cover
        model = platform.processor()
    import os

    import torch

    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_avg_at_start": os.getloadavg()[0], "python": platform.python_version()}


class Bench:
    """Shared state: the dataset, the run folder, and the option sets that name the stages."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        torch.set_num_threads(args.threads)
        self.args = args
        self.root = extract(args.data_tar, args.extract_to)
        self.run_dir = args.work / "run"
        self.results = args.work / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        from edgekd.data.dataset import DataConfig, load_data
        from edgekd.targets import load_target

        self.target = load_target("intel-cpu")
        t0 = time.perf_counter()
        cfg = DataConfig(source=str(self.root), input_size=self.target.input_size,
                         max_train_per_class=args.train_per_class, max_val_per_class=args.test_per_class,
                         max_test_per_class=args.test_per_class)  # val (decisions) is carved from train/
        self.data = load_data(cfg, args.work / ".cache")
        self.data_load_s = time.perf_counter() - t0
        self.fingerprint = self.data.fingerprint  # names the per-class caps (edgekd.data.dataset.load_data)

    def options(self, **over):
        from edgekd.plan import CompressOptions

        a = self.args
        base = dict(target="intel-cpu", data=str(self.root), teacher="cifar_resnet56",
                    teacher_weights=str(a.models / TEACHER_FILE), student="cifar_resnet20",
                    max_train_per_class=a.train_per_class, max_val_per_class=a.test_per_class,
                    max_test_per_class=a.test_per_class,
                    batch_size=a.batch_size, finetune_lr=a.finetune_lr, teacher_epochs=0, seed=0,
                    transfer=a.distill_teacher, **self.finetune_epochs(a.distill_teacher))
        base.update(over)
        return CompressOptions(**base)

    def finetune_epochs(self, mode: str) -> dict:
        e = self.args.finetune_epochs
        return dict(probe_epochs=1, finetune_epochs=e - 1) if mode == "hybrid" else dict(probe_epochs=1, finetune_epochs=e)

    def specs(self, opts, upto: str):
        from edgekd.plan import build_specs

        specs = build_specs(opts, self.target, self.data.preprocessing.channels)
        names = [s.name for s in specs]
        return specs[:names.index(upto) + 1]

    def run(self, specs) -> dict:
        """Run (or reuse) the stages; returns name -> (manifest, stage dir, reused?)."""
        from rich.console import Console

        from edgekd.pipeline import run_pipeline

        outcomes = run_pipeline(specs, self.run_dir, fingerprint=lambda: self.fingerprint,
                                data_loader=lambda: self.data, console=Console(stderr=True), progress=None)
        return {o.spec.name: SimpleNamespace(manifest=o.manifest, dir=o.stage_dir, skipped=o.skipped)
                for o in outcomes}

    def teacher_specs(self, mode: str):
        return self.specs(self.options(transfer=mode, **self.finetune_epochs(mode)), "finetune")

    def save(self, part: str, payload: dict) -> None:
        payload = dict(payload, machine=machine(), args={k: str(v) for k, v in vars(self.args).items()},
                       data=self.data.description, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        (self.results / f"{part}.json").write_text(json.dumps(payload, indent=1, default=str))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------- transfer
def part_transfer(b: Bench) -> None:
    rows = []
    for mode in [m for m in b.args.modes.split(",") if m]:
        log(f"transfer {mode} ...")
        t0 = time.perf_counter()
        out = b.run(b.teacher_specs(mode))["finetune"]
        m = out.manifest.metrics
        rows.append({"mode": mode, "top1_before": m.get("top1_before"), "top1_after": m.get("top1_after"),
                     "best_epoch": m.get("best_epoch"), "epochs": len(m.get("history", [])),
                     "train_wall_s": m.get("train_wall_s"), "stage_wall_s": out.manifest.wall_s,
                     "reused": out.skipped, "this_call_s": time.perf_counter() - t0,
                     "history": [{k: h.get(k) for k in ("phase", "epoch", "loss", "val_top1", "epoch_s")}
                                 for h in m.get("history", [])],
                     "stage_id": out.manifest.id})
        log(f"transfer {mode}: {rows[-1]['top1_before']} -> {rows[-1]['top1_after']} "
            f"({out.manifest.wall_s:.0f}s{' reused' if out.skipped else ''})")
        b.save("transfer", {"rows": rows, "finetune_lr": b.args.finetune_lr, "batch_size": b.args.batch_size})


# ---------------------------------------------------------------------------------------------- distill
VARIANTS = {
    "ce": dict(alpha=0.0),
    "kd": dict(alpha=0.9, temperature=4.0),
    "kd_at": dict(alpha=0.9, temperature=4.0, attention=["layer3:layer3"], attention_weight=1000.0),
}


def check_alpha_zero_is_ce() -> dict:
    """kd_loss(alpha=0) and DistillLoss(alpha=0) against F.cross_entropy on random logits."""
    import torch
    import torch.nn.functional as F

    from edgekd.losses.kd import kd_loss

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(64, 10, generator=g) * 3, torch.randn(64, 10, generator=g) * 3
    y = torch.randint(0, 10, (64,), generator=g)
    ce = F.cross_entropy(s, y)
    diff = (kd_loss(s, t, y, 4.0, 0.0) - ce).abs().item()
    s_req = s.clone().requires_grad_(True)
    kd_loss(s_req, t, y, 4.0, 0.0).backward()
    s_ref = s.clone().requires_grad_(True)
    F.cross_entropy(s_ref, y).backward()
    return {"kd_loss_alpha0_minus_ce": diff, "grad_max_abs_diff": (s_req.grad - s_ref.grad).abs().max().item(),
            "pure_ce": diff < 1e-6 and (s_req.grad - s_ref.grad).abs().max().item() < 1e-7}


def distill_options(b: Bench, init: str, variant: str, **over):
    """The compress options of one student variant (bench_qad.py builds on the same, to reuse the stage)."""
    a = b.args
    epochs, lr, weights = (a.distill_epochs, a.lr, None) if init == "scratch" else \
        (a.pretrained_epochs, a.pretrained_lr, str(a.models / STUDENT_FILE))
    return b.options(distill_epochs=epochs, lr=lr, augment="none", student_weights=weights, **VARIANTS[variant], **over)


def part_distill(b: Bench) -> None:
    a = b.args
    payload = {"alpha0_check": check_alpha_zero_is_ce(), "teacher_mode": a.distill_teacher, "rows": []}
    log(f"alpha=0 check: {payload['alpha0_check']}")
    teacher = b.teacher_specs(a.distill_teacher)
    plan = [("pretrained", v) for v in a.pretrained_variants.split(",") if v]  # first: bench_qad.py needs it
    plan += [("scratch", v) for v in a.variants.split(",") if v]
    for init, variant in plan:
        epochs, lr = (a.distill_epochs, a.lr) if init == "scratch" else (a.pretrained_epochs, a.pretrained_lr)
        log(f"distill {init} {variant} ({epochs} epochs) ...")
        t0 = time.perf_counter()
        out = b.run(teacher + b.specs(distill_options(b, init, variant), "distill")[2:])
        m = out["distill"].manifest.metrics
        payload["rows"].append({
            "init": init, "variant": variant, "epochs": epochs, "lr": lr, "loss": VARIANTS[variant],
            "student_top1": m["student_top1"], "teacher_top1": m["teacher_top1"], "best_epoch": m["best_epoch"],
            "train_wall_s": m["train_wall_s"], "stage_wall_s": out["distill"].manifest.wall_s,
            "teacher_cached": m["teacher_cached"], "reused": out["distill"].skipped, "notes": out["distill"].manifest.notes,
            "history": [{k: h.get(k) for k in ("epoch", "loss", "val_top1", "epoch_s")} for h in m["history"]],
            "stage_id": out["distill"].manifest.id, "this_call_s": time.perf_counter() - t0})
        log(f"distill {init} {variant}: student {m['student_top1']:.4f} teacher {m['teacher_top1']:.4f} "
            f"({out['distill'].manifest.wall_s:.0f}s{' reused' if out['distill'].skipped else ''})")
        b.save("distill", payload)


# ----------------------------------------------------------------------------------------------- timing
def bare_kd_epoch(student, teacher, images, labels, pre, *, batch_size, lr, seed, epoch, alpha, T, cache=None):
    """A plain PyTorch KD epoch doing the same work as edgekd's: same order, batches, normalisation, loss,
    SGD (nesterov, wd 5e-4), gradient clipping at 5 and a cosine schedule."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)
    std = torch.tensor(pre.std).view(1, -1, 1, 1)
    params = [p for p in student.parameters()]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = len(labels) // batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps))))
    order = np.random.default_rng([seed, epoch]).permutation(len(labels))
    t0 = time.perf_counter()
    student.train()
    teacher.eval()
    for start in range(0, steps * batch_size, batch_size):
        idx = order[start:start + batch_size]
        x = (torch.from_numpy(images[idx]).float() / pre.value_scale - mean) / std
        y = torch.from_numpy(labels[idx])
        s = student(x)
        if cache is None:
            with torch.no_grad():
                t = teacher(x)
        else:
            t = cache[torch.as_tensor(idx)]
        kl = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), reduction="none", log_target=True).sum(1)
        loss = (alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y, reduction="none")).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
    return time.perf_counter() - t0


def part_timing(b: Bench) -> None:
    """One epoch each, interleaved over rounds: edgekd live teacher, bare loop live teacher, edgekd cached."""
    import tempfile

    import torch

    from edgekd.data.dataset import _cap_per_class
    from edgekd.losses.composite import DistillLossConfig, KDConfig
    from edgekd.models.registry import build_model
    from edgekd.stages.common import load_model
    from edgekd.losses.training import build_distill_loss, make_step
    from edgekd.stages.distill import teacher_logits_cache
    from edgekd.train.loop import Phase, Trainer, TrainConfig

    a = b.args
    ft = b.run(b.teacher_specs(a.distill_teacher))["finetune"]
    teacher, _ = load_model(ft.dir, ft.manifest)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    split = _cap_per_class(b.data.train, a.timing_per_class)
    pre = b.data.preprocessing
    alpha, T, lr = 0.9, 4.0, 0.05
    cfg = TrainConfig(epochs=1, batch_size=a.batch_size, lr=lr, augment="none", seed=0)
    loss_cfg = DistillLossConfig(kd=KDConfig(alpha=alpha, temperature=T))

    def fresh_student():
        torch.manual_seed(0)
        return build_model("cifar_resnet20", num_classes=10, in_channels=3, input_size=32)

    def edgekd_epoch(cache) -> float:
        student = fresh_student()
        loss, s_taps, t_taps = build_distill_loss(loss_cfg, student, teacher, pre, torch.device("cpu"))
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(student, make_step(loss, s_taps, t_taps, teacher, cache), lambda: 0.0, split, pre,
                              Path(tmp) / "state", extra=loss)
            trainer.fit([Phase("distill", cfg)])
        return trainer.history[0]["epoch_s"]

    t0 = time.perf_counter()
    cache = teacher_logits_cache(teacher, SimpleNamespace(train=split, preprocessing=pre), "cpu")
    cache_s = time.perf_counter() - t0
    runs = {"edgekd_live": [], "bare_live": [], "edgekd_cached": [], "bare_cached": []}
    for r in range(a.timing_rounds):
        log(f"timing round {r + 1}/{a.timing_rounds} ({len(split)} images) ...")
        runs["edgekd_live"].append(edgekd_epoch(None))
        runs["bare_live"].append(bare_kd_epoch(fresh_student(), teacher, split.images, split.labels, pre,
                                               batch_size=a.batch_size, lr=lr, seed=0, epoch=0, alpha=alpha, T=T))
        runs["edgekd_cached"].append(edgekd_epoch(cache))
        runs["bare_cached"].append(bare_kd_epoch(fresh_student(), teacher, split.images, split.labels, pre,
                                                 batch_size=a.batch_size, lr=lr, seed=0, epoch=0, alpha=alpha, T=T,
                                                 cache=cache))
        log(f"timing round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in runs.items()))
        med = {k: sorted(v)[len(v) // 2] if len(v) % 2 else sum(sorted(v)[len(v) // 2 - 1:len(v) // 2 + 1]) / 2
               for k, v in runs.items()}
        b.save("timing", {
            "images": len(split), "batch_size": a.batch_size, "rounds": r + 1, "runs_s": runs, "median_s": med,
            "cache_build_s": cache_s,
            "edgekd_over_bare_live": med["edgekd_live"] / med["bare_live"],
            "edgekd_over_bare_cached": med["edgekd_cached"] / med["bare_cached"],
            "cache_speedup_per_epoch": med["edgekd_live"] / med["edgekd_cached"],
            "cache_speedup_incl_build_1_epoch": med["edgekd_live"] / (med["edgekd_cached"] + cache_s),
            "min_s": {k: min(v) for k, v in runs.items()},
            "edgekd_over_bare_live_min": min(runs["edgekd_live"]) / min(runs["bare_live"]),
            "edgekd_over_bare_cached_min": min(runs["edgekd_cached"]) / min(runs["bare_cached"]),
            "cache_speedup_per_epoch_min": min(runs["edgekd_live"]) / min(runs["edgekd_cached"]),
            "note": "edgekd epoch = Trainer.run_phase with make_step and evaluate=lambda: 0.0 (no validation), "
                    "including its per-epoch checkpoint; augment none; teacher = fine-tuned ResNet-56 "
                    f"({a.distill_teacher}); student ResNet-20 from the same seed."})


# ----------------------------------------------------------------------------------------------- report
def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def load_parts(results: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}


def render(parts: dict, args: argparse.Namespace) -> str:
    qad = parts.get("qad")
    parts = {k: parts[k] for k in ("transfer", "distill", "timing") if k in parts}
    any_part = next(iter(parts.values()), {})
    mach = any_part.get("machine", {})
    a = any_part.get("args", {})
    lines = [f"<!-- {SECTION}:start -->", "## bench_transfer_distill.py (issue 3): transfer, distillation, timing", ""]
    loads = [p["machine"]["load_avg_at_start"] for p in parts.values()]
    lines += [f"Machine: {mach.get('cpu')}, {mach.get('cores')} cores shared with 3-4 other engineers' jobs "
              f"(1-min load average {min(loads):.1f}-{max(loads):.1f} when the parts started), torch {mach.get('torch')} CPU, "
              f"{mach.get('torch_threads')} torch thread(s) per process. Data: {any_part.get('data')}.", ""]
    lines += ["Commands (one process per part; the parts share the run folder):", "```"]
    for name, part in parts.items():
        pa = part["args"]
        flags = {"transfer": ["train_per_class", "test_per_class", "finetune_epochs", "finetune_lr", "modes"],
                 "distill": ["train_per_class", "test_per_class", "finetune_epochs", "distill_epochs",
                             "pretrained_epochs", "variants", "pretrained_variants"],
                 "timing": ["train_per_class", "test_per_class", "finetune_epochs", "timing_per_class",
                            "timing_rounds"]}[name]
        opts = " ".join(f"--{f.replace('_', '-')} {pa[f]}" for f in flags)
        lines.append(f"python bench/bench_transfer_distill.py --data-tar ../shared/data/cifar10-jpeg "
                     f"--models ../shared/models/cifar10-resnet --work /tmp/edgekd-bench --parts {name} {opts}")
    lines += ["python bench/bench_transfer_distill.py ... --parts report --results-md bench/RESULTS.md", "```", ""]
    a = parts.get("distill", any_part).get("args", a)
    sub = (f"SUBSET: {a.get('train_per_class')} train images/class ({10 * int(a.get('train_per_class', 0))} of 50,000), "
           f"first {a.get('test_per_class')} test images/class ({10 * int(a.get('test_per_class', 0))} of 10,000)")
    tr = parts.get("transfer")
    if tr:
        lines += ["### Teacher transfer (ResNet-56, akamaster CIFAR-10 weights -> CIFAR-10-JPEG)", "",
                  f"{sub}; batch {tr['batch_size']}, SGD lr {tr['finetune_lr']} cosine, augment crop_flip, "
                  f"{a.get('finetune_epochs')} epochs in total per mode (hybrid: 1 probe epoch + the rest full). "
                  "Top-1 on the test subset; best epoch kept (selected on that same subset, as the finetune stage "
                  "does). Target: >= 91.2% (recover >= 8 of the 10 points the JPEG shift costs).", "",
                  "| mode | top-1 before | top-1 after | gain (points) | best epoch | stage wall | epochs (val top-1, s) |",
                  "|---|---|---|---|---|---|---|"]
        for r in tr["rows"]:
            gain = "-" if r["top1_before"] is None else f"{100 * (r['top1_after'] - r['top1_before']):+.2f}"
            hist = "; ".join(f"{h['phase']}{h['epoch']} {pct(h['val_top1'])} {h['epoch_s']:.0f}s" for h in r["history"])
            lines.append(f"| {r['mode']} | {pct(r['top1_before'])} | {pct(r['top1_after'])} | {gain} | "
                         f"{r['best_epoch']} | {r['stage_wall_s']:.0f} s | {hist} |")
        best = max(tr["rows"], key=lambda r: r["top1_after"])
        lines += ["", f"Best: {best['mode']} {pct(best['top1_after'])} "
                      f"({'reached' if best['top1_after'] >= 0.912 else 'NOT reached'}: target 91.2%, measured on the subset "
                      f"with {a.get('finetune_epochs')} epochs on {10 * int(a.get('train_per_class', 0))} training images; "
                      "the full-mode curve was still rising at the last epoch). Before transfer the subset gives "
                      f"{pct(best['top1_before'])} (SOURCE.md: 83.20% on all 10,000).", ""]
        if qad:
            t = qad["accuracy_openvino"]["teacher_fp32"]
            lines += [f"The fine-tuned `{parts.get('distill', {}).get('teacher_mode', 'full')}` teacher on the whole test "
                      f"split (its OpenVINO FP32 export, bench_qad.py): {pct(t['full_10k'])} on all 10,000 images, "
                      f"{pct(t['held_out'])} on the 8,000 never used for epoch selection: "
                      f"{100 * (t['full_10k'] - JPEG_BASELINE['resnet56']):+.2f} points over 83.20%.", ""]
    di = parts.get("distill")
    if di:
        chk = di["alpha0_check"]
        lines += ["### Student distillation (ResNet-20; teacher: the fine-tuned ResNet-56 of mode "
                  f"`{di['teacher_mode']}`)", "",
                  f"{sub}; batch {a.get('batch_size')}, augment none (so KD can use cached teacher logits; the same "
                  "for every variant), seed 0 for all, SGD cosine. CE = alpha 0; KD = alpha 0.9, T 4; KD+AT adds "
                  "attention transfer layer3:layer3 (beta 1000). `scratch` = randomly initialised student (the honest "
                  "KD test); `pretrained` = backbone from resnet20-12fca82f.th; edgekd's distill stage loads student "
                  "weights with skip_head=True, so the checkpoint's 10-class head is re-initialised although the "
                  "classes match (its 81.03% JPEG top-1 is not the starting point).", "",
                  f"alpha=0 check: |kd_loss(alpha=0) - F.cross_entropy| = {chk['kd_loss_alpha0_minus_ce']:.1e}, "
                  f"max |grad diff| = {chk['grad_max_abs_diff']:.1e} -> pure CE: {chk['pure_ce']}.", "",
                  "| init | loss | epochs | lr | student top-1 | teacher top-1 | gap (points) | teacher cached | stage wall |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in di["rows"]:
            lines.append(f"| {r['init']} | {r['variant']} | {r['epochs']} | {r['lr']} | {pct(r['student_top1'])} | "
                         f"{pct(r['teacher_top1'])} | {100 * (r['teacher_top1'] - r['student_top1']):.2f} | "
                         f"{r['teacher_cached']} | {r['stage_wall_s']:.0f} s |")
        by = {(r["init"], r["variant"]): r for r in di["rows"]}
        lines.append("")
        for init in ("scratch", "pretrained"):
            if (init, "ce") in by and (init, "kd") in by:
                d = 100 * (by[(init, "kd")]["student_top1"] - by[(init, "ce")]["student_top1"])
                lines.append(f"- {init}: KD - CE = {d:+.2f} points (target >= +0.5: {'reached' if d >= 0.5 else 'NOT reached'})"
                             + (f"; KD+AT - KD = {100 * (by[(init, 'kd_at')]['student_top1'] - by[(init, 'kd')]['student_top1']):+.2f}"
                                if (init, "kd_at") in by else ""))
        best = max(di["rows"], key=lambda r: r["student_top1"])
        gap = 100 * (best["teacher_top1"] - best["student_top1"])
        lines += [f"- best student: {best['init']} {best['variant']} {pct(best['student_top1'])}, "
                  f"{gap:.2f} points below the teacher (target <= 1.0: {'reached' if gap <= 1.0 else 'NOT reached'}).", ""]
    ti = parts.get("timing")
    if ti:
        m = ti["median_s"]
        lines += ["### Distill epoch timing (one process, interleaved rounds)", "",
                  f"{ti['images']} training images (SUBSET, {ti['images'] // 10}/class), batch {ti['batch_size']}, "
                  f"1 epoch per measurement, {ti['rounds']} round(s), median shown. {ti['note']}", "",
                  "| loop | teacher | epoch s (median) | epoch s (min) | all rounds (s) |", "|---|---|---|---|---|"]
        for k, label in (("edgekd_live", ("edgekd Trainer", "live")), ("bare_live", ("bare PyTorch", "live")),
                         ("edgekd_cached", ("edgekd Trainer", "cached logits")), ("bare_cached", ("bare PyTorch", "cached logits"))):
            lines.append(f"| {label[0]} | {label[1]} | {m[k]:.2f} | {min(ti['runs_s'][k]):.2f} | "
                         f"{', '.join(f'{v:.2f}' for v in ti['runs_s'][k])} |")
        lines += ["", f"- edgekd / bare, live teacher: {ti['edgekd_over_bare_live']:.3f}x; cached: "
                      f"{ti['edgekd_over_bare_cached']:.3f}x (target <= 1.10x: "
                      f"{'reached' if max(ti['edgekd_over_bare_live'], ti['edgekd_over_bare_cached']) <= 1.10 else 'NOT reached'}).",
                  f"- on the fastest (least disturbed) round of each: edgekd / bare {ti['edgekd_over_bare_live_min']:.3f}x live, "
                  f"{ti['edgekd_over_bare_cached_min']:.3f}x cached; caching {ti['cache_speedup_per_epoch_min']:.2f}x.",
                  f"- caching: {ti['cache_speedup_per_epoch']:.2f}x faster per epoch (median; target >= 1.8x: "
                  f"{'reached' if ti['cache_speedup_per_epoch'] >= 1.8 else 'NOT reached'}); the one-time cache "
                  f"build took {ti['cache_build_s']:.1f} s ({ti['cache_speedup_incl_build_1_epoch']:.2f}x for a single "
                  "epoch including the build).", ""]
        earlier = sorted(Path(args.work).glob("timing-run*.json"))
        if earlier:
            lines.append("Earlier timing runs (kept for honesty; each was run while other jobs, including this bench's own "
                         "qad process for run 2, loaded the 2 cores, which the spread of their rounds shows):")
            for f in earlier:
                e = json.loads(f.read_text())
                lines.append(f"- {f.stem}: {e['images']} images, {e['rounds']} rounds, load {e['machine']['load_avg_at_start']:.1f}: "
                             f"edgekd/bare live {e['edgekd_over_bare_live']:.2f}x, cached {e['edgekd_over_bare_cached']:.2f}x, "
                             f"caching {e['cache_speedup_per_epoch']:.2f}x (median); rounds {e['runs_s']['edgekd_live']} / "
                             f"{e['runs_s']['bare_live']} s.")
            lines.append("")
    lines += ["### Notes", "",
              "- Compute: the 2 cores ran 4-6 other processes (load average 7-15) during these runs. Measured before "
              "the runs under that load: ResNet-56 training 9.5 img/s with 2 torch threads vs 24.8 img/s with 1 "
              "thread (eval 30 vs 90 img/s); ResNet-20 22 vs 79 img/s. Oversubscribed OpenMP threads wait on each "
              "other, so every process here used 1 thread and at most two of this bench's processes ran at once.",
              "- Why subsets: at ~25 img/s one full-CIFAR (50k) ResNet-56 epoch is ~35 min on this shared machine; "
              "all training numbers above are on the stated subset and epochs and are not full-data results. The "
              "test-subset top-1 has a binomial standard error of ~0.7 points at 87% on 2,000 images.", ""]
    done = ", ".join(f"{k} finished {v.get('finished')}" for k, v in parts.items())
    lines += [f"Parts: {done}.", "",
              f"<!-- {SECTION}:end -->"]
    return "\n".join(lines)


def write_section(md: Path, section: str, text: str) -> None:
    old = md.read_text() if md.is_file() else "# Bench results\n"
    pattern = re.compile(rf"<!-- {section}:start -->.*?<!-- {section}:end -->", re.S)
    new = pattern.sub(lambda _m: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text + "\n"
    md.write_text(new)


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    t0 = time.perf_counter()
    if set(parts) - {"report"}:
        b = Bench(args)
        log(f"data ready in {b.data_load_s:.1f}s: {b.data.description}")
        for part in parts:
            if part != "report":
                t = time.perf_counter()
                {"transfer": part_transfer, "distill": part_distill, "timing": part_timing}[part](b)
                log(f"part {part} took {time.perf_counter() - t:.0f}s")
    if "report" in parts:
        text = render(load_parts(args.work / "results"), args)
        if args.results_md:
            write_section(args.results_md, SECTION, text)
            log(f"wrote section {SECTION} into {args.results_md}")
        else:
            print(text)
    log(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
