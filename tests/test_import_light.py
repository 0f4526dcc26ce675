"""The base package (CLI, profiles, manifests, bench, gate, inspect) imports no torch and no runtime."""

from __future__ import annotations

import subprocess
import sys


def test_cli_and_package_import_no_heavy_modules():
    code = ("import sys, edgekd, edgekd.targets, edgekd.manifest, edgekd.benchmark, edgekd.artifacts\n"
            "from edgekd.cli.app import _register\n_register()\n"
            "print(sorted(m for m in ('torch', 'openvino', 'onnxruntime', 'tensorrt', 'nncf', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
