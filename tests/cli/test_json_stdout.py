"""`--json` means stdout is one JSON document: library prints, progress bars and log lines go to stderr."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from edgekd.cli.common import stdout_to_stderr


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


def test_compress_json_is_valid_json_while_nncf_calibrates(tiny_variant_process):
    """tests/conftest.py's tiny_variant: a real `edgekd compress --json` process reran the session's tiny run with
    --temperature 2, so distill and qad (NNCF calibration, its progress bars and logger) ran in it."""
    proc = tiny_variant_process
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON document; it starts with: {proc.stdout[:500]!r}")
    reused = {s["stage"]: s["reused"] for s in report["stages"]}
    assert reused["finetune"] is True and reused["qad"] is False, reused
    assert report["exit_code"] == proc.returncode
