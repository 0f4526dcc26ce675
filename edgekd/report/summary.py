"""Assemble report.json from the stage manifests, and print/write it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgekd import __version__
from edgekd.data.roles import DECIDES, REPORTS, roles_line
from edgekd.errors import EXIT_BUDGET_FAILED, EXIT_OK
from edgekd.manifest import write_json_atomic


def _stage_summary(outcome) -> dict[str, Any]:
    m = outcome.manifest
    metrics = {k: v for k, v in m.metrics.items() if not isinstance(v, (list, dict))}
    return {"stage": m.stage, "id": m.id, "dir": outcome.stage_dir.name, "reused": outcome.skipped,
            "wall_s": m.wall_s, "metrics": metrics, "notes": m.notes}


def exit_code_for(budgets: list[dict[str, Any]], strict: bool) -> int:
    """1 when a measured budget fails (or, with --strict, an estimated one or one measured on a busy host
    and therefore inconclusive); else 0."""
    for b in budgets:
        if b["verdict"] == "fail" or (strict and b["verdict"] in ("estimated fail", "inconclusive")):
            return EXIT_BUDGET_FAILED
    return EXIT_OK


def overall_verdict(budgets: list[dict[str, Any]]) -> str:
    verdicts = {b["verdict"] for b in budgets}
    for word in ("fail", "estimated fail", "inconclusive", "estimated pass"):
        if word in verdicts:
            return word
    return "pass"


def build_report(outcomes, opts, target, dataset, run_dir: Path, strict: bool = False) -> dict[str, Any]:
    by_stage = {o.manifest.stage: o for o in outcomes}
    bench = by_stage["bench"].manifest.metrics
    budgets = bench.get("budgets", [])
    return {
        "edgekd_version": __version__,
        "run_dir": str(run_dir),
        "target": {"name": target.name, "runtime": target.runtime.name, "device": target.device.name,
                   "precision": target.precision, "measured_here": bench.get("measured_on_target", False),
                   "budgets": target.budgets.model_dump(mode="json")},
        "data": {"description": dataset.description, "decisions_split": DECIDES, "reported_split": REPORTS,
                 "splits": dataset.splits(), "roles": dataset.roles_line(),
                 "fingerprint": dataset.fingerprint, "classes": dataset.preprocessing.class_names},
        "options": opts.model_dump(mode="json"),
        "stages": [_stage_summary(o) for o in outcomes],
        "models": bench.get("rows", []),
        "budgets": budgets,
        "methodology": bench.get("methodology", ""),
        "int8_payoff": bench.get("int8_payoff", {}),
        "sizes": bench.get("sizes", {}),  # FP32 and INT8 student, each the file the target deploys
        # (H, W) of each model's input: a student may take smaller images than its teacher (the data's size)
        "input_sizes": {"student": bench.get("student_input_size"), "teacher": bench.get("teacher_input_size")},
        "quantization": quantization_summary(by_stage["qad"].manifest.metrics) if "qad" in by_stage else {},
        "quantization_pt2e": by_stage["qad_pt2e"].manifest.metrics.get("routes", {}) if "qad_pt2e" in by_stage else {},
        "verdict": overall_verdict(budgets),
        "exit_code": exit_code_for(budgets, strict),
        "strict": strict,
        "runtime_not_measured": bench.get("runtime_not_measured"),  # the profile's runtime did not run here
    }


def quantization_summary(q: dict[str, Any]) -> dict[str, Any]:
    """What the qad stage kept and every float-layer set it tried (decided on the validation split)."""
    return {"kept": q.get("kept"), "float_layers": q.get("float_layers", []), "required_top1": q.get("required_top1"),
            "requirement_met": q.get("requirement_met"), "fp32_top1": q.get("fp32_top1"),
            "attempts": q.get("attempts", []), "notes": q.get("fallback_notes", []),
            "fallback_budget_s": q.get("fallback_budget_s")}


ATTEMPT_COLUMNS = ("float layers", "method", "val top-1", "cost s")


def attempt_rows(report: dict[str, Any]) -> list[list[str]]:
    """NNCF attempts, then each PT2E route's PTQ and QAD (edgekd.stages.qad_pt2e), all on val."""
    rows = [[", ".join(a["float_layers"]) or "none (all INT8)", a["method"], f"{a['metric']:.2%}", f"{a['cost_s']:.1f}"]
            for a in report.get("quantization", {}).get("attempts", [])]
    for route, r in (report.get("quantization_pt2e") or {}).items():
        for method in ("ptq", "qad"):
            if r.get(f"{method}_top1") is not None:
                kept = " (kept)" if r.get("kept") == method else ""
                rows.append(["none (all INT8)", f"{method} {route}{kept}", f"{r[f'{method}_top1']:.2%}",
                             f"{r.get(f'{method}_s', 0.0):.1f}"])
    return rows


def _fallback_ran(report: dict[str, Any]) -> bool:
    q = report.get("quantization") or {}
    attempts = q.get("attempts", [])
    return bool(q.get("notes")) or any(a["float_layers"] != attempts[0]["float_layers"] for a in attempts)


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


_PRECISION_NAMES = {"f32": "fp32", "f16": "fp16", "i8": "int8", "u8": "int8"}


def precision_text(row: dict[str, Any]) -> str:
    """'int8', or 'int8 (3 layers fp32)' when layers ran in another precision than asked (named in
    report.json under models[].layers_not_in_precision)."""
    layers = row.get("layers_not_in_precision") or []
    off = Counter(_PRECISION_NAMES.get(x["precision"], x["precision"]) for x in layers)
    if not off:
        return row["precision"]
    parts = [f"{n} layer{'s' if n > 1 else ''} {p}" for p, n in off.items()]
    return f"{row['precision']} ({', '.join(parts)})"


def model_name(row: dict[str, Any], report: dict[str, Any]) -> str:
    """The row's model, with its input size when it differs from the teacher's (a student at a smaller input:
    edgekd.search.resolution; the teacher saw the data's size)."""
    teacher = next((m.get("input_size") for m in report["models"] if m.get("role") == "teacher_fp32"), None)
    size = row.get("input_size")
    if not size or not teacher or list(size) == list(teacher):
        return row["model"]
    return f"{row['model']} @ {size[0]}x{size[1]} (teacher {teacher[0]}x{teacher[1]})"


def model_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in report["models"]:
        lat = r.get("latency") or {}
        est = r.get("estimated_latency_ms")
        p50 = _fmt_ms(lat.get("median_ms")) if lat else "-"
        if est is not None:  # device estimate beside a host measurement: never mixed, always labelled
            p50 += f" (device est. {est:.3f})"
        rows.append([r["stage"], model_name(r, report), f"{precision_text(r)} / {r['runtime']}", _pct(r.get("top1")),
                     _pct(r.get("val_top1")), p50, _fmt_ms(lat.get("p90_ms")), _size(r.get("size_bytes")),
                     r.get("verdict", "-")])
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def reported_split(report: dict[str, Any]) -> str:
    """The split whose top-1 the report shows and judges ('test'; a report from before the roles: its name)."""
    data = report.get("data", {})
    return data.get("reported_split") or data.get("val_split") or "held-out"


def data_line(report: dict[str, Any]) -> str:
    """Which split decided what, with image counts (report.json's data.splits)."""
    data = report.get("data", {})
    return roles_line(data.get("splits") or {}) or f"accuracy on the {reported_split(report)} split"


# top-1: the compiled artifact on test (reported, judged); val top-1: PyTorch, the stage that decided on val
MODEL_COLUMNS = ("stage", "model", "precision / runtime", "test top-1", "val top-1", "p50 ms", "p90 ms", "size",
                 "verdict")
BUDGET_COLUMNS = ("budget", "limit", "value", "basis", "verdict")


def budget_rows(report: dict[str, Any]) -> list[list[str]]:
    return [[b["name"], b["limit_text"], b["value_text"], b["basis"], b["verdict"]] for b in report["budgets"]]


def print_report(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"edgekd compress -> {report['target']['name']} ({report['target']['runtime']})")
    for col in MODEL_COLUMNS:
        table.add_column(col)
    for row in model_rows(report):
        table.add_row(*row)
    console.print(table)
    budgets = Table(title="budgets")
    for col in BUDGET_COLUMNS:
        budgets.add_column(col)
    for row in budget_rows(report):
        style = "red" if "fail" in row[-1] else ("yellow" if "estimated" in row[-1] else "green")
        budgets.add_row(*row, style=style)
    console.print(budgets)
    if report.get("sizes"):
        console.print(size_line(report["sizes"]), markup=False)
    if _fallback_ran(report) or report.get("quantization_pt2e"):
        attempts = Table(title="INT8 attempts (float-layer fallback; PT2E routes for mobile runtimes)")
        for col in ATTEMPT_COLUMNS:
            attempts.add_column(col)
        for row in attempt_rows(report):
            attempts.add_row(*row)
        console.print(attempts)
        for note in report["quantization"]["notes"]:
            console.print(note, markup=False)
    console.print(f"data: {escape(data_line(report))}", markup=True)
    if report.get("int8_payoff"):  # next to the verdict: did INT8 pay off, and if not, why
        console.print(payoff_line(report["int8_payoff"]), markup=False)
    console.print(f"verdict: [bold]{report['verdict']}[/] (exit {report['exit_code']}){unmeasured_text(report)}; "
                  f"report: {escape(str(report['run_dir']))}/report.md", markup=True)


def unmeasured_text(report: dict[str, Any]) -> str:
    """Appended to the verdict line when the profile's own runtime was not measured (edgekd.export.mobile)."""
    note = report.get("runtime_not_measured")
    return f" [bold yellow]on a substitute runtime[/]: {escape(note)}" if note else ""


def payoff_line(p: dict[str, Any]) -> str:
    """Did INT8 pay off? Speed ratio and accuracy cost of the INT8 student against the FP32 student."""
    if "speedup" in p:
        lo, hi = p["speedup_ci95"]
        speed = f"{p['speedup']:.2f}x speed (95% CI {lo:.2f}-{hi:.2f}, measured interleaved)"
    else:  # a run made before the interleaved measurement existed
        speed = f"{p['speedup_p50']:.2f}x p50 speed"
    line = (f"INT8 vs FP32 student ({p['measured_with']}): {speed}, "
            f"accuracy cost {p['accuracy_cost_points']:+.2f} points")
    if p.get("why_not"):  # edgekd.benchmark.payoff: the causes, from the artifacts and this host
        line += f"; INT8 is not faster than FP32 here because: {'; '.join(p['why_not'])}"
    if p.get("layers_not_in_int8"):
        line += f"; layers not run in INT8: {', '.join(map(str, p['layers_not_in_int8']))}"
    return line


def size_line(s: dict[str, Any]) -> str:
    """FP32 and INT8 student side by side, each the file the target deploys (or its stand-in), and the ratio."""
    ratio = f"{s['int8_over_fp32']:.2f}x" if s.get("int8_over_fp32") is not None else "-"
    basis = "the files the target deploys" if s.get("measured") else "sizes estimated from stand-in files"
    return (f"size, INT8 vs FP32 student ({basis}): {_size(s['int8_bytes'])} ({s.get('int8_file')}) vs "
            f"{_size(s['fp32_bytes'])} ({s.get('fp32_file')}): {ratio}")


def markdown(report: dict[str, Any]) -> str:
    def table(cols, rows):
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    t = report["target"]
    parts = [
        f"# edgekd run: {t['name']}", "",
        f"- target: {t['name']} - {t['device']} via {t['runtime']} ({t['precision']}); "
        f"{'measured on this machine' if t['measured_here'] else 'device not here: device numbers are ESTIMATED'}",
        f"- data: {report['data']['description']}",
        f"- splits: {data_line(report)}. The verdict uses the {reported_split(report)} top-1 only; "
        "val top-1 is the PyTorch figure of the stage that decided on val (best epoch, PTQ vs QAD, fallback)",
        f"- verdict: **{report['verdict']}** (exit code {report['exit_code']})"
        + (f"; on a substitute runtime: **{report['runtime_not_measured']}**" if report.get("runtime_not_measured")
           else ""),
        f"- {payoff_line(report['int8_payoff'])}" if report.get("int8_payoff") else "",
        f"- {size_line(report['sizes'])}" if report.get("sizes") else "", "",
        "## Models", "", table(MODEL_COLUMNS, model_rows(report)), "",
        "## Budgets", "", table(BUDGET_COLUMNS, budget_rows(report)), "",
        "## INT8 attempts", "", table(ATTEMPT_COLUMNS, attempt_rows(report)), "",
        *[f"- {n}" for n in report.get("quantization", {}).get("notes", [])], "",
        "## Stages", "",
        table(("stage", "id", "reused", "wall s", "notes"),
              [[s["stage"], s["id"], "yes" if s["reused"] else "no", f"{s['wall_s']:.1f}", " ".join(s["notes"])]
               for s in report["stages"]]), "",
        "## Methodology", "", report.get("methodology", ""), "",
    ]
    return "\n".join(parts)


def write_reports(report: dict[str, Any], run_dir: Path) -> None:
    from edgekd.report.html import write_rich_reports  # plots, per-class accuracy, report.html (issue 7)

    write_json_atomic(run_dir / "report.json", json.dumps(report, indent=2, default=str))
    _, sections = write_rich_reports(report, run_dir)
    write_json_atomic(run_dir / "report.md", markdown(report) + "\n" + sections)
