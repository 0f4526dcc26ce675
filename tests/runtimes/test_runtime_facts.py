"""Runtime facts live in the Runtime classes (NNCF's backend pattern): the callers that used to compare runtime
names (plan, search budget, placement, host, bundle verifier) ask the class, and every runtime's load takes the
sha256 the manifest recorded."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from edgekd.errors import UsageError
from edgekd.runtimes import RUNTIME_NAMES, runtime_class
from edgekd.targets import available_targets, load_target

ROOT = Path(__file__).resolve().parents[2]


def test_the_quantization_preset_follows_the_runtime_and_device():
    from edgekd.plan import quant_preset

    for name in available_targets():
        t = load_target(name)
        old_rule = "trt" if t.runtime.name == "tensorrt" or t.runtime.device == "TensorRT" else "mixed"
        assert quant_preset(t) == old_rule, name


@pytest.mark.parametrize("name, device, extra, gpu, package", [
    ("openvino", "CPU", "cpu", False, "openvino"), ("onnxruntime", "CPU", "cpu", False, "onnxruntime"),
    ("onnxruntime", "CUDA", "gpu", True, "onnxruntime"), ("onnxruntime", "TensorRT", "gpu", True, "onnxruntime"),
    ("tensorrt", "GPU", "gpu", True, "tensorrt"), ("executorch", "CPU", "mobile", False, "executorch"),
    ("litert", "CPU", "mobile", False, "ai_edge_litert"), ("coreml", "ALL", "mobile", False, "coremltools"),
])
def test_extra_package_and_gpu_facts(name, device, extra, gpu, package):
    rt = runtime_class(name)
    assert (rt.extra_for(device), rt.needs_nvidia_gpu(device), rt.package()) == (extra, gpu, package)


def test_callers_compare_no_runtime_names():
    names = set(RUNTIME_NAMES) | {"TensorRT", "CUDA"}
    for rel in ("edgekd/plan.py", "edgekd/search/budget.py", "edgekd/runtimes/host.py"):
        tree = ast.parse((ROOT / rel).read_text())
        compared = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)
                    and any(isinstance(c, ast.Constant) and c.value in names for c in [n.left, *n.comparators])]
        assert not compared, (rel, [ast.unparse(c) for c in compared])


def test_every_runtime_load_takes_the_recorded_sha256(tmp_path):
    for name in RUNTIME_NAMES:
        params = inspect.signature(runtime_class(name).load).parameters
        assert "expected_sha256" in params and params["expected_sha256"].kind is inspect.Parameter.KEYWORD_ONLY
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not even onnx")
    with pytest.raises(UsageError, match="sha256 .* does not match the recorded 000000000000"):
        get_runtime("onnxruntime").load(model, RuntimeSettings(), expected_sha256="0" * 64)


def test_the_bundle_verifier_goes_through_get_runtime():
    source = (ROOT / "edgekd" / "bundle" / "verify.py").read_text()
    assert "executorch" not in source.replace('"executorch"', "") and "ai_edge_litert" not in source
    assert "coremltools" not in source
    mobile = (ROOT / "edgekd" / "runtimes" / "mobile.py").read_text()
    assert "from edgekd.bundle" not in mobile  # the runtime no longer borrows the verifier's private helpers
