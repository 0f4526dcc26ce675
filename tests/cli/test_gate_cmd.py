"""`edgekd gate`: A/A passes, a truly heavier model fails, bad input exits 2, every output file is written.

The machine the tests run on is shared and noisy: an A/A run with few rounds may come out inconclusive
(exit 3: too noisy, or a CI too wide to call) but must never fail; the heavy candidate is ~10x slower, so it fails whatever the noise.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_cmd import build_run, loose_target, one_line_exit2  # noqa: E402

from edgekd.cli.app import _register, app  # noqa: E402

_register()
runner = CliRunner()
FAST = ["--rounds", "12", "--runs-per-round", "30"]


def variant(src: Path, dst: Path, runtime: str | None = None, **pre: object) -> Path:
    """A copy of a run whose manifests say something else (checks that refuse before loading need no model)."""
    import shutil

    shutil.copytree(src, dst)
    for m in dst.glob("*/manifest.json"):
        data = json.loads(m.read_text())
        if data.get("preprocessing"):
            data["preprocessing"].update(pre)
        for art in data["artifacts"] if runtime and data["stage"] == "compile" else []:
            art["facts"]["runtime"] = runtime
        m.write_text(json.dumps(data))
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    base = build_run(root / "base")
    return {
        "base": base,
        "heavy": build_run(root / "heavy", width=96, depth=6),
        "gray": variant(base, root / "gray", channels=1, mean=[0.5], std=[0.25]),
        "other_classes": variant(base, root / "cls", class_names=[f"k{i}" for i in range(10)]),
        "ort": variant(base, root / "ort", runtime="onnxruntime"),
    }


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> str:
    return str(loose_target(tmp_path_factory.mktemp("targets")))


def _gate(a: Path, b: Path, target: str, *extra: str):
    return runner.invoke(app, ["gate", "--baseline", str(a), "--candidate", str(b), "--target", target, *FAST, *extra])


def test_aa_passes_and_writes_every_output(runs, target, tmp_path: Path, monkeypatch) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = tmp_path / "out"
    res = _gate(runs["base"], runs["base"], target, "--out", str(out), "--junit", str(tmp_path / "j.xml"))
    assert res.exit_code in (0, 3), res.output  # never a false alarm
    data = json.loads((out / "gate.json").read_text())
    if res.exit_code == 3:  # the CI straddles the threshold or the rounds were too noisy: never "fail"
        assert data["verdict"] == "inconclusive" and data["stats"]["verdict"] == "inconclusive"
    else:
        assert data["verdict"] == "pass" and 0.9 < data["stats"]["ratio"] < 1.1
    assert data["gate"]["baseline"]["sha256"] == data["gate"]["candidate"]["sha256"]
    assert {c["name"] for c in data["checks"]} == {"latency budget (p90)", "size", "memory", "accuracy"}
    assert next(c for c in data["checks"] if c["name"] == "accuracy")["status"] == "pass"
    for junit in (out / "gate.xml", tmp_path / "j.xml"):
        suite = ET.parse(junit).getroot()
        assert suite.get("tests") == "5"
    assert (out / "gate.md").read_text().startswith("**edgekd gate:")
    assert (out / "gate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "**edgekd gate:" in text  # appended, not replaced


def test_heavier_candidate_fails(runs, target, tmp_path: Path) -> None:
    res = _gate(runs["base"], runs["heavy"], target, "--json", "--markdown", str(tmp_path / "s.md"))
    assert res.exit_code == 1, res.output
    data = json.loads(res.output)
    assert data["stats"]["verdict"] == "fail" and data["stats"]["ratio"] > 1.5
    assert data["stats"]["pairing"] == "round" and data["stats"]["test"].startswith("Wilcoxon")
    assert "FAIL" in (tmp_path / "s.md").read_text()


def test_independent_arms_on_request(runs, target) -> None:
    res = _gate(runs["base"], runs["heavy"], target, "--json", "--independent")
    assert res.exit_code == 1, res.output
    stats = json.loads(res.output)["stats"]
    assert stats["pairing"] == "none" and stats["test"] == "Mann-Whitney U" and stats["spread_paired"] is None


def test_different_input_shapes(runs, target) -> None:
    one_line_exit2(_gate(runs["base"], runs["gray"], target), "different input shapes", "[3, 16, 16]", "[1, 16, 16]")


def test_different_class_lists(runs, target) -> None:
    one_line_exit2(_gate(runs["base"], runs["other_classes"], target), "different class lists", "'c0'", "'k0'")


def test_different_runtimes(runs, target) -> None:
    one_line_exit2(_gate(runs["base"], runs["ort"], target), "compiled for different runtimes")


def test_baseline_missing_its_manifest(runs, target, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(runs["base"], copy)
    (copy / "compile-bbbbbbbbbbbb" / "manifest.json").unlink()
    one_line_exit2(_gate(copy, runs["base"], target), "baseline", "compile-bbbbbbbbbbbb/manifest.json is missing")


def test_target_this_machine_cannot_run(runs) -> None:
    res = runner.invoke(app, ["gate", "--baseline", str(runs["base"]), "--candidate", str(runs["base"]),
                              "--target", "jetson"])
    one_line_exit2(res, "never judges on estimates", "tensorrt")


def test_candidate_changed_after_the_run(runs, target, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "cand"
    shutil.copytree(runs["base"], copy)
    with open(copy / "compile-bbbbbbbbbbbb" / "student_int8" / "model.bin", "ab") as fh:
        fh.write(b"\0")
    one_line_exit2(_gate(runs["base"], copy, target), "student_int8/model.bin: sha256 does not match its manifest")


def test_bad_option_values(runs, target) -> None:
    res = runner.invoke(app, ["gate", "--baseline", str(runs["base"]), "--candidate", str(runs["base"]),
                              "--target", target, "--rounds", "3"])
    one_line_exit2(res, "--rounds")
    for flag, value in (("--max-spread", "0"), ("--reruns", "9")):
        res = runner.invoke(app, ["gate", "--baseline", str(runs["base"]), "--candidate", str(runs["base"]),
                                  "--target", target, flag, value])
        one_line_exit2(res, flag)


def test_paired_speedup_names_the_faster_model(runs, target) -> None:
    """The interleaved INT8-payoff measurement (bench stage) on two real IRs ~10x apart in cost."""
    from edgekd.benchmark import paired_speedup, settings_for
    from edgekd.targets import load_target

    settings = settings_for(load_target(target), "fp32")
    light = (runs["base"] / "compile-bbbbbbbbbbbb/student_fp32/model.xml", settings, None)
    heavy = (runs["heavy"] / "compile-bbbbbbbbbbbb/student_fp32/model.xml", settings, None)
    x = np.zeros((1, 3, 16, 16), np.float32)
    fast = paired_speedup(heavy, light, "openvino", x, rounds=12, runs_per_round=10)
    lo, hi = fast["speedup_ci95"]
    assert 1.5 < lo <= fast["speedup"] <= hi and "interleaved" in fast["method"]
    slow = paired_speedup(light, heavy, "openvino", x, rounds=12, runs_per_round=10)
    assert slow["speedup"] < 1 / 1.5
