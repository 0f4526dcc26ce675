"""`edgekd bench ARTIFACT`: measure a compiled artifact (run directory, bundle or model file) on a target.

This module parses, calls edgekd.benchmark.run_bench and prints.

No training, no torch: this is what a device with only its runtime installed runs. The artifact's sha256 is
checked against its manifest / bundle.json first. When the target's runtime or device is not on this
machine, the artifact is measured with a host runtime and the device latency is estimated (roofline);
verdicts on estimates read "estimated pass/fail" and exit 0 unless --strict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from edgekd.artifacts import resolve
from edgekd.benchmark import TimingConfig, required_top1, run_bench, target_for
from edgekd.cli.common import console, err_console, guarded, print_json, set_run_dir, stdout_to_stderr
from edgekd.report.summary import precision_text

__all__ = ["bench", "print_bench", "register", "required_top1", "run_bench", "target_for"]  # re-exported for callers

Opt = typer.Option


def print_bench(report: dict[str, Any]) -> None:
    row, t = report["row"], report["target"]
    lat = row["latency"]
    title = f"edgekd bench -> {t['name']} ({t['runtime']} {t['device']})"
    if not report["measured_on_target"]:
        title += f": measured with {report['measured_with']} ({row['measured_on']})"
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    est, mem = row.get("estimated_latency_ms"), row.get("memory_bytes")
    for key, value in (
        ("artifact", f"{row['file']} ({row['role']}, sha256 {(row['sha256'] or 'not recorded')[:12]})"),
        ("runtime", f"{row['runtime']} {row['device']}, {precision_text(row)}, batch {row['batch']} "
                    f"({row['measured_on']})"),
        ("top-1", "-" if row.get("top1") is None else f"{row['top1']:.2%}"
                  + (f" on {row['top1_on']}" if row.get("top1_on") else "")),
        ("latency", f"p50 {lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms "
                    f"over {lat['n']} runs (cv {lat['cv']:.2f})"),
        ("runtime's own timing", "-" if not row.get("runtime_latency") else
         f"p50 {row['runtime_latency']['median_ms']:.3f} ms (InferRequest.latency); the Python caller adds "
         f"{row['runtime_latency']['caller_overhead_ms'] * 1000:.0f} us"),
        ("device latency", "-" if est is None else f"{est:.3f} ms (ESTIMATED, roofline)"),
        ("size", f"{row['size_bytes'] / 1e6:.3f} MB"),
        ("memory", "-" if mem is None else f"{mem / 1e6:.1f} MB (peak resident memory added by loading and "
                                           "running, fresh process)"),
    ):
        table.add_row(key, value)
    console.print(table)
    rep = report["repeats"]
    if rep["n"] > 1:
        s = rep["spread"]
        console.print(f"p50 over {rep['n']} repeats: min {s['min']:.4f} ms, median {s['median']:.4f} ms, "
                      f"max {s['max']:.4f} ms, CV {s['cv']:.1%} (range {s['range_over_median']:.1%} of median)")
    if report["budgets"]:
        budgets = Table(title="budgets")
        for col in ("budget", "limit", "value", "basis", "verdict"):
            budgets.add_column(col)
        for b in report["budgets"]:
            style = "red" if "fail" in b["verdict"] else \
                ("yellow" if "estimated" in b["verdict"] or b["verdict"] == "inconclusive" else "green")
            budgets.add_row(b["name"], b["limit_text"], b["value_text"], b["basis"], b["verdict"], style=style)
        console.print(budgets)
    for note in report["notes"]:
        err_console.print(f"[yellow]note:[/] {escape(note)}", markup=True)
    console.print(f"verdict: [bold]{report['verdict']}[/] (exit {report['exit_code']})", markup=True)


@guarded
def bench(
    artifact: Annotated[Path, typer.Argument(help="A run directory, a bundle folder (bundle.json) or a model file "
                                             "(.onnx, .xml IR, .ort, .plan).")],
    target: Annotated[Optional[str], Opt("--target", "-t", help="Target profile name or YAML path (default: the "
                                         "run's or bundle's own target).")] = None,
    role: Annotated[Optional[str], Opt("--role", help="teacher_fp32 | student_fp32 | student_int8 (default "
                                       "student_int8; a single file is what it is).")] = None,
    eval_set: Annotated[Optional[Path], Opt("--eval-set", help="eval_set.npz for a single model file (accuracy); "
                                            "without it: latency only.")] = None,
    repeat: Annotated[int, Opt("--repeat", min=1, help="Measure N times; reports the run-to-run spread of p50.")] = 1,
    min_s: Annotated[float, Opt("--min-s", min=0.0, help="Minimum timed seconds per measurement.")] = 1.0,
    strict: Annotated[bool, Opt("--strict", help="An estimated budget failure exits 1 too.")] = False,
    as_json: Annotated[bool, Opt("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure latency and accuracy of a compiled artifact on a target, without retraining.

    Exit codes: 0 every measured budget holds (estimated verdicts are listed, exit 0 unless --strict);
    1 a measured budget or the accuracy floor fails; 2 bad usage or input; 4 internal error.
    """
    with stdout_to_stderr(as_json):  # --json: stdout holds the JSON document only
        res = resolve(artifact, eval_set)
        if res.kind == "run":
            set_run_dir(res.path)  # an internal error's traceback goes to the run's logs/
        report = run_bench(res, target, role, repeat, eval_set, TimingConfig(min_s=min_s), strict)
    if as_json:
        print_json(report)
    else:
        print_bench(report)
    raise typer.Exit(report["exit_code"])


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
