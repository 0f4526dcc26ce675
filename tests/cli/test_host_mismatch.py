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
    assert data["measured_on_target"] is False and data["row"]["measured_on"] == "host substitute"
    assert data["row"]["estimated_latency_ms"] > 0
    assert any("is not that device" in n and "NoSuchVendor" in n for n in data["notes"])
