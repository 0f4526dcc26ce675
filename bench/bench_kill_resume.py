"""SIGKILL `edgekd compress` at random times, rerun it to completion, and compare with an uninterrupted run.

    python bench/bench_kill_resume.py [--n 10] [--seed 0] [--work /tmp/edgekd-kill] [--threads 1]

First one uninterrupted run of the embedded default (`edgekd compress --target intel-cpu --threads 1`) in its
own run directory; then N trials, each in a fresh run directory: start the same command, SIGKILL its process
group after a random delay drawn uniformly from [2 s, 0.9 x the uninterrupted wall time] (a trial whose run
finished before its kill is redrawn), then rerun the same command to completion. Each trial's final INT8
top-1 and the sha256 of every artifact of the teacher, finetune, distill, qad, export and compile stages
(and the stage ids) must equal the uninterrupted run's; the bench stage's latencies are measurements and are
not compared. Where the kill landed is read from the run directory (finished stage folders, the stage's work
folder and its epoch checkpoints). Replaces its section of bench/RESULTS.md after every trial, so a stopped
bench still records what finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime_overhead import machine, write_section  # noqa: E402

NAME = "bench_kill_resume"
COMPARED = ("teacher", "finetune", "distill", "qad", "export", "compile")


def command(run_dir: Path, threads: int) -> list[str]:
    return [sys.executable, "-m", "edgekd", "compress", "--target", "intel-cpu", "--threads", str(threads),
            "--run-dir", str(run_dir), "-q"]


def run_to_end(cmd: list[str]) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - t0, proc.stderr


def killed_after(cmd: list[str], delay: float) -> bool:
    """Start `cmd` in its own process group and SIGKILL the group after `delay` s; False if it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def where_killed(run_dir: Path) -> str:
    if not run_dir.is_dir():
        return "before the run directory existed"
    done = [p.name.split("-")[0] for p in run_dir.iterdir()
            if p.is_dir() and re.fullmatch(r"[a-z]+-[0-9a-f]{12}", p.name)]
    work = sorted(p for p in run_dir.glob(".work-*") if p.is_dir())
    if work:
        stage = work[-1].name.split("-")[1]
        ckpts = sorted(q.name for q in (work[-1] / "state").rglob("*.e*.pt")) if (work[-1] / "state").is_dir() else []
        return f"in {stage}" + (f" (checkpoints: {', '.join(ckpts[-2:])})" if ckpts else "")
    if len(done) == 7:
        return "after the stages (reports or bundle)"
    return f"between stages ({len(done)} done)"


def fingerprint(run_dir: Path) -> tuple[float | None, dict[str, dict[str, str]]]:
    report = json.loads((run_dir / "report.json").read_text())
    top1 = next((r["top1"] for r in report["models"] if r["role"] == "student_int8"), None)
    hashes = {}
    for s in report["stages"]:
        if s["stage"] in COMPARED:
            manifest = json.loads((run_dir / s["dir"] / "manifest.json").read_text())
            hashes[f"{s['stage']}-{s['id']}"] = {a["name"]: a["sha256"] for a in manifest["artifacts"]}
    return top1, hashes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd-kill"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    rng = random.Random(args.seed)
    when, where, t_start = dt.datetime.now().isoformat(timespec="minutes"), machine(), time.time()
    ref_dir = args.work / "uninterrupted"
    code, ref_wall, err = run_to_end(command(ref_dir, args.threads))
    if code not in (0, 1):
        sys.exit(f"the uninterrupted run failed ({code}):\n{err[-3000:]}")
    ref_top1, ref_hashes = fingerprint(ref_dir)
    n_files = sum(len(v) for v in ref_hashes.values())
    rows = []
    for i in range(1, args.n + 1):
        run_dir = args.work / f"trial-{i:02d}"
        for _ in range(5):
            shutil.rmtree(run_dir, ignore_errors=True)
            delay = rng.uniform(2.0, 0.9 * ref_wall)
            if killed_after(command(run_dir, args.threads), delay):
                break
        landed = where_killed(run_dir)
        code, wall, err = run_to_end(command(run_dir, args.threads))
        top1, hashes = fingerprint(run_dir) if code in (0, 1) else (None, {})
        same = sum(1 for stage, arts in ref_hashes.items() for name, h in arts.items()
                   if hashes.get(stage, {}).get(name) == h)
        notes = [line.split(":", 1)[1].strip()[:90] for line in err.splitlines() if line.startswith("warning:")]
        rows.append(dict(i=i, delay=delay, landed=landed, code=code, wall=wall, top1=top1, same=same,
                         ok=code in (0, 1) and top1 == ref_top1 and same == n_files and set(hashes) == set(ref_hashes),
                         notes=notes))
        print(f"trial {i}: killed at {delay:.1f}s {landed}; rerun exit {code} in {wall:.0f}s; top-1 {top1}; "
              f"{same}/{n_files} artifacts identical", flush=True)
        write_section(_body(args, rows, when, where, ref_wall, ref_top1, n_files, time.time() - t_start), NAME)


def _body(args, rows, when, where, ref_wall, ref_top1, n_files, total) -> str:
    ok = sum(r["ok"] for r in rows)
    lines = [
        "## Kill and resume: SIGKILL during `edgekd compress`, then rerun (issue 12)",
        "",
        f"- command: `python bench/bench_kill_resume.py --n {args.n} --seed {args.seed} --threads {args.threads}` "
        f"(each run: `edgekd compress --target intel-cpu --threads {args.threads} --run-dir <own /tmp dir> -q`)",
        f"- date: {when}; total wall {total / 60:.0f} min; machine: {where}",
        f"- uninterrupted run: {ref_wall:.0f} s wall, INT8 top-1 {ref_top1:.2%}, {n_files} artifacts of "
        f"{len(COMPARED)} stages compared by sha256 (the bench stage's latencies are measurements, not compared)",
        f"- **{ok}/{len(rows)} killed-and-resumed runs identical** to the uninterrupted one (INT8 top-1, stage ids and "
        f"every artifact's sha256)" + (f"; {args.n - len(rows)} of the {args.n} planned trials did not finish in "
                                       "time" if len(rows) < args.n else ""),
        "",
        "| trial | SIGKILL at | landed | rerun exit | rerun wall | INT8 top-1 | identical artifacts "
        "| warnings on rerun |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top1 = "-" if r["top1"] is None else f"{r['top1']:.2%}"
        lines.append(f"| {r['i']} | {r['delay']:.1f} s | {r['landed']} | {r['code']} | {r['wall']:.0f} s | {top1} | "
                     f"{r['same']}/{n_files} | {'; '.join(r['notes']) or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
