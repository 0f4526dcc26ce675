"""Should the squeeze-excitation (SE) convolutions of a MobileNetV3 student be quantized on OpenVINO CPU?

    python bench/bench_se_quant.py [--arch mobilenet_v3_small_050] [--epochs 15] [--threads 1] [--rounds 40]

NNCF keeps the two 1x1 convolutions of every SE block in floating point unless told otherwise (its SE_BLOCK
ignored pattern, nncf/torch/quantization/ignored_patterns.py; edgekd.models.family.expected_float_layers names
them). This
script builds the same student three ways and measures them against each other on OpenVINO CPU:

- FP32: the trained student, exported to ONNX and compiled to IR as the compile stage does;
- INT8-SE-float: edgekd.quant.quantize as the qad stage calls it for OpenVINO targets (preset 'mixed') with
  `QuantSpec(quantize_se_blocks=False)`: NNCF's own choice, the SE convolutions in float (edgekd's default
  until this measurement);
- INT8-all: the same call with `quantize_se_blocks=True` (edgekd.quant.se_blocks removes NNCF's SE_BLOCK
  ignored pattern for that call: there is no public switch), so the SE convolutions are quantized too.

Weights: the student is trained here from scratch on labels (cross-entropy), or with `--teacher ARCH` distilled
(Hinton KD, T=4, alpha 0.9) from that model trained here first on labels for the same epochs; data:
`--data digits` (scikit-learn's digits, 8x8 grey bilinearly upscaled to 32x32, a stratified 60/20/20
train/val/test split) or `--data cifar` (a tiny CIFAR-10-JPEG subset: 400 train and 100 val images per class
from its train set, 200 test images per class from its test set); calibration on 300 train images. Accuracy
of each IR is measured with OpenVINO on val and test.
Latency: edgekd.benchmark.paired_speedup (the gate's interleaved sampler, Hodges-Lehmann of per-round ratios,
bootstrap 95% CI) at batch 1, for each pair, with `--threads` OpenVINO threads, LATENCY hint.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def digits(size: int = 32):
    """(x, y) for train / val / test: digits upscaled to `size`, normalised, stratified 60/20/20 (seed 0)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    y = torch.tensor(d.target)
    idx = np.arange(len(y))
    tr, rest = train_test_split(idx, test_size=0.4, stratify=d.target, random_state=0)
    va, te = train_test_split(rest, test_size=0.5, stratify=d.target[rest], random_state=0)
    return {k: (x[i], y[i]) for k, i in (("train", tr), ("val", va), ("test", te))}


def cifar(root: Path, train_per_class: int = 400, val_per_class: int = 100, test_per_class: int = 200):
    """A tiny CIFAR-10-JPEG subset read from its tarballs: the first `train_per_class` + `val_per_class` images
    of each class of train/ (train, val), the first `test_per_class` of each class of test/; 32x32 RGB."""
    import io
    import tarfile

    import numpy as np
    import torch
    from PIL import Image

    def read(tar: Path, quotas: list[int]):
        split_x, split_y, seen = [[] for _ in quotas], [[] for _ in quotas], {}
        with tarfile.open(tar) as tf:
            for m in tf:
                if not m.isfile() or not m.name.endswith(".jpg"):
                    continue
                cls = m.name.split("/")[-2]
                k = seen.get(cls, 0)
                seen[cls] = k + 1
                bounds = np.cumsum(quotas)
                which = int(np.searchsorted(bounds, k, side="right"))
                if which >= len(quotas):
                    continue
                img = np.asarray(Image.open(io.BytesIO(tf.extractfile(m).read())).convert("RGB"), np.float32)
                split_x[which].append(img)
                split_y[which].append(cls)
        names = sorted(seen)
        return [(torch.tensor(np.stack(x)).permute(0, 3, 1, 2) / 255.0,
                 torch.tensor([names.index(c) for c in y])) for x, y in zip(split_x, split_y)]

    (xtr, ytr), (xva, yva) = read(root / "train.tar.gz", [train_per_class, val_per_class])
    [(xte, yte)] = read(root / "test.tar.gz", [test_per_class])
    mean, std = xtr.mean((0, 2, 3), keepdim=True), xtr.std((0, 2, 3), keepdim=True)
    return {k: ((x - mean) / std, y) for k, x, y in (("train", xtr, ytr), ("val", xva, yva), ("test", xte, yte))}


def train(model, data, epochs: int, seed: int = 0, teacher=None):
    """AdamW + one-cycle, batch 64; with a `teacher`: Hinton KD (edgekd.losses.kd_loss, T=4, alpha 0.9)."""
    import torch

    from edgekd.losses.kd import kd_loss

    torch.manual_seed(seed)
    x, y = data["train"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            b = perm[i:i + 64]
            out = model(x[b])
            if teacher is None:
                loss = torch.nn.functional.cross_entropy(out, y[b])
            else:
                with torch.no_grad():
                    t = teacher(x[b])
                loss = kd_loss(out, t, y[b], temperature=4.0, alpha=0.9)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def top1(session, x, y) -> float:
    import numpy as np

    logits = np.concatenate([session.infer(x[i:i + 64]) for i in range(0, len(x), 64)])
    return float((logits.argmax(1) == y).mean())


def heavy_layers(session) -> str:
    """Heavy layers (conv / FC) by the precision the CPU plugin ran them in."""
    lp = session.layer_precisions()
    heavy = ", ".join(f"{p} {n}" for p, n in sorted(lp["heavy_counts"].items()))
    dw = lp["by_type"].get("GroupConvolution", {})
    return heavy + (f" (depthwise: {', '.join(f'{p} {n}' for p, n in sorted(dw.items()))})" if dw else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="mobilenet_v3_small_050")
    ap.add_argument("--data", choices=("digits", "cifar"), default="digits")
    ap.add_argument("--cifar-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--teacher", help="distil the student from this registry model, trained here first on labels")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--runs-per-round", type=int, default=25)
    args = ap.parse_args()
    import numpy as np
    import torch

    from edgekd.benchmark import paired_speedup
    from edgekd.export import export_onnx
    from edgekd.models.family import expected_float_layers
    from edgekd.models.registry import build_model
    from edgekd.quant import QuantSpec, export_openvino_ir, quantize
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings

    torch.set_num_threads(args.threads)
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs; load avg at start {os.getloadavg()[0]:.2f}")
    t0 = time.time()
    data = digits() if args.data == "digits" else cifar(args.cifar_root)
    model = build_model(args.arch, 10, data["train"][0].shape[1], input_size=32)
    teacher = None
    if args.teacher:
        teacher = train(build_model(args.teacher, 10, data["train"][0].shape[1], input_size=32), data, args.epochs)
        with torch.no_grad():
            t_top1 = float((teacher(data["val"][0]).argmax(1) == data["val"][1]).float().mean())
        print(f"teacher {args.teacher}: val top-1 {t_top1:.2%} after {args.epochs} epochs ({time.time() - t0:.0f} s)")
    model = train(model, data, args.epochs, teacher=teacher)
    n_se = len(expected_float_layers(model, se_quantized=False))
    print(f"{args.arch}: {n_se} SE convolutions; trained {args.epochs} epochs on "
          f"{len(data['train'][0])} {args.data} images in {time.time() - t0:.0f} s")
    calib = [data["train"][0][:300]]
    example = data["train"][0][:1]
    spec = QuantSpec(preset="mixed", subset_size=300)
    ov = get_runtime("openvino")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32_onnx = Path(export_onnx(model, work / "fp32.onnx", example)["path"])
        paths = {"FP32": ov.compile(fp32_onnx, work / "ir32", RuntimeSettings(device="CPU")).path}
        q_float = quantize(model, calib, spec.model_copy(update={"quantize_se_blocks": False}), example)
        q_all = quantize(model, calib, spec.model_copy(update={"quantize_se_blocks": True}), example)
        for name, q in (("INT8-SE-float", q_float), ("INT8-all", q_all)):
            facts = export_openvino_ir(q, work / f"{name}.xml", example)
            paths[name] = Path(facts["xml"])
            rows[name] = {"fake_quantize": facts["fake_quantize"]}
        rows["FP32"] = {"fake_quantize": 0}
        settings = {n: RuntimeSettings(device="CPU", precision="int8" if n != "FP32" else "fp32",
                                       threads=args.threads, streams=1, performance_hint="LATENCY")
                    for n in paths}
        for name, p in paths.items():
            s = ov.load(p, settings[name])
            for split in ("val", "test"):
                x, y = data[split]
                rows[name][split] = top1(s, np.ascontiguousarray(x.numpy()), y.numpy())
            rows[name]["layers"] = heavy_layers(s)
        x1 = np.ascontiguousarray(data["test"][0][:1].numpy())
        pairs = {}
        for a, b in (("FP32", "INT8-SE-float"), ("FP32", "INT8-all"), ("INT8-SE-float", "INT8-all")):
            pairs[(a, b)] = paired_speedup((paths[a], settings[a], None), (paths[b], settings[b], None), "openvino",
                                           x1, rounds=args.rounds, runs_per_round=args.runs_per_round)
            print(f"  measured {b} vs {a}; load avg {os.getloadavg()[0]:.2f}", flush=True)
    n_val, n_test = len(data["val"][1]), len(data["test"][1])
    print(f"\n| model | FakeQuantize | heavy layers ran in | val top-1 ({n_val}) | test top-1 ({n_test}) |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['fake_quantize']} | {r['layers']} | {r['val']:.2%} | {r['test']:.2%} |")
    print("\n| B vs A (batch 1) | speed-up of B (A latency / B latency) | 95% CI |\n|---|---|---|")
    for (a, b), p in pairs.items():
        lo, hi = p["speedup_ci95"]
        print(f"| {b} vs {a} | {p['speedup']:.3f}x | {lo:.3f}-{hi:.3f} |")
    print(f"\nmethod: {next(iter(pairs.values()))['method']}")
    print(f"wall {time.time() - t0:.0f} s; load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
