"""Roofline estimates vs measured p50 before and after `edgekd calibrate` (issue 16, item 4).

    python bench/bench_calibration.py RUN_DIR [RUN_DIR ...] [--rounds 3] [--seconds 1] [--calibrate]

With --calibrate, first runs `edgekd calibrate --target intel-cpu` (writes targets/calibration/intel-cpu.yaml).
Then, for the teacher FP32, student FP32 and student INT8 of each run: the compiled artifact's p50 on this CPU
(OpenVINO, intel-cpu settings, measured round-robin `--rounds` times, median), and the roofline estimate from
the exported ONNX (i) with the profile's prior fields, (ii) with the calibrated overlay, and (iii) with a fit that
left out every calibration model of the same architecture (so no estimate is judged on a fit that saw its model).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime_overhead import machine, publish  # noqa: E402

NAME = "bench_calibration"
EXPORT_NAME = {"teacher_fp32": "teacher_fp32", "student_fp32": "student_fp32", "student_int8": "student_int8_qdq"}


def artifacts(run: Path) -> list[dict]:
    """(run, role, arch, compiled file, exported ONNX, precision) for the three roles."""
    from edgekd.artifacts import resolve, verify
    from edgekd.bundle.run_info import open_run

    res, info = resolve(run), open_run(run)
    export, export_dir = info.manifest("export"), info.dirs["export"]
    archs = {"teacher_fp32": info.manifest("finetune").artifact("model").facts.get("arch"),
             "student_fp32": info.manifest("distill").artifact("model").facts.get("arch")}
    archs["student_int8"] = archs["student_fp32"]
    out = []
    for role in ("teacher_fp32", "student_fp32", "student_int8"):
        cand = res.select(role, "openvino", compiled_only=True)
        verify(cand)
        out.append({"run": run.name, "role": role, "arch": archs[role], "file": cand.file,
                    "onnx": export_dir / export.artifact(EXPORT_NAME[role]).path,
                    "precision": "int8" if role == "student_int8" else "fp32",
                    "shape": (1, res.preprocessing.channels, *res.preprocessing.input_size)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    start_machine = machine()
    from edgekd.calibrate.fit import Point, fit, predict
    from edgekd.calibrate.measure import CALIBRATION_SET, calibrate, measure_points, roofline_terms, start_values
    from edgekd.runtimes.calibration import estimate_for_target
    from edgekd.targets import load_target

    arts = [a for run in args.runs for a in artifacts(run)]
    items = [(f"{a['run']}/{a['role']}", a["precision"], a["file"], a["shape"]) for a in arts]
    cal_s, measured = None, None
    if args.calibrate:  # the pipeline's artifacts are measured in the same rounds as the calibration set
        t = time.perf_counter()
        rep = calibrate("intel-cpu", seconds=args.seconds, rounds=args.rounds, progress=print, extra=items)
        measured = {tuple(k.split("|")): v for k, v in rep["extra_measured"].items()}
        cal_s = time.perf_counter() - t
    calibrated = load_target("intel-cpu")
    if not calibrated.calibration:
        raise SystemExit("no calibration overlay for intel-cpu: pass --calibrate")
    with tempfile.TemporaryDirectory() as empty:
        os.environ["EDGEKD_CALIBRATION_DIR"] = empty
        prior = load_target("intel-cpu")
        del os.environ["EDGEKD_CALIBRATION_DIR"]
    points = [Point(**{k: p[k] for k in Point.__dataclass_fields__}) for p in calibrated.calibration["points"]]
    start = start_values(prior)

    if measured is None:
        measured = measure_points(items, calibrated, args.seconds, args.rounds, print)
    arch_of = {name: arch for name, arch, *_ in CALIBRATION_SET}
    rows = []
    for a in arts:
        meas = measured[(f"{a['run']}/{a['role']}", a["precision"])]
        before = estimate_for_target(a["onnx"], prior, a["precision"], 1)["latency_ms"]
        after = estimate_for_target(a["onnx"], calibrated, a["precision"], 1)["latency_ms"]
        left_out = sorted(n for n, arch in arch_of.items() if arch == a["arch"])  # every size of that architecture
        theta = fit([p for p in points if p.model not in left_out], start)
        cf, c8, mem, layers = roofline_terms(a["onnx"], calibrated, a["precision"])
        loo = predict(Point("x", a["precision"], meas, cf, c8, mem, layers), theta)
        rows.append((a, meas, before, after, loo, left_out))
    cal = calibrated.calibration
    lines = ["## Calibrated estimates: roofline vs measured p50 on this CPU (issue 16)", "",
             f"- command: `flock /work/wt/notes/heavy.lock python bench/bench_calibration.py "
             f"{' '.join(str(r) for r in args.runs)} --rounds {args.rounds} --seconds {args.seconds}"
             f"{' --calibrate' if args.calibrate else ''}`",
             f"- machine: {start_machine}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; wall "
             f"{time.perf_counter() - t0:.0f} s" + (f" (calibrate {cal_s:.0f} s)" if cal_s else ""),
             f"- calibration ({cal['file']}): {cal['models']} models x 2 precisions, {cal.get('rounds')} interleaved "
             f"rounds; fitted " + ", ".join(f"{k} {getattr(calibrated.device, k) or 0:.4g}" for k in
                                             ("compute_efficiency", "compute_efficiency_int8", "memory_efficiency",
                                              "layer_overhead_us", "call_overhead_us")) +
             f"; leave-one-model-out error on the calibration set: mean {cal['mean_abs_error_pct']}%, max "
             f"{cal['max_abs_error_pct']}% (prior fields on the same set: mean {cal.get('prior_mean_abs_error_pct')}%)",
             "- measured: the compiled artifact of each run (OpenVINO CPU, intel-cpu settings: 2 threads, 1 stream, "
             f"f32 hint), p50 of >= 200 calls and >= {args.seconds} s, median of {args.rounds} round-robin rounds; "
             "estimated: the exported ONNX (QDQ for INT8) through the roofline", "",
             "| run | artifact | measured p50 | prior estimate (error) | calibrated (error) | calibrated, same "
             "architecture left out (error) |", "|---|---|---|---|---|---|"]
    for a, meas, before, after, loo, left_out in rows:
        err = lambda e: f"{e:.4f} ms ({(e / meas - 1) * 100:+.0f}%)"  # noqa: E731
        lines.append(f"| {a['run']} | {a['role']} ({a['arch']}) | {meas:.4f} ms | {err(before)} | {err(after)} | "
                     f"{err(loo)} (without {', '.join(left_out)}) |")
    worst = max(abs(loo / meas - 1) for _, meas, _, _, loo, _ in rows) * 100
    worst_prior = max(abs(b / meas - 1) for _, meas, b, _, _, _ in rows) * 100
    lines += ["", f"Worst error, prior fields: {worst_prior:.0f}%; calibrated with the same architecture left out: "
              f"{worst:.0f}% (goal: every estimate within +-30%)."]
    publish(lines, NAME, write=not args.no_write)


if __name__ == "__main__":
    main()
