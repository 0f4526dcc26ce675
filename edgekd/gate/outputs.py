"""Write a gate result where CI looks: JSON, JUnit XML, a Markdown step summary, and a small PNG.

JUnit mapping (one <testcase> per check, classname "edgekd.gate"):
  pass -> empty testcase; fail and 'changed' accuracy -> <failure>; inconclusive -> <skipped>.
Inconclusive is not a regression of the candidate but a measurement that could not decide, so it is
shown as skipped: GitHub test-report actions, GitLab and Jenkins display skipped tests apart from
failures (yellow / neutral) instead of as red "errors" that read as a broken test. The job still does
not go green: the gate exits 3. The failure/skip message is the check's human sentence.

matplotlib is imported only inside `plot_distributions`, through the Agg canvas (no pyplot, no global
backend switch), so importing this module never loads it.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgekd.fsio import write_atomic
from edgekd.gate.checks import GateResult
from edgekd.stats import GateStats

_WORD = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "changed": "CHANGED"}


def _atomic_write(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


def write_json(result: GateResult, path: str | os.PathLike[str]) -> Path:
    """The whole result (stats, checks, verdict, exit code) as indented JSON."""
    path = Path(path)
    _atomic_write(path, (result.model_dump_json(indent=2) + "\n").encode())
    return path


def _latency_summary(result: GateResult) -> str:
    s = result.stats
    return (
        f"B/A {s.ratio:.3f} (Hodges-Lehmann), {s.ci_level:.0%} CI {s.ci_low:.3f}-{s.ci_high:.3f}; "
        f"{s.test} p(slower)={s.p_slower:.3g}, p(faster)={s.p_faster:.3g}; "
        f"medians A {s.median_a_ms:.4g} ms, B {s.median_b_ms:.4g} ms over {s.n_a}/{s.n_b} rounds; "
        f"{_noise_text(s)}; attempts {s.attempts}"
    )


def _noise_text(s: GateStats) -> str:
    paired = "" if s.spread_paired is None else f"spread of per-round B/A {s.spread_paired:.1%}, "
    return paired + f"robust CV per round A {s.cv_a:.1%}, B {s.cv_b:.1%}"


def write_junit(result: GateResult, path: str | os.PathLike[str]) -> Path:
    """JUnit XML with one testcase per check (latency regression first, then the absolute checks)."""
    cases: list[tuple[str, str, str, str]] = [
        ("latency regression", result.stats.verdict, result.stats.reason, _latency_summary(result))
    ]
    for c in result.checks:
        cases.append((c.name, c.status, c.reason, f"{c.measured:g} {c.unit} (limit {c.limit:g})"))

    failures = sum(status in ("fail", "changed") for _, status, _, _ in cases)
    skipped = sum(status == "inconclusive" for _, status, _, _ in cases)
    suites = ET.Element("testsuites", name="edgekd gate", tests=str(len(cases)),
                        failures=str(failures), errors="0", skipped=str(skipped))  # fmt: skip
    suite = ET.SubElement(suites, "testsuite", name="edgekd.gate", tests=str(len(cases)),
                          failures=str(failures), errors="0", skipped=str(skipped))  # fmt: skip
    props = ET.SubElement(suite, "properties")
    s = result.stats
    for key, value in (("verdict", result.verdict), ("exit_code", result.exit_code), ("ratio", s.ratio),
                       ("ci_low", s.ci_low), ("ci_high", s.ci_high), ("p_slower", s.p_slower),
                       ("median_a_ms", s.median_a_ms), ("median_b_ms", s.median_b_ms),
                       ("reason", result.reason)):  # fmt: skip
        ET.SubElement(props, "property", name=key, value=str(value))
    for name, status, reason, detail in cases:
        case = ET.SubElement(suite, "testcase", classname="edgekd.gate", name=name, time="0")
        if status in ("fail", "changed"):
            el = ET.SubElement(case, "failure", message=reason, type=status)
            el.text = detail
            continue
        if status == "inconclusive":
            ET.SubElement(case, "skipped", message=reason)
        ET.SubElement(case, "system-out").text = detail
    ET.indent(suites)
    data = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    path = Path(path)
    _atomic_write(path, data + b"\n")
    return path


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(result: GateResult) -> str:
    """Markdown for $GITHUB_STEP_SUMMARY: verdict line, table of checks, latency statistics."""
    s = result.stats
    lines = [
        f"**edgekd gate: {_WORD[result.verdict]}** (exit {result.exit_code}) - {_cell(result.reason)}",
        "",
        "| Check | Status | Measured | Limit | Detail |",
        "|---|---|---|---|---|",
        f"| latency regression | {_WORD[s.verdict]} | B/A {s.ratio:.3f} "
        f"[{s.ci_low:.3f}, {s.ci_high:.3f}] | <= {1 + s.threshold:.2f} | {_cell(s.reason)} |",
    ]
    for c in result.checks:
        limit = {"accuracy": f"baseline {c.limit:g}", "accuracy requirement": f">= {c.limit:g} {c.unit}"}.get(
            c.name, f"<= {c.limit:g} {c.unit}")
        measured = f"{c.measured:.4g} {c.unit}"
        lines.append(f"| {_cell(c.name)} | {_WORD[c.status]} | {measured} | {limit} | {_cell(c.reason)} |")
    lines += [
        "",
        "| Latency statistic | Value |",
        "|---|---|",
        f"| baseline median (ms) | {s.median_a_ms:.4g} |",
        f"| candidate median (ms) | {s.median_b_ms:.4g} |",
        f"| ratio B/A (Hodges-Lehmann) | {s.ratio:.3f} |",
        f"| {s.ci_level:.0%} bootstrap CI | {s.ci_low:.3f} - {s.ci_high:.3f} |",
        f"| ratio of medians | {s.ratio_of_medians:.3f} |",
        f"| {s.test} p (slower / faster) | {s.p_slower:.3g} / {s.p_faster:.3g} (alpha {s.alpha:g}) |",
    ]
    if s.spread_paired is not None:
        yes = "yes" if s.bimodal_paired else "no"
        lines.append(f"| spread of per-round B/A (robust), bimodal | {s.spread_paired:.1%}, {yes} |")
    lines += [
        f"| robust CV per round (A / B) | {s.cv_a:.1%} / {s.cv_b:.1%} |",
        f"| bimodal (A / B) | {'yes' if s.bimodal_a else 'no'} / {'yes' if s.bimodal_b else 'no'} |",
        f"| rounds (A / B), attempts | {s.n_a} / {s.n_b}, {s.attempts} |",
    ]
    if s.earlier_reasons:
        lines += ["", "Earlier attempts: " + " ".join(_cell(r) for r in s.earlier_reasons)]
    return "\n".join(lines) + "\n"


def plot_distributions(
    samples_a: ArrayLike,
    samples_b: ArrayLike,
    path: str | os.PathLike[str],
    *,
    title: str = "Per-call latency",
) -> Path:
    """Overlaid histograms of per-call latencies (ms) with medians marked; a small PNG (~600x320).

    The x axis spans the 0.5th-99.5th percentile of both arms together so that a few preempted calls do
    not squash the histograms; how many calls fall outside is said in the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    a = np.asarray(samples_a, dtype=float).ravel()
    b = np.asarray(samples_b, dtype=float).ravel()
    pooled = np.concatenate([a, b])
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    outside = int(np.sum((pooled < lo) | (pooled > hi)))
    bins = np.linspace(lo, hi, 50)

    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for x, label, color in ((a, "baseline (A)", "tab:blue"), (b, "candidate (B)", "tab:orange")):
        med = float(np.median(x))
        ax.hist(x, bins=bins, alpha=0.5, color=color, label=f"{label}, median {med:.3g} ms")
        ax.axvline(med, color=color, linestyle="--", linewidth=1.5)
    ax.set_xlabel("latency per call (ms)")
    ax.set_ylabel("calls")
    suffix = f" ({outside} calls beyond axis)" if outside else ""
    ax.set_title(title + suffix, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def report_json(result: GateResult, context: dict[str, Any]) -> dict[str, Any]:
    """The gate's JSON report: the result (stats, checks, verdict, exit code) and what was compared, under "gate"."""
    return {**result.model_dump(mode="json"), "gate": context}


def write_outputs(result: GateResult, context: dict[str, Any], samples: Any, *, json_files: Iterable[Path] = (),
                  junit: Iterable[Path] = (), markdown: Iterable[Path] = (), plot: Iterable[Path] = (),
                  step_summary: bool = True) -> list[Path]:
    """Write each file asked for; with `step_summary`, append the Markdown to $GITHUB_STEP_SUMMARY if set."""
    written = []
    for file in json_files:
        _atomic_write(file, (json.dumps(report_json(result, context), indent=2, default=str) + "\n").encode())
        written.append(file)
    written += [write_junit(result, file) for file in junit]
    md = markdown_summary(result)
    for file in markdown:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(md)
        written.append(file)
    if step_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(md + "\n")
    t = context["target"]
    for file in plot:
        written.append(plot_distributions(samples.calls_a_ms, samples.calls_b_ms, file,
                                          title=f"{t['name']} ({t['runtime']} {t['device']}): per-call latency"))
    return written
