"""The Python API (edgekd.api): the CLI's path, typed results, exceptions instead of exits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

MODELS = Path(__file__).resolve().parent / "fixtures" / "custom_models.py"


def test_api_access_stays_light() -> None:
    code = ("import sys, edgekd; f = edgekd.compress; import edgekd.results; "
            "print(sorted(m for m in ('torch', 'openvino', 'onnxruntime', 'nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_api_reuses_the_cli_run_and_returns_its_report(tiny_run: Path, tmp_path: Path) -> None:
    """The session's tiny run: the same options through edgekd.compress plan the same stage ids, so every
    stage is reused, and the typed report holds what report.json holds."""
    import edgekd
    from edgekd.results import Report

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = json.loads((run / "report.json").read_text())
    report = edgekd.compress(**TINY, run_dir=run, bundle=False)
    assert isinstance(report, Report)
    assert all(s.reused for s in report.stages)
    assert [s.id for s in report.stages] == [s["id"] for s in before["stages"]]
    assert report.verdict == before["verdict"] and report.exit_code == before["exit_code"]
    assert report.model("student_int8").top1 == before["models"][2]["top1"]
    assert report.budget("model size").verdict in ("pass", "fail", "estimated pass", "estimated fail")
    assert json.loads(report.model_dump_json())["models"][0]["role"] == "teacher_fp32"  # the same shape
    with pytest.raises(KeyError, match="no model in role 'nope'"):
        report.model("nope")


def test_api_errors_are_exceptions_with_the_cli_message(tmp_path: Path) -> None:
    import edgekd
    from edgekd.errors import UsageError

    with pytest.raises(UsageError, match=r"--alpha must be in \[0, 1\]") as err:
        edgekd.compress(alpha=3.0, run_dir=tmp_path / "r")
    assert err.value.exit_code == 2 and not (tmp_path / "r").exists()
    with pytest.raises(UsageError, match="has no attribute 'Nope'"):
        edgekd.compress(teacher=f"{MODELS}:Nope", run_dir=tmp_path / "r2")


def test_in_memory_module_teacher_end_to_end(tmp_path: Path) -> None:
    """A user's nn.Module object as teacher (an SE network with a non-standard head), a tiny schedule; calling
    again with the same weights reuses every stage (its identity is class + state_dict)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("openvino")
    import importlib.util

    import edgekd

    spec = importlib.util.spec_from_file_location("user_models", MODELS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    teacher = mod.SENet(width=8, blocks=1, classes=10, in_channels=1)
    opts = dict(TINY, transfer="full", mean=[0.5], std=[0.5], threads=1)
    report = edgekd.compress(teacher=teacher, run_dir=tmp_path / "run", bundle=False, **opts)
    origin = report.stage("teacher").metrics["origin"]
    assert "in-memory nn.Module" in origin and "SENet" in origin
    assert report.model("teacher_fp32").model.startswith("SENet (module:")  # its label, not a hash alone
    again = edgekd.compress(teacher=teacher, run_dir=tmp_path / "run", bundle=False, **opts)
    assert all(s.reused for s in again.stages) and again.verdict == report.verdict
