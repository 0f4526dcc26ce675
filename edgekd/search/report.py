"""The student search in report.html / report.md: the Pareto plot and the table of candidates and fates."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

COLUMNS = ("candidate", "source", "MMACs", "latency ms (judged on)", "proxy val top-1 by rung",
           "teacher agreement, KD loss (last rung)", "proxy s", "fate")


def _search(report: dict[str, Any], run_dir: Path) -> tuple[dict[str, Any], Path] | None:
    for s in report.get("stages", []):
        if s.get("stage") == "search":
            folder = Path(run_dir) / s["dir"]
            return json.loads((folder / "manifest.json").read_text()), folder
    return None


def rows(metrics: dict[str, Any]) -> list[list[str]]:
    out = []
    for c in metrics.get("candidates", []):
        lat = c.get("latency") or {}
        how = "estimated" if lat.get("estimated") else f"measured, {lat.get('judged_on', lat.get('percentile'))}"
        tops = ", ".join(f"r{r} {v:.2%}" for r, v in sorted((c.get("proxy_top1") or {}).items())) or "-"
        secs = sum(v for v in (c.get("proxy_s") or {}).values() if v) or 0
        out.append([c["name"], _source(c), f"{c['macs'] / 1e6:.2f}", f"{lat.get('latency_ms', float('nan')):.3f} ({how})",
                    tops, _signals(c), f"{secs:.0f}", c.get("fate", "")])
    return out


def _signals(c: dict[str, Any]) -> str:
    """'87.5%, 0.412' from the last rung's teacher agreement and KD loss on val; '-' when not trained."""
    agree, kd = c.get("proxy_agree") or {}, c.get("proxy_kd") or {}
    if not agree:
        return "-"
    last = max(agree, key=int)
    a, k = agree[last], kd.get(last)
    return f"{a:.1%}, {k:.3f}" if a is not None and k is not None else "-"


def _source(c: dict[str, Any]) -> str:
    """'pruned teacher: 19 blocks removed, channels' for a pruned teacher; the source itself otherwise."""
    how = ([f"{c['dropped_blocks']} blocks removed"] if c.get("dropped_blocks") else []) + \
        (["channels"] if c.get("pruned_from") else [])
    return f"{c['source']}: {', '.join(how)}" if how else c["source"]


def summary_line(metrics: dict[str, Any]) -> str:
    m = metrics
    budget = f"{m['budget_ms']:g} ms {m['percentile']}" if m.get("budget_ms") else "no latency budget"
    line = (f"chosen: {m['chosen']} ({m['chosen_source']}, {m['chosen_latency_ms']:.3f} ms, proxy val "
            f"{m['chosen_val_top1']:.2%}) against {budget}; {len(m.get('candidates', []))} candidates, "
            f"{m['rungs']} rung(s); latency phase {m['latency_phase_s']:.0f} s, proxy runs {m['proxy_phase_s']:.0f} s")
    if m.get("sizes_tried"):
        size = m.get("chosen_input_size") or []
        line += (f"; smaller inputs tried for candidates over the latency budget: "
                 f"{', '.join(f'{h}x{w}' for h, w in m['sizes_tried'])}; the chosen student takes "
                 f"{'x'.join(str(v) for v in size)}")
    if m.get("time_budget_s"):
        line += f" of a {m['time_budget_s']:.0f} s time budget" + (" (ran out)" if m.get("ran_out_of_time") else "")
    if (m.get("confidence") or {}).get("line"):
        line += f". Choice: {m['confidence']['line']}"
    return line + ". Every decision on the val split."


def html_section(report: dict[str, Any], run_dir: Path, table) -> str:
    found = _search(report, run_dir)
    if found is None:
        return ""
    manifest, folder = found
    png = (folder / "pareto.png").read_bytes() if (folder / "pareto.png").is_file() else b""
    img = f'<img alt="student search Pareto plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">' \
        if png else ""
    return ("<h2>Student search</h2><div class=card>" + f"<p>{html.escape(summary_line(manifest['metrics']))}</p>"
            + img + table(COLUMNS, rows(manifest["metrics"]), (2, 6)) + "</div>")


def markdown_section(report: dict[str, Any], run_dir: Path) -> str:
    found = _search(report, run_dir)
    if found is None:
        return ""
    manifest, folder = found
    lines = ["## Student search", "", summary_line(manifest["metrics"]), "",
             f"![student search]({folder.name}/pareto.png)", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(manifest["metrics"])]
    return "\n".join(lines) + "\n\n"
