from __future__ import annotations

import subprocess
import sys

import pytest

from edgekd.errors import UsageError
from edgekd.runtimes import RUNTIME_NAMES, get_runtime


def test_import_pulls_in_no_runtime_library() -> None:
    code = (
        "import sys, edgekd.runtimes, edgekd.runtimes.timing, edgekd.runtimes.memory, edgekd.runtimes.roofline\n"
        "import edgekd.runtimes.openvino, edgekd.runtimes.onnxruntime, edgekd.runtimes.tensorrt\n"
        "bad = [m for m in ('openvino', 'onnxruntime', 'tensorrt', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_get_runtime_by_name() -> None:
    assert RUNTIME_NAMES == ("openvino", "onnxruntime", "tensorrt", "executorch", "litert", "coreml")
    for name in RUNTIME_NAMES:
        rt = get_runtime(name)
        assert rt.name == name
        assert rt.extra in ("cpu", "gpu", "mobile")


def test_unknown_runtime_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown runtime 'tflite'.*openvino, onnxruntime, tensorrt") as err:
        get_runtime("tflite")
    assert err.value.exit_code == 2
