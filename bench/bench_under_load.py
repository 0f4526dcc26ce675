"""The README quickstart under load and side by side, with a cold torch extensions cache (issue 12).

    python bench/bench_under_load.py [--work /tmp/edgekd-load] [--burners 2] [--threads 1] [--no-results]

1. `edgekd compress --target intel-cpu --run-dir WORK/quickstart` while `--burners` CPU-bound processes
   (`python -c 'while True: pass'`) run beside it, with TORCH_EXTENSIONS_DIR pointing at an empty private
   folder (a cold cache: the situation in which NNCF's JIT build used to time out).
2. Two such commands on different run directories, started at once, sharing one empty private extensions
   folder (the burners keep running).
Each: wall time and exit code; afterwards the extensions folder is listed (edgekd builds nothing there).
Run folders are removed first so every stage runs. Replaces its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_runtime_overhead import machine, publish  # noqa: E402

NAME = "bench_under_load"


def compress(run_dir: Path, ext_dir: Path, threads: int, log: Path) -> subprocess.Popen:
    shutil.rmtree(run_dir, ignore_errors=True)
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ext_dir), "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "edgekd", "compress", "--target", "intel-cpu", "--run-dir", str(run_dir),
           "--threads", str(threads), "-q"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_all(procs: list[subprocess.Popen], t0: float) -> list[tuple[int, float]]:
    done: dict[int, tuple[int, float]] = {}
    while len(done) < len(procs):
        for i, p in enumerate(procs):
            if i not in done and p.poll() is not None:
                done[i] = (p.returncode, time.perf_counter() - t0)
        time.sleep(0.5)
    return [done[i] for i in range(len(procs))]


def built(ext_dir: Path) -> str:
    files = [p for p in ext_dir.rglob("*") if p.is_file()]
    return "empty (nothing compiled)" if not files else f"{len(files)} files: " + ", ".join(
        str(p.relative_to(ext_dir)) for p in files[:5])


def failed_budgets(run_dir: Path) -> str:
    """The measured budgets that failed (what an exit 1 means), from the run's report.json."""
    import json

    report = run_dir / "report.json"
    if not report.is_file():
        return "no report"
    budgets = json.loads(report.read_text())["budgets"]
    failed = [f"{b['name']} {b['value_text']} (budget {b['limit_text']})" for b in budgets if b["verdict"] == "fail"]
    return "; ".join(failed) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekd-load"))
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    where = machine()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    try:
        ext1 = work / "ext-cold-1"
        shutil.rmtree(ext1, ignore_errors=True)
        ext1.mkdir()
        t0 = time.perf_counter()
        (solo,) = wait_all([compress(work / "quickstart", ext1, args.threads, work / "quickstart.log")], t0)
        load_mid = os.getloadavg()[0]
        ext2 = work / "ext-cold-2"
        shutil.rmtree(ext2, ignore_errors=True)
        ext2.mkdir()
        t0 = time.perf_counter()
        pair = wait_all([compress(work / f"pair-{i}", ext2, args.threads, work / f"pair-{i}.log") for i in (1, 2)], t0)
        load_end = os.getloadavg()[0]
    finally:
        for b in burners:
            b.kill()
            b.wait()
    cmd = f"edgekd compress --target intel-cpu --run-dir RUN --threads {args.threads} -q"
    lines = [
        "## The quickstart under load, with a cold extensions cache (issue 12)", "",
        f"- command: `python bench/bench_under_load.py --work {args.work} --burners {args.burners} --threads "
        f"{args.threads}`; {started:%Y-%m-%d %H:%M} UTC; each run is `{cmd}` with a fresh run directory "
        "and TORCH_EXTENSIONS_DIR set to an empty private folder",
        f"- machine: {where}; {args.burners} `python -c 'while True: pass'` processes ran beside every run; other "
        f"engineers' jobs loaded the machine too (1-min load avg {load_mid:.1f} after the first part, "
        f"{load_end:.1f} after the second)",
        "",
        "| run | exit code | measured budgets failed | wall time | extensions folder afterwards |",
        "|---|---|---|---|---|",
        f"| quickstart alone (+ burners) | {solo[0]} | {failed_budgets(work / 'quickstart')} | {solo[1]:.0f} s | "
        f"{built(ext1)} |",
        f"| two at once, run 1 (+ burners) | {pair[0][0]} | {failed_budgets(work / 'pair-1')} | {pair[0][1]:.0f} s | "
        f"{built(ext2)} (shared) |",
        f"| two at once, run 2 (+ burners) | {pair[1][0]} | {failed_budgets(work / 'pair-2')} | {pair[1][1]:.0f} s | |",
        "",
        f"- logs: {work}/quickstart.log, pair-1.log, pair-2.log",
    ]
    publish(lines, NAME, write=not args.no_results)


if __name__ == "__main__":
    main()
