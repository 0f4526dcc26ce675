"""How good is `edgekd gate` on this machine? False alarms (A/A), detection of a real ~15% slowdown, wall time.

    python bench/bench_gate_quality.py [--runs 100] [--target intel-cpu] [--rounds 30] [--runs-per-round 20]

Models (real, exported with torch to ONNX and converted to OpenVINO IR FP32, random weights: latency does
not depend on the values): a CIFAR ResNet-20 (3 basic blocks per stage, 16/32/64 channels, 32x32) as the
baseline, and deeper variants of the same model (one more block in a stage). Each variant's true slowdown
is measured first with long interleaved runs; the one closest to 1.15x is the candidate. Then:

- A/A: the baseline against itself, N gate runs -> false-alarm rate (latency verdict "fail");
- detection: baseline vs the calibrated variant, N gate runs -> detection rate (latency verdict "fail");
- wall time of one gate run (in-process: load both models, accuracy-free, measure, decide) and of one
  `edgekd gate` CLI process (imports included).

The verdict counted is the latency comparison's (`stats.verdict`): budget checks are absolute and separate.
Appends/replaces its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime_overhead import machine, write_section  # noqa: E402

NAME = "bench_gate_quality"


def resnet(blocks: tuple[int, int, int]):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):  # noqa: ANN001, ANN201
            return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.short(x))

    layers, cin = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()], 16
    for stage, (n, cout) in enumerate(zip(blocks, (16, 32, 64))):
        for i in range(n):
            layers.append(Block(cin, cout, 2 if stage > 0 and i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).eval()


def export_ir(blocks: tuple[int, int, int], out: Path) -> Path:
    import openvino as ov
    import torch

    torch.manual_seed(0)
    onnx = out / f"resnet_{'-'.join(map(str, blocks))}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(resnet(blocks), torch.randn(1, 3, 32, 32), str(onnx), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}}, opset_version=17)
    xml = onnx.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx)), str(xml), compress_to_fp16=False)
    return xml


def true_ratio(base: Path, variant: Path, target, repeats: int = 3) -> float:
    """Median over `repeats` long interleaved measurements of median(B rounds) / median(A rounds)."""
    from edgekd.benchmark import settings_for
    from edgekd.gate import interleaved_samples
    from edgekd.runtimes import get_runtime

    rt = get_runtime(target.runtime.name)
    sa, sb = rt.load(base, settings_for(target, "fp32")), rt.load(variant, settings_for(target, "fp32"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ratios = []
    for r in range(repeats):
        s = interleaved_samples(lambda: sa.infer(x), lambda: sb.infer(x), rounds=60, runs_per_round=30, seed=r)
        ratios.append(float(np.median(s.round_medians_b_ms) / np.median(s.round_medians_a_ms)))
    return float(np.median(ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--target", default="intel-cpu")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--runs-per-round", type=int, default=20)
    args = ap.parse_args()
    from edgekd.cli.gate_cmd import run_gate
    from edgekd.gate import GateConfig
    from edgekd.targets import load_target

    t_all = time.perf_counter()
    target = load_target(args.target)
    work = Path(tempfile.mkdtemp(prefix="gate-quality-"))
    base = export_ir((3, 3, 3), work)
    variants = {b: export_ir(b, work) for b in ((3, 3, 4), (4, 3, 3), (3, 4, 3))}
    ratios = {b: true_ratio(base, p, target) for b, p in variants.items()}
    for b, r in ratios.items():
        print(f"variant blocks {b}: measured true ratio {r:.3f}")
    pick = min(ratios, key=lambda b: abs(ratios[b] - 1.15))
    slow = variants[pick]
    cfg = GateConfig(rounds=args.rounds, runs_per_round=args.runs_per_round)

    def campaign(candidate: Path, label: str) -> dict:
        verdicts, overall, est, walls = Counter(), Counter(), [], []
        for i in range(args.runs):
            t0 = time.perf_counter()
            result, ctx, _ = run_gate(base, candidate, args.target, cfg.model_copy(update={"seed": i}))
            walls.append(time.perf_counter() - t0)
            verdicts[result.stats.verdict] += 1
            overall[result.verdict] += 1
            est.append(result.stats.ratio)
            if (i + 1) % 10 == 0:
                print(f"{label}: {i + 1}/{args.runs} latency verdicts {dict(verdicts)}", flush=True)
        return {"verdicts": verdicts, "overall": overall, "ratio_median": float(np.median(est)),
                "ratio_p5_p95": np.percentile(est, [5, 95]).tolist(), "wall_median": float(np.median(walls)),
                "wall_max": float(np.max(walls))}

    aa = campaign(base, "A/A")
    ab = campaign(slow, "slower")
    t0 = time.perf_counter()
    cli = subprocess.run([str(Path(sys.executable).with_name("edgekd")), "gate", "--baseline", str(base),
                          "--candidate", str(slow), "--target", args.target, "--json"], capture_output=True)
    cli_wall = time.perf_counter() - t0
    n = args.runs
    fa, det = aa["verdicts"]["fail"] / n, ab["verdicts"]["fail"] / n

    def counts(c: Counter) -> str:
        return ", ".join(f"{k} {c.get(k, 0)}" for k in ("pass", "fail", "inconclusive"))

    lines = [
        "## Gate quality: false alarms, detection of a real 15% slowdown, wall time",
        "",
        f"- command: `python bench/bench_gate_quality.py --runs {n} --target {args.target} --rounds {args.rounds} "
        f"--runs-per-round {args.runs_per_round}`",
        f"- date: {dt.datetime.now().isoformat(timespec='minutes')}; total wall {time.perf_counter() - t_all:.0f} s",
        f"- machine: {machine()}",
        f"- target {target.name}: {target.runtime.name} {target.runtime.device}, {target.runtime.threads} threads; "
        "models: CIFAR ResNet-20 (blocks 3,3,3; FP32 IR, 32x32, batch 1) vs deeper variants of it",
        "- true slowdown of each variant (median of 3 long interleaved runs, 60 rounds x 30 calls): "
        + ", ".join(f"blocks {b}: {r:.3f}x" for b, r in ratios.items()) + f"; candidate: blocks {pick} "
        f"(measured true ratio **{ratios[pick]:.3f}**)",
        f"- gate config: threshold 10%, alpha 0.002, {args.rounds} rounds x {args.runs_per_round} calls per arm, "
        "one automatic rerun when noisy; N = {n} gate runs per campaign".replace("{n}", str(n)),
        "",
        "| campaign | N | latency verdicts (pass / fail / inconclusive) | rate | target | gate's B/A estimate, median [p5, p95] |",
        "|---|---|---|---|---|---|",
        f"| A/A (same IR both sides) | {n} | {counts(aa['verdicts'])} | false alarms {fa:.1%} | <= 1% | "
        f"{aa['ratio_median']:.3f} [{aa['ratio_p5_p95'][0]:.3f}, {aa['ratio_p5_p95'][1]:.3f}] |",
        f"| real slowdown ({ratios[pick]:.2f}x) | {n} | {counts(ab['verdicts'])} | detected {det:.1%} | >= 95% | "
        f"{ab['ratio_median']:.3f} [{ab['ratio_p5_p95'][0]:.3f}, {ab['ratio_p5_p95'][1]:.3f}] |",
        "",
        f"Overall gate verdicts incl. the absolute checks (latency budget {target.budgets.latency_percentile} <= "
        f"{target.budgets.latency_ms} ms, size, memory): A/A {counts(aa['overall'])}; slower "
        f"{counts(ab['overall'])}.",
        "",
        f"Wall time of one gate run (in-process, load + measure + decide): median {aa['wall_median']:.1f} s "
        f"(A/A), {ab['wall_median']:.1f} s (slower); max {max(aa['wall_max'], ab['wall_max']):.1f} s. One "
        f"`edgekd gate` CLI process (imports included): {cli_wall:.1f} s (exit {cli.returncode}). Target: < 60 s.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(body, NAME)


if __name__ == "__main__":
    main()
