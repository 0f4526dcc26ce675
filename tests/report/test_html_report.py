"""report.html is self-contained and shows what the issue asks; plots label estimates."""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekd.report.html import per_class_from_run, write_html_report
from edgekd.report.plots import accuracy_latency_points, accuracy_latency_png


def test_compress_writes_a_self_contained_html_report(tiny_run: Path):
    page = (tiny_run / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:|//)", page) and "<script" not in page and "<link" not in page
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', page)) == 3
    for heading in ("Stages", "Accuracy against latency", "Training curves", "Per-class accuracy"):
        assert heading in page
    md = (tiny_run / "report.md").read_text()
    assert "report_assets/accuracy_latency.png" in md and (tiny_run / "report_assets" / "per_class.png").is_file()


def test_per_class_matches_the_bench_measurement(tiny_run: Path, monkeypatch):
    import edgekd.runtimes

    def no_second_run(*_a, **_k):
        raise AssertionError("the report ran a model again: per-class figures come from the bench stage")

    monkeypatch.setattr(edgekd.runtimes, "get_runtime", no_second_run)
    pc = per_class_from_run(tiny_run)
    report = json.loads((tiny_run / "report.json").read_text())
    row = next(r for r in report["models"] if r["role"] == pc["role"])
    assert sum(c["n"] for c in pc["classes"]) == pc["images"] == report["data"]["splits"]["test"]["images"]
    assert abs(pc["top1"] - row["top1"]) < 1e-9  # the bench stage's own predictions: same artifact, same images
    assert json.loads((tiny_run / "report_assets" / "per_class.json").read_text()) == pc


def test_per_class_counts_hits_and_the_most_common_confusion():
    import numpy as np

    from edgekd.stages.bench import per_class

    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    pc = per_class(pred, labels, ["a", "b", "c", "d"], "student_int8", "student_int8.xml", "openvino CPU")
    assert pc["top1"] == 0.5 and pc["images"] == 6 and pc["runtime"] == "openvino"
    assert [(c["n"], c["top1"], c["most_confused_with"]) for c in pc["classes"]] == [
        (3, 1 / 3, "b (2)"), (2, 0.5, "a (1)"), (1, 1.0, None), (0, None, None)]


def test_write_html_report_returns_its_path(tiny_run: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    report = json.loads((copy / "report.json").read_text())
    assert write_html_report(report, copy) == copy / "report.html"


def test_estimated_points_are_marked():
    report = {"target": {"name": "jetson", "runtime": "tensorrt", "budgets": {"latency_ms": 2.0,
                                                                               "latency_percentile": "p90"}},
              "data": {"val_split": "val"},
              "budgets": [{"name": "accuracy (top-1)", "limit": 0.9}],
              "models": [{"role": "student_int8", "runtime": "onnxruntime CPU", "top1": 0.95,
                          "latency": {"median_ms": 1.0, "p90_ms": 1.2}, "estimated_latency_ms": 0.4}]}
    points = accuracy_latency_points(report)
    assert [(p["x"], p["estimated"]) for p in points] == [(1.2, False), (0.4, True)]
    assert accuracy_latency_png(report).startswith(b"\x89PNG")
