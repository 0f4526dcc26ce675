"""`edgekd bench` p50 vs OpenVINO benchmark_app's median, interleaved (issue 16, item 5).

    python bench/bench_latency_parity.py MODEL.xml [MODEL.xml ...] [--rounds 5] [--seconds 3]

For each IR and each round, in turn: `edgekd bench MODEL --target intel-cpu` (its p50, and the runtime's own
InferRequest.latency median for the same calls), benchmark_app (`-api sync -nstreams 1 -nthreads 2
-infer_precision f32 -hint none -shape [1,...]`, its "Median"), and the call path edgekd used before this change
(`infer({0: x}, share_inputs=True, share_outputs=False)`, timed the same way) for reference. Prints a table and
replaces its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime_overhead import machine, publish  # noqa: E402

NAME = "bench_latency_parity"


def benchmark_app_sync(xml: Path, shape: list[int], threads: int, seconds: float) -> float:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-api", "sync", "-nstreams", "1", "-nthreads", str(threads),
           "-infer_precision", "f32", "-hint", "none", "-shape", str(shape).replace(" ", ""), "-t", str(int(seconds))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    m = re.search(r"Median:\s+([\d.]+)\s*(ms|us)", out.stdout)
    if not m:
        raise RuntimeError(f"benchmark_app output has no Median:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)


def old_call_path(xml: Path, shape: list[int], threads: int, seconds: float) -> float:
    """The per-call path edgekd's OpenVINO session used before: a new input tensor bound on every call."""
    import openvino as ov

    from edgekd.runtimes.timing import measure_latency

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0]: ov.PartialShape(shape)})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                                  "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def call() -> np.ndarray:
        return np.asarray(req.infer({0: x}, share_inputs=True, share_outputs=False)[0])

    return measure_latency(call, warmup_runs=20, warmup_s=0.3, min_runs=300, min_s=seconds).median_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from edgekd.artifacts import model_input_shape
    from edgekd.benchmark import TimingConfig
    from edgekd.cli.bench_cmd import run_bench

    t0 = time.perf_counter()
    start_machine = machine()
    timing = TimingConfig(min_s=args.seconds, max_s=args.seconds * 4)
    rows: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for xml in args.models:
            shape = [1, *model_input_shape(xml)]
            rec = rows.setdefault(str(xml), {"edgekd": [], "runtime_own": [], "benchmark_app": [], "old_path": []})
            rep = run_bench(xml, "intel-cpu", timing=timing)["row"]
            rec["edgekd"].append(rep["latency"]["median_ms"])
            rec["runtime_own"].append(rep["runtime_latency"]["median_ms"])
            rec["benchmark_app"].append(benchmark_app_sync(xml, shape, 2, args.seconds))
            rec["old_path"].append(old_call_path(xml, shape, 2, args.seconds))
            print(f"round {r + 1}/{args.rounds} {xml.name}: " + ", ".join(f"{k} {v[-1]:.4f} ms" for k, v in rec.items()),
                  flush=True)
    lines = ["## Latency parity: edgekd bench vs benchmark_app (issue 16)", "",
             f"- command: `flock /work/wt/notes/heavy.lock python bench/bench_latency_parity.py "
             f"{' '.join(str(m) for m in args.models)} --rounds {args.rounds} --seconds {args.seconds}`",
             f"- machine: {start_machine}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall "
             f"{time.perf_counter() - t0:.0f} s",
             "- per round and model, in turn: `edgekd bench MODEL --target intel-cpu` (p50 over >= 300 calls, >= "
             f"{args.seconds} s; beside it the runtime's own InferRequest.latency median of the same calls), "
             "benchmark_app `-api sync -nstreams 1 -nthreads 2 -infer_precision f32 -hint none` (Median, "
             f"{int(args.seconds)} s), and the old per-call path (`infer({{0: x}}, share_inputs=True, "
             "share_outputs=False)`, timed like edgekd); figures are medians over the rounds, ratio = median of the "
             "per-round ratios", "",
             "| model | edgekd p50 | runtime's own p50 (same calls) | benchmark_app median | edgekd / benchmark_app "
             "| old call path p50 | old / benchmark_app |", "|---|---|---|---|---|---|---|"]
    for xml, rec in rows.items():
        med = {k: float(np.median(v)) for k, v in rec.items()}
        ratio = float(np.median(np.asarray(rec["edgekd"]) / np.asarray(rec["benchmark_app"])))
        old = float(np.median(np.asarray(rec["old_path"]) / np.asarray(rec["benchmark_app"])))
        lines.append(f"| {Path(xml).parent.name}/{Path(xml).name} | {med['edgekd']:.4f} ms | {med['runtime_own']:.4f} ms "
                     f"| {med['benchmark_app']:.4f} ms | {ratio:.3f}x | {med['old_path']:.4f} ms | {old:.3f}x |")
    lines.append("")
    for xml, rec in rows.items():
        lines.append(f"Per round {Path(xml).name} (ms): " + "; ".join(
            f"{k} " + ", ".join(f"{v:.4f}" for v in vals) for k, vals in rec.items()))
    publish(lines, NAME, write=not args.no_write)


if __name__ == "__main__":
    main()
