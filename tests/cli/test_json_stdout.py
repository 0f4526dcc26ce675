"""`--json` means stdout is one JSON document: library prints, progress bars and log lines go to stderr."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import edgekd
from edgekd.cli.common import stdout_to_stderr
from tests.conftest import TINY


def test_stdout_to_stderr_moves_prints_loggers_and_native_writes(capfd):
    logger = logging.getLogger("edgekd-test-lib")
    handler = logging.StreamHandler(sys.stdout)  # what NNCF does at import time
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with stdout_to_stderr():
            print("from print")
            logger.info("from a logger")
            os.write(1, b"from native code\n")
        print("after")
    finally:
        logger.removeHandler(handler)
    out, err = capfd.readouterr()
    assert out == "after\n"
    assert "from print" in err and "from a logger" in err and "from native code" in err
    assert handler.stream is sys.stdout  # restored


def test_compress_json_is_valid_json_while_nncf_calibrates(tiny_run, tmp_path):
    """Reuses the session's tiny run; a new calibration size reruns qad (NNCF calibration, its progress
    bars and logger) and the stages after it in a real `edgekd` process."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "calib_size": 48}))
    root = str(Path(edgekd.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "edgekd", "compress", "--config", str(config), "--run-dir", str(run_dir),
         "--json", "--no-bundle", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON document; it starts with: {proc.stdout[:500]!r}")
    reused = {s["stage"]: s["reused"] for s in report["stages"]}
    assert reused["distill"] is True and reused["qad"] is False, reused
    assert report["exit_code"] == proc.returncode
