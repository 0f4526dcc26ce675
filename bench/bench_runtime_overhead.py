"""How much does edgekd's measurement add over the runtimes' own tools and a bare loop?

    python bench/bench_runtime_overhead.py RUN_DIR [--cycles 3] [--seconds 3]

For the run's INT8 OpenVINO IR (target intel-cpu settings): edgekd bench's p50 vs OpenVINO's benchmark_app
(`-hint latency -nireq 1`, threads / streams / f32 inference precision pinned through -load_config because
benchmark_app refuses -nthreads together with -hint; `-d CPU -shape`, its "Median") vs a bare timing loop on
the compiled model. For the run's INT8 QDQ ONNX (target cpu-ort settings): edgekd vs a bare
InferenceSession.run loop. The three are measured in turn, `--cycles` times, and the median of each is
reported (drift on a shared machine hits all alike). Then `edgekd bench --repeat 5` on one artifact and the
run-to-run spread of its p50. Appends/replaces its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NAME = "bench_runtime_overhead"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} logical CPUs (shared with other engineers; 1-min load avg {load:.1f} at start)"


def write_section(body: str, name: str = NAME) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.is_file() else "# edgekd benchmark results\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def publish(lines: list[str], name: str, write: bool = True) -> None:
    """Print a results section and, unless told not to, replace its part of RESULTS.md."""
    text = "\n".join(lines)
    print(text)
    if write:
        write_section(text, name)


def bare_loop(fn, seconds: float) -> float:
    for _ in range(50):
        fn()
    samples, t_end = [], time.perf_counter() + seconds
    clock = time.perf_counter_ns
    while time.perf_counter() < t_end:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return float(np.median(samples)) / 1e6


def benchmark_app(xml: Path, shape: list[int], threads: int, seconds: float) -> float:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cfg = {"CPU": {"INFERENCE_NUM_THREADS": str(threads), "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": "f32",
                   "PERFORMANCE_HINT": "LATENCY"}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(cfg, fh)
    out = subprocess.run([exe, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-nireq", "1", "-load_config",
                          fh.name, "-infer_precision", "f32", "-shape", str(shape).replace(" ", ""),
                          "-t", str(int(max(1, seconds)))], capture_output=True, text=True, timeout=300)
    m = re.search(r"Median:\s+([\d.]+)\s*(ms|us)", out.stdout)
    if not m:
        raise RuntimeError(f"benchmark_app output has no Median:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    t_start = time.perf_counter()
    import onnxruntime as ort
    import openvino as ov

    from edgekd.artifacts import resolve
    from edgekd.benchmark import TimingConfig, settings_for
    from edgekd.cli.bench_cmd import run_bench
    from edgekd.preprocess import normalize_np, read_eval_set
    from edgekd.runtimes.onnxruntime import session_options
    from edgekd.targets import load_target

    res = resolve(args.run_dir)
    ov_cand, ort_cand = res.select("student_int8", "openvino"), res.select("student_int8", "onnxruntime")
    images, _, pre = read_eval_set(res.eval_set)
    x = np.ascontiguousarray(normalize_np(images[:1], pre))
    shape = list(x.shape)
    timing = TimingConfig(min_s=args.seconds, max_s=args.seconds * 4)
    t_ov, t_ort = load_target("intel-cpu"), load_target("cpu-ort")

    core = ov.Core()
    s = settings_for(t_ov, "int8")
    model = core.read_model(str(ov_cand.file))
    model.reshape({model.inputs[0]: ov.PartialShape(shape)})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                                                  "INFERENCE_NUM_THREADS": s.threads, "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    so = session_options(settings_for(t_ort, "int8"))
    sess = ort.InferenceSession(str(ort_cand.file), sess_options=so, providers=["CPUExecutionProvider"])
    out_name, in_name = sess.get_outputs()[0].name, sess.get_inputs()[0].name

    rows: dict[str, list[float]] = {k: [] for k in ("ov_edgekd", "ov_benchmark_app", "ov_bare", "ov_bare_preset",
                                                    "ort_edgekd", "ort_bare")}
    for c in range(args.cycles):
        rows["ov_edgekd"].append(run_bench(args.run_dir, "intel-cpu", timing=timing)["row"]["latency"]["median_ms"])
        rows["ov_benchmark_app"].append(benchmark_app(ov_cand.file, shape, s.threads, args.seconds))
        rows["ov_bare"].append(bare_loop(lambda: req.infer({0: x}, share_inputs=True), args.seconds))
        req.set_input_tensor(ov.Tensor(x, shared_memory=True))  # input bound once: runtime + call only
        rows["ov_bare_preset"].append(bare_loop(req.infer, args.seconds))
        rows["ort_edgekd"].append(run_bench(args.run_dir, "cpu-ort", timing=timing)["row"]["latency"]["median_ms"])
        rows["ort_bare"].append(bare_loop(lambda: sess.run([out_name], {in_name: x}), args.seconds))
        print(f"cycle {c + 1}/{args.cycles}: " + ", ".join(f"{k} {v[-1]:.4f} ms" for k, v in rows.items()))
    med = {k: float(np.median(v)) for k, v in rows.items()}
    rep = run_bench(args.run_dir, "intel-cpu", repeat=5, timing=timing)["repeats"]
    wall = time.perf_counter() - t_start

    def rel(a: str, b: str) -> str:
        return f"{(med[a] / med[b] - 1) * 100:+.1f}% ({(med[a] - med[b]) * 1000:+.1f} us)"

    sp = rep["spread"]
    lines = [
        "## Runtime overhead: edgekd vs benchmark_app vs a bare loop",
        "",
        f"- command: `python bench/bench_runtime_overhead.py {args.run_dir} --cycles {args.cycles} "
        f"--seconds {args.seconds}`",
        f"- date: {dt.datetime.now().isoformat(timespec='minutes')}; wall {wall:.0f} s",
        f"- machine: {machine()}",
        f"- OpenVINO {ov.get_version()}, ONNX Runtime {ort.__version__}; artifacts: `{ov_cand.label}` (INT8 IR, "
        f"intel-cpu settings: {s.threads} threads, 1 stream, LATENCY, f32 hint) and `{ort_cand.label}` (INT8 QDQ, "
        f"cpu-ort settings); input {shape} from the run's eval set",
        f"- each number: median over {args.cycles} cycles of (edgekd bench p50 / benchmark_app Median / bare "
        f"loop median), each measurement ~{args.seconds:g} s, measured in turn",
        "",
        "| runtime | edgekd bench p50 | reference | reference p50 | edgekd vs reference |",
        "|---|---|---|---|---|",
        f"| OpenVINO | {med['ov_edgekd']:.4f} ms | benchmark_app -hint latency -nireq 1 | "
        f"{med['ov_benchmark_app']:.4f} ms | {rel('ov_edgekd', 'ov_benchmark_app')} |",
        f"| OpenVINO | {med['ov_edgekd']:.4f} ms | bare `req.infer({{0: x}}, share_inputs=True)` loop | {med['ov_bare']:.4f} ms | "
        f"{rel('ov_edgekd', 'ov_bare')} |",
        f"| OpenVINO | {med['ov_edgekd']:.4f} ms | bare loop, input bound once (`req.infer()`) | "
        f"{med['ov_bare_preset']:.4f} ms | {rel('ov_edgekd', 'ov_bare_preset')} |",
        f"| ONNX Runtime | {med['ort_edgekd']:.4f} ms | bare InferenceSession.run loop | {med['ort_bare']:.4f} ms | "
        f"{rel('ort_edgekd', 'ort_bare')} |",
        "",
        "Per cycle (ms): " + "; ".join(f"{k} " + ", ".join(f"{v:.4f}" for v in vals) for k, vals in rows.items()),
        "",
        f"`edgekd bench RUN --target intel-cpu --repeat 5`: p50 per repeat "
        f"{', '.join(f'{v:.4f}' for v in rep['p50_ms'])} ms; min {sp['min']:.4f}, median {sp['median']:.4f}, "
        f"max {sp['max']:.4f} ms; CV {sp['cv']:.1%}, range {sp['range_over_median']:.1%} of the median.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(body + "\n\n" + "<!-- notes are written by hand below the numbers when needed -->")


if __name__ == "__main__":
    main()
