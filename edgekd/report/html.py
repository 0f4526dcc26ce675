"""report.html (one self-contained file: PNGs inlined as base64, inline CSS, no script, no network) and the
extra sections of report.md (the same plots as PNG files in report_assets/).

Per-class accuracy is the bench stage's: the predictions of the run's final compiled artifact on the whole test
split, from the same run that measured its top-1 (`per_class_from_run`).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from edgekd.fsio import write_atomic
from edgekd.report import plots
from edgekd.search import report as search_report
from edgekd.report.summary import (
    BUDGET_COLUMNS, MODEL_COLUMNS, budget_rows, data_line, model_rows, payoff_line, reported_split, size_line,
)  # fmt: skip

ASSETS = "report_assets"
CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#111827;margin:0;background:#f3f4f6}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d1d5db;padding-bottom:4px}
.card{background:#fff;border-radius:8px;padding:16px 18px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f9fafb;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-weight:600;font-size:13px}
.pass{background:#dcfce7;color:#166534} .fail{background:#fee2e2;color:#991b1b} .est{background:#fef3c7;color:#92400e}
.muted{color:#6b7280;font-size:12.5px} img{max-width:100%;height:auto}
"""


def per_class_from_run(run_dir: Path) -> dict[str, Any]:
    """Top-1 per class of the final compiled artifact on the whole test split, as the bench stage measured it
    (its manifest's `per_class`, from the predictions of its own accuracy run: the model is not run again)."""
    from edgekd.bundle.run_info import open_run
    from edgekd.errors import UsageError

    from edgekd.stages.metrics import metrics_of

    per_class = metrics_of(open_run(Path(run_dir)).manifest("bench")).per_class
    if per_class is None:
        raise UsageError(f"{run_dir}: its bench stage was written by an older edgekd and holds no per-class "
                         "figures: run `edgekd compress` on it again (only the bench stage reruns)")
    return per_class


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _table(cols, rows, num_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f"<td{' class=num' if i in num_cols else ''}>{html.escape(str(c))}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _badge(verdict: str) -> str:
    cls = "fail" if "fail" in verdict else ("est" if "estimated" in verdict else "pass")
    return f'<span class="badge {cls}">{html.escape(verdict)}</span>'


def stage_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for s in report.get("stages", []):
        metrics = ", ".join(f"{k} {v:.2%}" if isinstance(v, float) and "top1" in k else f"{k} {v}"
                            for k, v in s.get("metrics", {}).items()
                            if isinstance(v, (int, float, str)) and ("top1" in k or k in ("kept", "origin")))
        rows.append([s["stage"], s["id"], "reused" if s.get("reused") else "ran", f"{s.get('wall_s', 0):.1f}",
                     metrics[:220], " ".join(s.get("notes", []))[:400]])
    return rows


STAGE_COLUMNS = ("stage", "id", "this run", "wall s", "key metrics", "notes")


def _histories(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    from edgekd.bundle.run_info import open_run

    return open_run(run_dir).histories()


def write_assets(report: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Write report_assets/{accuracy_latency,training_curves,per_class}.png and per_class.json; return them."""
    out_dir = Path(run_dir) / ASSETS
    out_dir.mkdir(exist_ok=True)
    assets: dict[str, Any] = {"accuracy_latency": plots.accuracy_latency_png(report)}
    hist = _histories(Path(run_dir))
    if hist:
        assets["training_curves"] = plots.training_curves_png(hist)
    per_class = per_class_from_run(Path(run_dir))
    assets["per_class"] = plots.per_class_png(per_class)
    for name, png in list(assets.items()):
        write_atomic(out_dir / f"{name}.png", png)
    write_atomic(out_dir / "per_class.json", json.dumps(per_class, indent=2))
    assets["per_class_data"] = per_class
    return assets


def write_html_report(report: dict[str, Any], run_dir: Path, assets: dict[str, Any] | None = None) -> Path:
    """Write RUN/report.html (self-contained) and RUN/report_assets/; returns the HTML path."""
    run_dir = Path(run_dir)
    assets = assets or write_assets(report, run_dir)
    t, pc = report["target"], assets["per_class_data"]
    where = "measured on this machine" if t.get("measured_here") else \
        "the device is not on this machine: device numbers are ESTIMATED (hollow points)"
    img = lambda key, alt: f'<img alt="{alt}" src="{_b64(assets[key])}">' if key in assets else \
        f'<p class="muted">no {alt}</p>'  # noqa: E731
    pc_rows = [[c["class"], c["n"], "-" if c["top1"] is None else f"{c['top1']:.2%}", c["most_confused_with"] or "-"]
               for c in pc["classes"]]
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>edgekd run: {html.escape(t['name'])}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>edgekd run: {html.escape(t['name'])} {_badge(report.get('verdict', '?'))}</h1>",
        f"<div class=muted>{html.escape(t.get('device', ''))} via {html.escape(t.get('runtime', ''))} "
        f"({html.escape(t.get('precision', ''))}); {html.escape(where)}. Data: "
        f"{html.escape(report['data'].get('description', ''))}. Splits: {html.escape(data_line(report))}; the "
        f"verdict uses the {html.escape(reported_split(report))} top-1 only. "
        f"Exit code {report.get('exit_code')}.</div>",
        f"<p>{html.escape(payoff_line(report['int8_payoff']))}</p>" if report.get("int8_payoff") else "",
        "<h2>Models</h2><div class=card>", _table(MODEL_COLUMNS, model_rows(report), (3, 4, 5, 6)),
        f"<p class=muted>{html.escape(size_line(report['sizes']))}</p>" if report.get("sizes") else "", "</div>",
        "<h2>Budgets</h2><div class=card>", _table(BUDGET_COLUMNS, budget_rows(report)), "</div>",
        "<h2>Accuracy against latency</h2><div class=card>", img("accuracy_latency", "accuracy-latency plot"),
        "<p class=muted>Filled: measured. Hollow: estimated for the target device (not measured). Dashed: the "
        "target's latency budget; dotted: the accuracy requirement.</p></div>",
        search_report.html_section(report, run_dir, _table),
        "<h2>Stages</h2><div class=card>", _table(STAGE_COLUMNS, stage_rows(report), (3,)), "</div>",
        "<h2>Training curves</h2><div class=card>", img("training_curves", "training curves"), "</div>",
        f"<h2>Per-class accuracy of the final artifact</h2><div class=card><p class=muted>{html.escape(pc['artifact'])}"
        f" on {pc['images']} {html.escape(reported_split(report))} images; overall {pc['top1']:.2%}. "
        f"{html.escape(pc.get('note', ''))}</p>",
        img("per_class", "per-class accuracy"),
        _table(("class", "images", "top-1", "most often mistaken for"), pc_rows, (1, 2)), "</div>",
        "<h2>Methodology</h2><div class=card><p>", html.escape(report.get("methodology", "")), "</p></div>",
        f"<p class=muted>edgekd {html.escape(str(report.get('edgekd_version', '')))}; run folder "
        f"{html.escape(str(report.get('run_dir', '')))}</p></main></body></html>",
    ]
    out = run_dir / "report.html"
    write_atomic(out, "".join(parts))
    return out


def markdown_sections(report: dict[str, Any], run_dir: Path, assets: dict[str, Any]) -> str:
    """Sections appended to report.md: the plots (files in report_assets/) and per-class accuracy."""
    pc = assets["per_class_data"]
    lines = ["## Accuracy against latency", "",
             f"![accuracy against latency]({ASSETS}/accuracy_latency.png)", "",
             "Filled points are measured; hollow points are estimated for the target device (labelled "
             "\"estimated\"). Dashed line: latency budget; dotted line: accuracy requirement.", ""]
    lines += [search_report.markdown_section(report, run_dir)]
    if "training_curves" in assets:
        lines += ["## Training curves", "", f"![training curves]({ASSETS}/training_curves.png)", ""]
    lines += ["## Per-class accuracy of the final artifact", "",
              f"{pc['artifact']} on {pc['images']} {reported_split(report)} images; overall {pc['top1']:.2%}. "
              f"{pc.get('note', '')}", "",
              f"![per-class accuracy]({ASSETS}/per_class.png)", "",
              "| class | images | top-1 | most often mistaken for |", "|---|---|---|---|"]
    lines += [f"| {c['class']} | {c['n']} | {'-' if c['top1'] is None else format(c['top1'], '.2%')} | "
              f"{c['most_confused_with'] or '-'} |" for c in pc["classes"]]
    return "\n".join(lines) + "\n\nAn HTML version with the plots inlined: report.html\n"


def write_rich_reports(report: dict[str, Any], run_dir: Path) -> tuple[Path, str]:
    """Plots once, then report.html; returns (html path, markdown sections to append to report.md)."""
    assets = write_assets(report, Path(run_dir))
    return write_html_report(report, Path(run_dir), assets), markdown_sections(report, Path(run_dir), assets)
