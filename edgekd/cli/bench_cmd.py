"""`edgekd bench ARTIFACT`: measure a compiled artifact (run directory, bundle or model file) on a target.

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

from edgekd.artifacts import Candidate, Resolved, pick_role, resolve, verify
from edgekd.benchmark import (
    TimingConfig, chance_checks, choose_precision, estimate, eval_inputs, judge, layers_not_in_precision, measure,
    plan_measurement, settings_for, spread,
)  # fmt: skip
from edgekd.cli.common import console, err_console, guarded, print_json, set_run_dir, stdout_to_stderr
from edgekd.errors import UsageError
from edgekd.report.summary import exit_code_for, overall_verdict, precision_text
from edgekd.runtimes.timing import METHODOLOGY
from edgekd.targets import TargetProfile, load_target

Opt = typer.Option


def target_for(res: Resolved, name: str | None) -> TargetProfile:
    """--target, or the run's / bundle's own target; a single file needs --target."""
    if name is None:
        if res.run_target is None:
            raise UsageError(f"pass --target for {res.path.name} (`edgekd targets` lists them)")
        name = res.run_target
    return load_target(name)


def candidate_for(res: Resolved, role: str, runtime: str, side: str = "") -> Candidate:
    """The artifact of `role` that `runtime` can load; a TensorRT engine from elsewhere is refused by its
    fingerprint (edgekd.runtimes.tensorrt.verify_engine)."""
    engines = [c for c in res.candidates if c.role == role and c.format == "trt_engine"]
    cand = res.select(role, runtime)
    if engines and (runtime == "tensorrt" or cand is None):
        from edgekd.runtimes.tensorrt import trt_fingerprint, verify_engine

        verify_engine(engines[0].file, engines[0].sha256 or None, current=trt_fingerprint())
    if cand is None:
        have = sorted({f"{c.label} ({'/'.join(c.runtimes)})" for c in res.candidates if c.role == role})
        raise UsageError(f"{side}{res.path.name} has no {role} artifact that {runtime} can load "
                         f"(it has: {', '.join(have) or 'none'})")
    return cand


def required_top1(target: TargetProfile, teacher_top1: float | None) -> float | None:
    acc = target.accuracy
    req = [acc.floor] if acc.floor is not None else []
    if acc.max_drop_points is not None and teacher_top1 is not None:
        req.append(teacher_top1 - acc.max_drop_points / 100)
    return max(req) if req else None


def run_bench(artifact: Path, target_name: str | None = None, role: str | None = None, repeat: int = 1,
              eval_set: Path | None = None, timing: TimingConfig = TimingConfig(), strict: bool = False,
              ) -> dict[str, Any]:
    """Measure one artifact `repeat` times on the target (or a host substitute) and judge it; the report."""
    if repeat < 1:
        raise UsageError("--repeat must be >= 1")
    res = resolve(artifact, eval_set)
    if res.kind == "run":
        set_run_dir(res.path)
    target = target_for(res, target_name)
    role = pick_role(res, role)
    plan = plan_measurement(target)
    from edgekd.devicebuild.record import use_compiled

    res, compiled_notes = use_compiled(res, target, plan)  # what `edgekd compile` built here, when it did
    cand = candidate_for(res, role, plan.runtime)
    precision = choose_precision(target, cand.precision, plan.runtime, plan.on_target, cand.label)
    verify(cand)
    x, labels, classes = eval_inputs(res.eval_set, res.input_shape, target.batch_size, res.eval_sha256,
                                     label=f"{res.path.name} eval set")
    if res.input_shape and tuple(x.shape[1:]) != res.input_shape:
        raise UsageError(f"eval set images are {list(x.shape[1:])} but {cand.label} takes {list(res.input_shape)}")
    settings = settings_for(target, precision, device=None if plan.on_target else plan.device)
    runs = [measure(cand.file, plan.runtime, settings, x, labels, target.batch_size, timing,
                    expected_sha256=cand.sha256 or None) for _ in range(repeat)]
    p50s = [r["latency"]["median_ms"] for r in runs]
    m = runs[int(sorted(range(repeat), key=lambda i: p50s[i])[(repeat - 1) // 2])]  # the median repeat
    row: dict[str, Any] = {
        "role": role, "file": cand.label, "path": str(cand.file), "sha256": cand.sha256 or None,
        "origin": cand.origin, "precision": precision, "runtime": plan.runtime, "device": settings.device,
        "measured_on": "target" if plan.on_target else "host substitute", **m,
        "layers_not_in_precision": layers_not_in_precision(m["runtime_facts"]),
    }
    notes = [n for n in [plan.reason] + compiled_notes + [r["cv_warning"] for r in runs] if n]
    if cand.origin == "export":
        notes.append(f"{res.path.name} has no {role} compiled for {plan.runtime}: measured the exported {cand.label}")
    if labels is None:
        notes.append("no eval set: latency on seeded random inputs, accuracy not measured (pass --eval-set)")
    if not plan.on_target:
        onnx = cand.onnx or res.onnx_for(role)
        if onnx is not None:
            est_prec = "int8" if precision == "int8" else ("fp16" if target.device.peak_fp16_tflops else "fp32")
            row["estimate"] = estimate(onnx, target, est_prec, target.batch_size)
            row["estimated_latency_ms"] = row["estimate"]["latency_ms"]
        else:
            notes.append(f"no ONNX file of {role} to estimate {target.device.name} latency from")
    required = required_top1(target, res.teacher_top1) if labels is not None else None
    budgets = judge(target, row, required, plan.on_target)
    if required is not None and classes:  # an accuracy requirement is never met by a chance-level model
        learned = chance_checks(res.teacher_top1, row["top1"], len(classes), len(labels))
        budgets += learned
        notes += [c["message"] for c in learned]
    code = exit_code_for(budgets, strict)
    return {
        "artifact": str(res.path), "kind": res.kind, "role": role,
        "target": {"name": target.name, "runtime": target.runtime.name, "device": target.runtime.device,
                   "device_name": target.device.name, "precision": target.precision,
                   "budgets": target.budgets.model_dump(mode="json")},
        "measured_on_target": plan.on_target, "measured_with": f"{plan.runtime} {settings.device}",
        "row": row, "classes": classes, "eval_set": str(res.eval_set) if res.eval_set else None,
        "repeats": {"n": repeat, "p50_ms": p50s, "spread": spread(p50s)},
        "budgets": budgets, "verdict": overall_verdict(budgets) if budgets else "no budgets judged",
        "exit_code": code, "strict": strict, "notes": notes,
        "methodology": METHODOLOGY + f" Batch {target.batch_size}; --repeat {repeat}: each repeat loads the "
                       "artifact afresh and measures again; the row is the repeat with the median p50.",
    }


def print_bench(report: dict[str, Any]) -> None:
    row, t = report["row"], report["target"]
    lat = row["latency"]
    title = f"edgekd bench -> {t['name']} ({t['runtime']} {t['device']})"
    if not report["measured_on_target"]:
        title += f": measured with {report['measured_with']} (host substitute)"
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    est, mem = row.get("estimated_latency_ms"), row.get("memory_bytes")
    for key, value in (
        ("artifact", f"{row['file']} ({row['role']}, sha256 {(row['sha256'] or 'not recorded')[:12]})"),
        ("runtime", f"{row['runtime']} {row['device']}, {precision_text(row)}, batch {row['batch']} "
                    f"({row['measured_on']})"),
        ("top-1", "-" if row.get("top1") is None else f"{row['top1']:.2%}"),
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
        report = run_bench(artifact, target, role, repeat, eval_set, TimingConfig(min_s=min_s), strict)
    if as_json:
        print_json(report)
    else:
        print_bench(report)
    raise typer.Exit(report["exit_code"])


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
