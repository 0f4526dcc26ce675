"""A host that runs the target's runtime but is not its device: bench labels it, the gate refuses it unless
--allow-host-mismatch, and then says so in every output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_bench_cmd import build_run, loose_target, one_line_exit2  # noqa: E402

from edgekd.cli.app import _register, app  # noqa: E402

pytest.importorskip("openvino")
_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("mismatch") / "run")


@pytest.fixture(scope="module")
def other_device(tmp_path_factory) -> str:
    """A loose OpenVINO CPU profile whose identity no machine here has (a vendor string that does not exist)."""
    path = loose_target(tmp_path_factory.mktemp("t"), "elsewhere")
    text = path.read_text().replace("memory_bandwidth_gbs: 10}", "memory_bandwidth_gbs: 10, "
                                    "identity: {cpu_vendor: NoSuchVendor}}")
    path.write_text(text)
    return str(path)


def test_gate_refuses_a_mismatched_host(run, other_device) -> None:
    res = runner.invoke(app, ["gate", "--baseline", str(run), "--candidate", str(run), "--target", other_device])
    one_line_exit2(res, "not elsewhere's device", "NoSuchVendor", "--allow-host-mismatch")


def test_gate_with_allow_host_mismatch_says_so_everywhere(run, other_device, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["gate", "--baseline", str(run), "--candidate", str(run), "--target", other_device,
                              "--rounds", "10", "--runs-per-round", "10", "--allow-host-mismatch", "--out", str(out)])
    assert res.exit_code in (0, 3), res.output
    assert "HOST MISMATCH" in res.output
    data = json.loads((out / "gate.json").read_text())
    assert data["gate"]["host_mismatch"].startswith("HOST MISMATCH") and "HOST MISMATCH" in data["reason"]
    assert "HOST MISMATCH" in (out / "gate.md").read_text()
    assert "HOST MISMATCH" in (out / "gate.xml").read_text()


def test_bench_on_a_mismatched_host_is_labelled_with_the_estimate(run, other_device) -> None:
    res = runner.invoke(app, ["bench", str(run), "--target", other_device, "--json", "--min-s", "0.1"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["measured_on_target"] is False and data["row"]["measured_on"] == "host"  # OpenVINO CPU here too
    assert data["row"]["estimated_latency_ms"] > 0
    assert any("is not that device" in n and "NoSuchVendor" in n for n in data["notes"])


def test_calibrate_refuses_a_mismatched_host(other_device, tmp_path: Path) -> None:
    res = runner.invoke(app, ["calibrate", "--target", other_device, "--out", str(tmp_path / "fit.yaml")])
    one_line_exit2(res, "this machine is not elsewhere's device", "NoSuchVendor", "--allow-host-mismatch")
    assert not (tmp_path / "fit.yaml").exists()


def test_calibrate_with_allow_host_mismatch_says_so_everywhere(other_device, tmp_path: Path, monkeypatch) -> None:
    """Three of the calibration set's smallest models (the fit needs three), one short round: the fit is not
    judged here, only that every output names the mismatch."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    import yaml

    from edgekd.calibrate import measure

    small = tuple(m for m in measure.CALIBRATION_SET if m[0] in ("small_cnn_8", "small_cnn_16", "resnet32_8"))
    monkeypatch.setattr(measure, "CALIBRATION_SET", small)
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "fit.yaml"
    res = runner.invoke(app, ["calibrate", "--target", other_device, "--out", str(out), "--seconds", "0.05",
                              "--rounds", "1", "--allow-host-mismatch"])
    assert res.exit_code == 0, res.output
    title = next(line for line in res.output.splitlines() if "edgekd calibrate ->" in line)
    assert title.rstrip().endswith(": HOST MISMATCH"), res.output
    assert "fitted on this host, not on test cpu" in " ".join(res.output.split())
    overlay = yaml.safe_load(out.read_text())
    assert overlay["calibration"]["host_mismatch"].startswith("HOST MISMATCH (--allow-host-mismatch)")
    assert "NoSuchVendor" in overlay["calibration"]["host_mismatch"]
    assert overlay["sources"] and all(s.startswith("HOST MISMATCH") for s in overlay["sources"].values())
    res = runner.invoke(app, ["calibrate", "--target", other_device, "--out", str(out), "--seconds", "0.05",
                              "--rounds", "1", "--allow-host-mismatch", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["host_mismatch"].startswith("HOST MISMATCH")
