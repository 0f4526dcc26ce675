"""JSON, JUnit XML, Markdown and PNG outputs of a gate result."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from edgekd.gate import (
    GateConfig,
    GateResult,
    accuracy_check,
    compare,
    latency_budget_check,
    markdown_summary,
    memory_check,
    overall,
    plot_distributions,
    size_check,
    write_json,
    write_junit,
)

NAMES = ["latency regression", "latency budget (p90)", "size", "memory", "accuracy"]


def _lognormal(rng: np.random.Generator, shape, median: float, cv: float) -> np.ndarray:
    return median * np.exp(rng.normal(0.0, np.sqrt(np.log1p(cv**2)), shape))


@pytest.fixture(scope="module")
def calls() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return _lognormal(rng, (30, 20), 5.0, 0.1), _lognormal(rng, (30, 20), 6.0, 0.1)


def _result(calls, verdict: str) -> GateResult:
    a, b = calls
    if verdict == "inconclusive":
        rng = np.random.default_rng(1)
        stats = compare(_lognormal(rng, 30, 5.0, 0.4), _lognormal(rng, 30, 5.0, 0.4), GateConfig())
    else:
        stats = compare(np.median(a, 1), np.median(b if verdict == "fail" else a, 1), GateConfig())
    checks = [latency_budget_check(b, 8.0), size_check(4.0, 5.0), memory_check(300.0, 256.0),
              accuracy_check(90.1, 90.0)]  # fmt: skip
    result = overall(stats, checks)
    return result


def test_json_round_trips(tmp_path: Path, calls) -> None:
    r = _result(calls, "fail")
    path = write_json(r, tmp_path / "out" / "gate.json")
    assert GateResult.model_validate_json(path.read_text()) == r


def test_junit_has_one_testcase_per_check(tmp_path: Path, calls) -> None:
    r = _result(calls, "fail")
    root = ET.parse(write_junit(r, tmp_path / "gate.xml")).getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == NAMES
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"latency regression", "memory"}
    assert suite.get("tests") == "5" and suite.get("failures") == "2" and suite.get("skipped") == "0"
    assert "slower" in cases[0].find("failure").get("message")


def test_junit_marks_inconclusive_as_skipped(tmp_path: Path, calls) -> None:
    r = _result(calls, "inconclusive")
    root = ET.parse(write_junit(r, tmp_path / "gate.xml")).getroot()
    first = root.find("testsuite").find("testcase")
    assert first.find("skipped") is not None and "noisy" in first.find("skipped").get("message")
    assert root.find("testsuite").get("skipped") == "1"


def test_markdown_summary(calls) -> None:
    r = _result(calls, "fail")
    md = markdown_summary(r)
    first = md.splitlines()[0]
    assert first.startswith("**edgekd gate: FAIL** (exit 1)")
    assert "| Check | Status |" in md and "| memory | FAIL |" in md and "| size | PASS |" in md
    assert f"{r.stats.p_slower:.3g}" in md and "bootstrap CI" in md
    assert md.isascii()  # status words, no emoji
    ok = markdown_summary(overall(compare(np.median(calls[0], 1), np.median(calls[0], 1), GateConfig())))
    assert ok.startswith("**edgekd gate: PASS** (exit 0)")


def test_plot_writes_small_png(tmp_path: Path, calls) -> None:
    path = plot_distributions(calls[0], calls[1], tmp_path / "dist.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 200_000


def test_import_loads_neither_matplotlib_nor_torch() -> None:
    code = "import sys, edgekd.gate; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
