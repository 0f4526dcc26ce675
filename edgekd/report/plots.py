"""Plots of a run as PNG bytes (matplotlib's Agg backend, imported only when a plot is drawn).

- accuracy_latency_png: top-1 against latency for the teacher, the FP32 and the INT8 student on each
  runtime the run measured, with the target's latency budget and accuracy requirement drawn in. Estimated
  points (device not on this machine) are hollow and labelled "estimated".
- training_curves_png: validation top-1 and loss per epoch, one line per training stage (and phase).
- per_class_png: top-1 per class of the final artifact.
"""

from __future__ import annotations

import io
from typing import Any

from edgekd.runtimes.timing import PERCENTILE_FIELDS

ROLE_COLORS = {"teacher_fp32": "#6b7280", "student_fp32": "#2563eb", "student_int8": "#dc2626"}
ROLE_LABELS = {"teacher_fp32": "teacher FP32", "student_fp32": "student FP32", "student_int8": "student INT8"}
MARKERS = ("o", "s", "^", "D", "v", "P")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def accuracy_requirement(report: dict[str, Any]) -> float | None:
    for b in report.get("budgets", []):
        if str(b.get("name", "")).startswith("accuracy"):
            return b.get("limit")
    return None


def accuracy_latency_points(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per (model row, basis): x in ms at the budget's percentile (or p50), y top-1."""
    budgets = report.get("target", {}).get("budgets", {}) or {}
    pct = budgets.get("latency_percentile", "p50")
    key = PERCENTILE_FIELDS.get(pct, "median_ms")
    points = []
    for r in report.get("models", []):
        if r.get("top1") is None:
            continue
        lat = r.get("latency") or {}
        if lat.get(key) is not None:
            points.append({"role": r["role"], "runtime": r.get("runtime", "?"), "x": lat[key], "y": r["top1"],
                           "estimated": False, "where": r.get("measured_on", "")})
        if r.get("estimated_latency_ms") is not None:
            points.append({"role": r["role"], "runtime": f"{report['target'].get('runtime')} (device)",
                           "x": r["estimated_latency_ms"], "y": r["top1"], "estimated": True, "where": "estimated"})
    return points


def accuracy_latency_png(report: dict[str, Any]) -> bytes:
    plt = _plt()
    t = report.get("target", {})
    budgets = t.get("budgets", {}) or {}
    pct = budgets.get("latency_percentile", "p50")
    points = accuracy_latency_points(report)
    runtimes = sorted({p["runtime"] for p in points})
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for p in points:
        color = ROLE_COLORS.get(p["role"], "#111827")
        marker = MARKERS[runtimes.index(p["runtime"]) % len(MARKERS)]
        ax.scatter([p["x"]], [p["y"] * 100], s=90, marker=marker, edgecolors=color, linewidths=2,
                   facecolors="none" if p["estimated"] else color, zorder=3)
        label = ROLE_LABELS.get(p["role"], p["role"]) + (" (estimated)" if p["estimated"] else "")
        ax.annotate(label, (p["x"], p["y"] * 100), textcoords="offset points", xytext=(7, -13) if p["estimated"] else (7, 5), fontsize=8,
                    color=color)
    limit = budgets.get("latency_ms")
    if limit:
        ax.axvline(limit, color="#ea580c", linestyle="--", linewidth=1.4, label=f"latency budget {pct} <= {limit} ms")
    req = accuracy_requirement(report)
    if req is not None:
        ax.axhline(req * 100, color="#16a34a", linestyle=":", linewidth=1.6, label=f"accuracy requirement >= {req:.2%}")
    for i, rt in enumerate(runtimes):  # legend entries for the marker shapes
        ax.scatter([], [], marker=MARKERS[i % len(MARKERS)], facecolors="#9ca3af", edgecolors="#9ca3af", label=rt)
    if any(p["estimated"] for p in points):
        ax.scatter([], [], marker="o", facecolors="none", edgecolors="#111827", label="hollow: estimated, not measured")
    xs = [p["x"] for p in points] + ([limit] if limit else [])
    if xs and max(xs) / max(min(xs), 1e-9) > 30:
        ax.set_xscale("log")
    ys = [p["y"] * 100 for p in points] + ([req * 100] if req is not None else [])
    if ys:
        pad = max(0.5, (max(ys) - min(ys)) * 0.15)
        ax.set_ylim(min(ys) - pad, min(100.5, max(ys) + pad))
    if xs:
        ax.set_xlim(0 if ax.get_xscale() == "linear" else None, max(xs) * 1.15)
    ax.set_xlabel(f"latency {pct} (ms, batch {report.get('models', [{}])[0].get('batch', 1) if report.get('models') else 1})")
    from edgekd.report.summary import reported_split

    ax.set_ylabel(f"top-1 on the {reported_split(report)} split (%)")
    ax.set_title(f"accuracy vs latency - {t.get('name', '?')} ({t.get('runtime', '?')})", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    return _png(fig)


def training_curves_png(histories: dict[str, list[dict[str, Any]]]) -> bytes:
    """Two panels (val top-1, loss); x is the epoch count within each stage, phases drawn as separate lines."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    colors = plt.get_cmap("tab10")
    n = 0
    for stage, hist in histories.items():
        phases: dict[str, list[dict[str, Any]]] = {}
        for h in hist:
            tag = str(h.get("phase", stage))
            if h.get("float_layers"):
                tag += f" ({h['float_layers']} float layers)"
            phases.setdefault(tag, []).append(h)
        step = 0
        for tag, rows in phases.items():
            xs = list(range(step + 1, step + len(rows) + 1))
            step += len(rows)
            label = stage if tag == stage else f"{stage}: {tag}"
            c = colors(n % 10)
            n += 1
            if any(r.get("val_top1") is not None for r in rows):
                a1.plot(xs, [100 * (r.get("val_top1") or float("nan")) for r in rows], marker="o", ms=3, color=c, label=label)
            if any(r.get("loss") is not None for r in rows):
                a2.plot(xs, [r.get("loss", float("nan")) for r in rows], marker="o", ms=3, color=c, label=label)
    a1.set_title("val top-1 per epoch (the split that picks the best epoch)", fontsize=10)
    a1.set_ylabel("top-1 (%)")
    a2.set_title("training loss per epoch (each stage's own loss)", fontsize=10)
    a2.set_ylabel("loss")
    for ax in (a1, a2):
        ax.set_xlabel("epoch (within the stage)")
        ax.grid(True, alpha=0.3)
    a1.legend(fontsize=7)
    return _png(fig)


def per_class_png(per_class: dict[str, Any]) -> bytes:
    plt = _plt()
    names = [c["class"] for c in per_class["classes"]]
    vals = [100 * c["top1"] if c["top1"] is not None else 0 for c in per_class["classes"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(names) + 2), 3.4))
    bars = ax.bar(range(len(names)), vals, color="#dc2626" if "int8" in per_class.get("role", "") else "#2563eb")
    ax.axhline(100 * per_class["top1"], color="#111827", linestyle="--", linewidth=1,
               label=f"overall {per_class['top1']:.2%}")
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 12 else 0, fontsize=8)
    ax.set_ylim(max(0, min(vals + [100]) - 10), 100.5)
    ax.set_ylabel("top-1 (%)")
    ax.set_title(f"per-class top-1: {per_class.get('artifact', '')}", fontsize=10)
    for b, v in zip(bars, vals):
        ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.legend(fontsize=8, loc="lower left")
    return _png(fig)


def pareto_png(candidates: list[dict[str, Any]], budget_ms: float | None, percentile: str) -> bytes:
    """The student search: best proxy val top-1 against measured (or estimated) latency per candidate, the
    latency budget as a vertical line, the chosen candidate starred; over-budget candidates at the bottom."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in candidates:
        lat = (c.get("latency") or {}).get("latency_ms")
        if lat is None:
            continue
        tops = c.get("proxy_top1") or {}
        top = tops[max(tops, key=int)] if tops else None
        chosen = c.get("fate") == "chosen"
        marker = "*" if chosen else ("s" if c.get("source") == "pruned teacher" else "o")
        y = top if top is not None else 0.0
        ax.scatter([lat], [y], marker=marker, s=180 if chosen else 40,
                   color="#16a34a" if chosen else ("#9ca3af" if top is None else "#2563eb"), zorder=3)
        ax.annotate(c["name"], (lat, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if budget_ms:
        ax.axvline(budget_ms, color="#dc2626", linestyle="--", label=f"budget {budget_ms:g} ms")
        ax.legend(loc="lower right", fontsize=8)
    est = any((c.get("latency") or {}).get("estimated") for c in candidates)
    ax.set_xlabel(f"{percentile} latency, ms ({'estimated' if est else 'measured'}, INT8)")
    ax.set_ylabel("val top-1 of the last proxy run (0: not trained)")
    ax.set_xscale("log")
    ax.set_title("Student search: squares are pruned teachers, the star is chosen", fontsize=10)
    return _png(fig)
