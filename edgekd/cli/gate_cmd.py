"""`edgekd gate --baseline A --candidate B --target T`: the CI latency regression gate.

This module parses, calls edgekd.gate.run_gate and prints. What the gate does lives in edgekd.gate: both
compiled artifacts are loaded with the target's runtime and settings and re-measured in the same job,
interleaved (edgekd.gate.sample), and judged (edgekd.gate.decide: the latency comparison plus absolute
checks on budgets and accuracy); edgekd.gate.write_outputs writes JSON, JUnit, Markdown and the plot.

The gate never judges on estimates: a target this machine cannot run exits 2 with the reason.
Exit codes: 0 pass, 1 fail, 3 inconclusive, 2 bad usage or input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from edgekd.cli.common import console, guarded, print_json, set_run_dir, stdout_to_stderr
from edgekd.errors import UsageError
from edgekd.gate import GateConfig, GateResult, report_json, run_gate, write_outputs

__all__ = ["gate", "print_gate", "register", "report_json", "run_gate", "write_outputs"]  # re-exported for callers

Opt = typer.Option


def print_gate(result: GateResult, context: dict[str, Any]) -> None:
    color = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[result.verdict]
    table = Table(title=f"edgekd gate -> {context['target']['name']} ({context['target']['runtime']} "
                        f"{context['target']['device']})")
    for col in ("check", "status", "measured", "limit", "why"):
        table.add_column(col)
    s = result.stats
    table.add_row("latency regression", s.verdict, f"B/A {s.ratio:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]",
                  f"<= {1 + s.threshold:.2f}", s.reason)
    for c in result.checks:
        table.add_row(c.name, c.status, f"{c.measured:.4g} {c.unit}", f"{c.limit:g}", c.reason)
    console.print(table)
    for note in context["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", markup=True)
    console.print(f"[bold {color}]{result.verdict.upper()}[/] (exit {result.exit_code}): {escape(result.reason)} "
                  f"[dim]({context['wall_s']:.1f} s)[/]", markup=True)


_FLAGS = {"max_cv": "--max-spread", "reruns_when_noisy": "--reruns"}  # GateConfig fields named otherwise


@guarded
def gate(
    baseline: Annotated[Path, Opt("--baseline", help="Baseline: run directory, bundle folder or model file.")],
    candidate: Annotated[Path, Opt("--candidate", help="Candidate: run directory, bundle folder or model file.")],
    target: Annotated[Optional[str], Opt("--target", "-t", help="Target profile (default: the baseline's).")] = None,
    threshold: Annotated[float, Opt("--threshold", help="Fail when the candidate is this much slower.")] = 0.10,
    alpha: Annotated[float, Opt("--alpha", help="Significance level of the one-sided test.")] = 0.002,
    rounds: Annotated[int, Opt("--rounds", help="Interleaved rounds (>= 10).")] = 60,
    runs_per_round: Annotated[int, Opt("--runs-per-round", help="Calls per arm and round.")] = 40,
    max_spread: Annotated[float, Opt("--max-spread", help="Noise limit: robust spread of the per-round B/A "
                                     "ratios (per-arm CV with --independent) above which the verdict is "
                                     "inconclusive.")] = 0.15,
    reruns: Annotated[int, Opt("--reruns", help="Fresh measurements after a too-noisy one (0-5).")] = 1,
    independent: Annotated[bool, Opt("--independent", help="Compare the arms as independent samples (Mann-Whitney) "
                                     "instead of paired by round (Wilcoxon; cancels machine swings).")] = False,
    role: Annotated[Optional[str], Opt("--role", help="Artifact role (default student_int8).")] = None,
    eval_set: Annotated[Optional[Path], Opt("--eval-set", help="eval_set.npz for model files (accuracy).")] = None,
    accuracy_tolerance: Annotated[float, Opt("--accuracy-tolerance", help="Top-1 points, two-sided.")] = 0.5,
    as_json: Annotated[bool, Opt("--json", help="Print the JSON report to stdout.")] = False,
    junit: Annotated[Optional[Path], Opt("--junit", help="Write JUnit XML here.")] = None,
    markdown: Annotated[Optional[Path], Opt("--markdown", help="Write the Markdown summary here (default: append "
                                            "to $GITHUB_STEP_SUMMARY when set).")] = None,
    plot: Annotated[Optional[Path], Opt("--plot", help="Write a PNG of both latency distributions.")] = None,
    out: Annotated[Optional[Path], Opt("--out", help="Write gate.json, gate.xml, gate.md, gate.png here.")] = None,
    allow_host_mismatch: Annotated[bool, Opt("--allow-host-mismatch", help="Judge on this host although it is not "
                                             "the profile's device (`edgekd targets --check`); every output says "
                                             "so.")] = False,
) -> None:
    """Latency regression gate: re-measure baseline and candidate interleaved on the target and decide.

    Exit codes: 0 pass; 1 fail (slower beyond the threshold, or a budget / accuracy check fails);
    3 inconclusive (too noisy or too close to call); 2 bad usage or input, or a target this machine cannot run;
    4 internal error (its traceback goes to --out/logs/ when --out is given).
    """
    if out is not None:
        set_run_dir(out)
    try:
        cfg = GateConfig(threshold=threshold, alpha=alpha, rounds=rounds, runs_per_round=runs_per_round,
                         max_cv=max_spread, reruns_when_noisy=reruns, pairing="none" if independent else "round")
    except ValueError as exc:
        err = exc.errors()[0] if hasattr(exc, "errors") else {"loc": ["?"], "msg": str(exc)}
        field = str(err["loc"][0])
        flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
        raise UsageError(f"{flag}: {err['msg']}") from None
    with stdout_to_stderr(as_json):  # --json: stdout holds the JSON document only
        result, context, samples = run_gate(baseline, candidate, target, cfg, role, eval_set, accuracy_tolerance,
                                             allow_host_mismatch)
        both = lambda explicit, name: [p for p in (explicit, out / name if out else None) if p]  # noqa: E731
        write_outputs(result, context, samples, json_files=both(None, "gate.json"), junit=both(junit, "gate.xml"),
                      markdown=both(markdown, "gate.md"), plot=both(plot, "gate.png"), step_summary=markdown is None)
    if as_json:
        print_json(report_json(result, context))
    else:
        print_gate(result, context)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("gate")(gate)
