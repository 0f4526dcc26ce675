"""How good is `edgekd gate` on this machine? False alarms (A/A), detection of a real ~15% slowdown, wall time.

    python bench/bench_gate_quality.py [--runs 100] [--target intel-cpu] [--rounds 60] [--runs-per-round 40]

Models (real, exported with torch to ONNX and converted to OpenVINO IR FP32, random weights: latency does
not depend on the values): a CIFAR ResNet-20 (3 basic blocks per stage, 16/32/64 channels, 32x32) as the
baseline, and wider or deeper variants of the same model. Each variant's true slowdown is measured first
(median per-round ratio of 3 long interleaved runs). The candidate is fixed in advance (`--candidate`,
default the variant with a 36-channel stage 2, which measured 1.15-1.19x on this machine; picking the
variant per run by its measured ratio would let the selection ride on noise). Then, alternating:

- A/A: the baseline against itself, N gate runs -> false-alarm rate (latency verdict "fail");
- detection: baseline vs the candidate, N gate runs -> detection rate (latency verdict "fail");
- wall time of one gate run (in-process: load both models, accuracy-free, measure, decide) and of one
  `edgekd gate` CLI process (imports included).

The verdict counted is the latency comparison's (`stats.verdict`): budget checks are absolute and separate.
`--save FILE.npz` keeps the per-round medians each verdict came from. Replaces its section of bench/RESULTS.md.
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


def resnet(blocks: tuple[int, int, int], widths: tuple[int, int, int] = (16, 32, 64)):
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
    layers[0], layers[1], cin = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), widths[0]
    for stage, (n, cout) in enumerate(zip(blocks, widths)):
        for i in range(n):
            layers.append(Block(cin, cout, 2 if stage > 0 and i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10)).eval()


def export_ir(blocks: tuple[int, int, int], out: Path, widths: tuple[int, int, int] = (16, 32, 64)) -> Path:
    import openvino as ov
    import torch

    torch.manual_seed(0)
    onnx = out / f"resnet_{'-'.join(map(str, blocks))}_w{'-'.join(map(str, widths))}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(resnet(blocks, widths), torch.randn(1, 3, 32, 32), str(onnx), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}}, opset_version=17)
    xml = onnx.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx)), str(xml), compress_to_fp16=False)
    return xml


VARIANTS = (((3, 3, 3), (16, 36, 64)), ((3, 3, 3), (16, 32, 72)), ((3, 3, 4), (16, 32, 64)),
            ((3, 3, 3), (16, 40, 64)))


def true_ratio(base: Path, variant: Path, target, repeats: int = 3) -> float:
    """Median over `repeats` long interleaved runs of the median per-round ratio B_r / A_r."""
    from edgekd.benchmark import settings_for
    from edgekd.gate import interleaved_samples
    from edgekd.runtimes import get_runtime

    rt = get_runtime(target.runtime.name)
    sa, sb = rt.load(base, settings_for(target, "fp32")), rt.load(variant, settings_for(target, "fp32"))
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    ratios = []
    for r in range(repeats):
        s = interleaved_samples(lambda: sa.infer(x), lambda: sb.infer(x), rounds=60, runs_per_round=40, seed=r)
        ratios.append(float(np.median(s.round_medians_b_ms / s.round_medians_a_ms)))
    return float(np.median(ratios))


def label(spec) -> str:
    blocks, widths = spec
    return f"blocks {','.join(map(str, blocks))} widths {','.join(map(str, widths))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--target", default="intel-cpu")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--runs-per-round", type=int, default=40)
    ap.add_argument("--candidate", type=int, default=0, choices=range(len(VARIANTS)),
                    help="index into VARIANTS: " + "; ".join(f"{i}: {label(v)}" for i, v in enumerate(VARIANTS)))
    ap.add_argument("--save", type=Path, help="write the per-round medians behind each verdict here (.npz)")
    args = ap.parse_args()
    from edgekd.cli.gate_cmd import run_gate
    from edgekd.gate import GateConfig, compare
    from edgekd.targets import load_target

    t_all = time.perf_counter()
    target = load_target(args.target)
    load_at_start = machine()
    work = Path(tempfile.mkdtemp(prefix="gate-quality-"))
    base = export_ir((3, 3, 3), work)
    variants = {spec: export_ir(spec[0], work, spec[1]) for spec in VARIANTS}
    ratios = {spec: true_ratio(base, p, target) for spec, p in variants.items()}
    for spec, r in ratios.items():
        print(f"variant {label(spec)}: measured true ratio {r:.3f}", flush=True)
    pick = VARIANTS[args.candidate]
    slow = variants[pick]
    cfg = GateConfig(rounds=args.rounds, runs_per_round=args.runs_per_round)
    camps = {name: {"verdicts": Counter(), "overall": Counter(), "ratio": [], "spread": [], "wall": [],
                    "attempts": Counter(), "rounds_a": [], "rounds_b": []} for name in ("aa", "slow")}
    for i in range(args.runs):  # alternate the campaigns so that both meet the same machine conditions
        for name, candidate in (("aa", base), ("slow", slow)):
            c = camps[name]
            t0 = time.perf_counter()
            result, _, samples = run_gate(base, candidate, args.target, cfg.model_copy(update={"seed": i}))
            c["wall"].append(time.perf_counter() - t0)
            c["verdicts"][result.stats.verdict] += 1
            c["overall"][result.verdict] += 1
            c["attempts"][result.stats.attempts] += 1
            c["ratio"].append(result.stats.ratio)
            c["spread"].append(result.stats.spread_paired)
            c["rounds_a"].append(samples.round_medians_a_ms)
            c["rounds_b"].append(samples.round_medians_b_ms)
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{args.runs}: A/A {dict(camps['aa']['verdicts'])}, slower {dict(camps['slow']['verdicts'])}",
                  flush=True)
    aa, ab = camps["aa"], camps["slow"]
    if args.save:
        np.savez_compressed(args.save, **{f"{n}_{k}": np.array(c[k], dtype=np.float32)
                                          for n, c in camps.items() for k in ("rounds_a", "rounds_b")})
    # the A/A runs' real noise with the candidate arm made exactly 15% slower: the issue's number, exactly
    exact = Counter(compare(a, b * 1.15, cfg).verdict for a, b in zip(aa["rounds_a"], aa["rounds_b"]))
    t0 = time.perf_counter()
    cli = subprocess.run([str(Path(sys.executable).with_name("edgekd")), "gate", "--baseline", str(base),
                          "--candidate", str(slow), "--target", args.target, "--json"], capture_output=True)
    cli_wall = time.perf_counter() - t0
    n = args.runs
    fa, det = aa["verdicts"]["fail"] / n, ab["verdicts"]["fail"] / n

    def counts(c: Counter) -> str:
        return ", ".join(f"{k} {c.get(k, 0)}" for k in ("pass", "fail", "inconclusive"))

    def dist(x: list) -> str:
        return f"{np.median(x):.3f} [{np.percentile(x, 5):.3f}, {np.percentile(x, 95):.3f}]"

    lines = [
        "## Gate quality: false alarms, detection of a real 15% slowdown, wall time",
        "",
        f"- command: `python bench/bench_gate_quality.py --runs {n} --target {args.target} --rounds {args.rounds} "
        f"--runs-per-round {args.runs_per_round} --candidate {args.candidate}`",
        f"- date: {dt.datetime.now().isoformat(timespec='minutes')}; total wall {time.perf_counter() - t_all:.0f} s",
        f"- machine: {load_at_start}",
        f"- target {target.name}: {target.runtime.name} {target.runtime.device}, {target.runtime.threads} threads; "
        "models: CIFAR ResNet-20 (blocks 3,3,3, widths 16,32,64; FP32 IR, 32x32, batch 1) vs wider/deeper variants",
        "- true slowdown of each variant (median per-round ratio, median of 3 interleaved runs of 60 rounds x 40 "
        "calls): " + "; ".join(f"{label(k)}: {r:.3f}x" for k, r in ratios.items())
        + f". Candidate (fixed in advance): {label(pick)}, measured true ratio **{ratios[pick]:.3f}**",
        f"- gate config: defaults (paired by round, Wilcoxon signed-rank, threshold 10%, alpha 0.002, "
        f"{args.rounds} rounds x {args.runs_per_round} calls per arm, one automatic rerun when noisy); N = {n} gate "
        "runs per campaign, the two campaigns alternating",
        "",
        "| campaign | N | latency verdicts (pass / fail / inconclusive) | rate | target | gate's B/A estimate, "
        "median [p5, p95] | spread of per-round B/A, median [p5, p95] | reruns |",
        "|---|---|---|---|---|---|---|---|",
        f"| A/A (same IR both sides) | {n} | {counts(aa['verdicts'])} | false alarms {fa:.1%} | <= 1% | "
        f"{dist(aa['ratio'])} | {dist(aa['spread'])} | {n - aa['attempts'][1]} |",
        f"| real slowdown ({ratios[pick]:.3f}x) | {n} | {counts(ab['verdicts'])} | detected {det:.1%} | >= 95% | "
        f"{dist(ab['ratio'])} | {dist(ab['spread'])} | {n - ab['attempts'][1]} |",
        f"| the A/A runs' per-round medians with the candidate arm x 1.15 (real noise, exact 15%; compared once, "
        f"no rerun) | {n} | "
        f"{counts(exact)} | detected {exact['fail'] / n:.1%} | >= 95% | - | - | - |",
        "",
        f"Overall gate verdicts incl. the absolute checks (latency budget {target.budgets.latency_percentile} <= "
        f"{target.budgets.latency_ms} ms, size, memory): A/A {counts(aa['overall'])}; slower "
        f"{counts(ab['overall'])}.",
        "",
        f"Wall time of one gate run (in-process, load + measure + decide): median {np.median(aa['wall']):.1f} s "
        f"(A/A), {np.median(ab['wall']):.1f} s (slower); max {max(max(aa['wall']), max(ab['wall'])):.1f} s. One "
        f"`edgekd gate` CLI process (imports included): {cli_wall:.1f} s (exit {cli.returncode}). Target: < 60 s.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(body, NAME)


if __name__ == "__main__":
    main()
