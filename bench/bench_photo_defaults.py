"""Real photos at the defaults (issue 24): `edgekd compress --target intel-cpu --data DIR` with nothing else, and
the search's choice against its best candidates each trained to the end.

1. The default run, in its own process and timed: teacher, FP32 and INT8 student test top-1, the INT8 vs FP32
   speed-up (interleaved, the bench stage's paired measurement) with its why-not, FP32 and INT8 file sizes of each
   format, the search's choice, its confidence and the input sizes it tried.
2. `--candidates N` (default 3): the search's N best candidates by its own records (the last rung each reached,
   then its val top-1 there), each rebuilt as the search built it (the teacher pruned again by the same code, or
   the family member built fresh; at its input size) and trained to the end with the default distill and QAD
   schedule through `edgekd.compress` (the module as the student, its input size as `student_input_size`, in the
   same run directory: the teacher stages are reused). The chosen one is rebuilt the same way, so all start from
   the same state; the figure compared is each one's INT8 test top-1.

    python bench/bench_photo_defaults.py --data /tmp/photos_c/trashnet5 --out /tmp/photo-defaults [--no-write]

Replaces its section of bench/RESULTS.md (one section per data folder name).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime_overhead import machine, publish  # noqa: E402


def default_run(data: Path, run: Path, extra: list[str]) -> tuple[dict, float, int]:
    cmd = [sys.executable, "-m", "edgekd", "compress", "--target", "intel-cpu", "--data", str(data),
           "--run-dir", str(run), "-q", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads((run / "report.json").read_text()), wall, proc.returncode


def manifest(run: Path, stage: str, sid: str) -> dict:
    return json.loads((run / f"{stage}-{sid}" / "manifest.json").read_text())


def best_candidates(search: dict, n: int) -> list[dict]:
    """The search's n best candidates by its own records: the last rung reached, then val top-1 there."""
    ran = [c for c in search["metrics"]["candidates"] if c.get("proxy_top1")]

    def key(c):
        rung = max(int(r) for r in c["proxy_top1"])
        return rung, c["proxy_top1"][str(rung)], c.get("proxy_agree", {}).get(str(rung), 0.0)

    return sorted(ran, key=key, reverse=True)[:n]


def rebuild(run: Path, report: dict, names: list[str]) -> dict:
    """Each named candidate rebuilt as the search built it (before any proxy training)."""
    import torch

    from edgekd.data.dataset import DataLoader
    from edgekd.manifest import Manifest
    from edgekd.models.checkpoint import load_edgekd_checkpoint
    from edgekd.stages import search as stage

    ids = {s["stage"]: s["id"] for s in report["stages"]}
    sm = Manifest.model_validate(manifest(run, "search", ids["search"]))
    cfg = stage.Config.model_validate(sm.config)
    teacher, tmeta = load_edgekd_checkpoint(run / f"finetune-{ids['finetune']}" / "model.pt")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    from edgekd.data.dataset import DataConfig

    dm = manifest(run, "teacher", ids["teacher"])
    pre = dm["preprocessing"]
    data = DataLoader(DataConfig(source=report["options"]["data"], input_size=tuple(pre["input_size"]),
                                 resize_shorter=pre["resize_shorter"], size_source=pre["size_source"]),
                      run / ".cache")()
    torch.manual_seed(0)
    calib, grad_batches = stage._calib(data)
    kwargs = {"num_classes": data.num_classes, "in_channels": data.preprocessing.channels,
              "input_size": data.preprocessing.input_size[0]}
    notes: list[str] = []
    with stage._Grad(teacher):
        cands = stage._candidates(cfg, teacher, str(tmeta["arch"]), kwargs, calib, grad_batches, notes,
                                  stage._candidate_base(tmeta))
        have = {c.name: c for c in cands}
        if any(n.rsplit("-", 1)[0] not in have and n not in have for n in names):
            more, _ = stage._more_candidates(cfg, teacher, str(tmeta["arch"]), kwargs, calib, grad_batches, cands,
                                             set(have), stage._candidate_base(tmeta))
            have.update({c.name: c for c in more})
    out = {}
    for name in names:
        if name in have:
            out[name] = (have[name].model, None)
            continue
        base, size = name.rsplit("-", 1)
        h, w = (int(v) for v in size.split("x"))
        out[name] = (have[base].at_size((h, w), calib).model, (h, w))
    return out


def sizes_line(run: Path, report: dict) -> list[str]:
    """FP32 against INT8 student file sizes, each format edgekd wrote."""
    ids = {s["stage"]: s["id"] for s in report["stages"]}
    exp = manifest(run, "export", ids["export"])
    arts = {a["name"]: a for a in exp["artifacts"]}
    fp32 = arts["student_fp32"]["size_bytes"]
    lines = [f"| QDQ ONNX (export) | {fp32 / 1e6:.3f} MB | {arts['student_int8_qdq']['size_bytes'] / 1e6:.3f} MB | "
             f"{arts['student_int8_qdq']['size_bytes'] / fp32:.2f}x |"]
    if "student_int8_openvino" in arts:
        ir = arts["student_int8_openvino"]["size_bytes"] + arts["student_int8_openvino_bin"]["size_bytes"]
        lines.append(f"| OpenVINO IR INT8 (export, .xml + .bin) vs FP32 ONNX | {fp32 / 1e6:.3f} MB | {ir / 1e6:.3f} MB "
                     f"| {ir / fp32:.2f}x |")
    s = report.get("sizes") or {}
    if s.get("fp32_bytes"):
        lines.append(f"| deployed files (compile: {s.get('fp32_file')} vs {s.get('int8_file')}) | "
                     f"{s['fp32_bytes'] / 1e6:.3f} MB | {s['int8_bytes'] / 1e6:.3f} MB | {s['int8_over_fp32']:.2f}x |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("/tmp/photo-defaults"))
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more compress options (say so)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    run = args.out / "run"
    when, where = dt.datetime.now().isoformat(timespec="minutes"), machine()
    report, wall, code = default_run(args.data, run, args.extra)
    rows = {r["role"]: r for r in report["models"]}
    ids = {s["stage"]: s["id"] for s in report["stages"]}
    search = manifest(run, "search", ids["search"])
    sm = search["metrics"]
    pay = report["int8_payoff"]
    stage_s = ", ".join(f"{s['stage']} {s['wall_s']:.0f}s{' (reused)' if s.get('reused') else ''}"
                        for s in report["stages"])
    t, f, q = rows["teacher_fp32"], rows["student_fp32"], rows["student_int8"]
    lines = [f"## Real photos at the defaults: {args.data.name} (issue 24)", "",
             f"- command: `python bench/bench_photo_defaults.py --data {args.data} --out {args.out}"
             f"{' --extra ' + ' '.join(args.extra) if args.extra else ''}`: runs `edgekd compress --target intel-cpu "
             f"--data {args.data}`{' ' + ' '.join(args.extra) if args.extra else ''}",
             f"- date: {when}; machine: {where}",
             f"- wall **{wall / 60:.1f} min** (exit {code}); stages: {stage_s}",
             f"- data: {report['data']['description']}; {report['data'].get('roles', '')}", "",
             "| model | input | test top-1 | p50 ms (host) |", "|---|---|---|---|"]
    for r in (t, f, q):
        size = "x".join(str(v) for v in r.get("input_size") or [])
        lines.append(f"| {r['stage']}: {r['model']} ({r['precision']}) | {size} | {r['top1']:.2%} | "
                     f"{r['latency']['median_ms']:.3f} |")
    lines += ["", f"- INT8 vs teacher: **{(q['top1'] - t['top1']) * 100:+.2f} points** (goal: within 2); verdict "
              f"{report['verdict']}",
              f"- INT8 vs FP32 student speed, interleaved on {pay.get('measured_with')}: **{pay['speedup']:.2f}x** "
              f"(95% CI {pay['speedup_ci95'][0]:.2f}-{pay['speedup_ci95'][1]:.2f}); "
              + ("paid off" if pay.get("paid_off") else f"why not: {'; '.join(pay.get('why_not') or [])}"),
              f"- search: chose `{sm['chosen']}` at {'x'.join(map(str, sm.get('chosen_input_size') or []))} "
              f"({sm['chosen_latency_ms']:.3f} ms {'estimated' if any(c['latency'].get('estimated') for c in sm['candidates'] if c['name'] == sm['chosen']) else 'measured'}); "
              f"{(sm.get('confidence') or {}).get('line', '')}; sizes tried "
              f"{', '.join('x'.join(map(str, s)) for s in sm.get('sizes_tried') or []) or 'none'}; "
              f"{len(sm['candidates'])} candidates, {len([c for c in sm['candidates'] if not c['fate'].startswith('over')])} within the budgets",
              "", "| file | FP32 | INT8 | INT8/FP32 |", "|---|---|---|---|", *sizes_line(run, report)]
    if args.candidates:
        import edgekd

        best = best_candidates(search, args.candidates)
        names = [c["name"] for c in best]
        if sm["chosen"] not in names:
            names.append(sm["chosen"])
        models = rebuild(run, report, names)
        lines += ["", f"The search's {len(best)} best candidates (by its records), each rebuilt and trained to the "
                  "end with the default schedule (same run directory, teacher reused):", "",
                  "| candidate | last rung, val top-1 | INT8 test top-1 | FP32 test top-1 | wall |", "|---|---|---|---|---|"]
        results = {}
        for name in names:
            model, size = models[name]
            t0 = time.perf_counter()
            rep = edgekd.compress(data=str(args.data), target="intel-cpu", student=model, run_dir=run,
                                  **({"student_input_size": size} if size else {}))
            results[name] = rep.model("student_int8").top1
            c = next(x for x in sm["candidates"] if x["name"] == name)
            rung = max(int(r) for r in c["proxy_top1"])
            lines.append(f"| {name}{' (chosen)' if name == sm['chosen'] else ''} | {rung}, "
                         f"{c['proxy_top1'][str(rung)]:.2%} | {results[name]:.2%} | "
                         f"{rep.model('student_fp32').top1:.2%} | {time.perf_counter() - t0:.0f} s |")
        top = max(results.values())
        lines += ["", f"- chosen `{sm['chosen']}` {results[sm['chosen']]:.2%} against the best {top:.2%}: "
                  f"**{(results[sm['chosen']] - top) * 100:+.2f} points** (goal: within 1)"]
    publish(lines, f"bench_photo_defaults_{args.data.name}", write=not args.no_write)


if __name__ == "__main__":
    main()
