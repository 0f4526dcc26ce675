from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edgekd.errors import UsageError
from edgekd.runtimes import RuntimeSettings, get_runtime
from edgekd.runtimes.onnxruntime import providers_for, to_ort_format

from .conftest import ort_reference

CPU1 = RuntimeSettings(device="CPU", threads=1)


def test_cpu_session_matches_reference_and_describes_itself(conv_onnx: Path, batch: np.ndarray) -> None:
    sess = get_runtime("onnxruntime").load(conv_onnx, CPU1)
    np.testing.assert_allclose(sess.infer(batch), ort_reference(conv_onnx, batch), atol=1e-5)
    d = sess.describe()
    assert d["providers"] == ["CPUExecutionProvider"]
    assert d["intra_op_num_threads"] == 1 and d["inter_op_num_threads"] == 1
    assert d["execution_mode"] == "ORT_SEQUENTIAL"
    assert d["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert sess.input_name == "input"


def test_compile_writes_optimized_onnx(conv_onnx: Path, batch: np.ndarray, tmp_path: Path) -> None:
    rt = get_runtime("onnxruntime")
    art = rt.compile(conv_onnx, tmp_path, RuntimeSettings(graph_optimization="extended"))
    assert art.path.suffix == ".onnx" and art.path.is_file() and art.kind == "ort_model"
    assert art.facts["graph_optimization"] == "extended" and not art.facts["hardware_specific"]
    out = rt.load(art.path, RuntimeSettings(threads=1, graph_optimization="disable")).infer(batch)
    np.testing.assert_allclose(out, ort_reference(conv_onnx, batch), atol=1e-5)


def test_ort_format_round_trip(conv_onnx: Path, batch: np.ndarray, tmp_path: Path) -> None:
    ort_file = to_ort_format(conv_onnx, tmp_path / "m.ort")
    assert ort_file.read_bytes()[4:8] == b"ORTM"  # flatbuffer identifier of the ORT format
    sess = get_runtime("onnxruntime").load(ort_file, CPU1)
    np.testing.assert_allclose(sess.infer(batch), ort_reference(conv_onnx, batch), atol=1e-5)
    art = get_runtime("onnxruntime").compile(conv_onnx, tmp_path / "c", RuntimeSettings(extra={"format": "ort"}))
    assert art.path.suffix == ".ort"
    np.testing.assert_allclose(get_runtime("onnxruntime").load(art.path, CPU1).infer(batch),
                               ort_reference(conv_onnx, batch), atol=1e-5)


def test_int8_runs_the_qdq_graph(qdq_onnx: Path, conv_onnx: Path, batch: np.ndarray) -> None:
    sess = get_runtime("onnxruntime").load(qdq_onnx, RuntimeSettings(precision="int8", threads=1))
    out = sess.infer(batch)
    np.testing.assert_allclose(out, ort_reference(qdq_onnx, batch), atol=1e-4)
    with pytest.raises(UsageError, match="no QuantizeLinear"):
        get_runtime("onnxruntime").load(conv_onnx, RuntimeSettings(precision="int8"))
    with pytest.raises(UsageError, match="float32 graph"):
        get_runtime("onnxruntime").load(conv_onnx, RuntimeSettings(precision="fp16"))


def test_unknown_and_unavailable_providers(conv_onnx: Path) -> None:
    with pytest.raises(UsageError, match="unknown ONNX Runtime device 'FPGA'"):
        providers_for(RuntimeSettings(device="FPGA"))
    import onnxruntime as ort

    for device, provider in (("CUDA", "CUDAExecutionProvider"), ("TensorRT", "TensorrtExecutionProvider")):
        if provider in ort.get_available_providers():
            continue
        with pytest.raises(UsageError, match=rf"{provider} is not available.*pip install 'edgekd\[gpu\]'"):
            get_runtime("onnxruntime").load(conv_onnx, RuntimeSettings(device=device))
    with pytest.raises(UsageError, match="graph optimisation level"):
        get_runtime("onnxruntime").load(conv_onnx, RuntimeSettings(graph_optimization="max"))


def test_tensorrt_provider_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    chain = providers_for(RuntimeSettings(device="TensorRT", precision="int8", workspace_mb=512), tmp_path / "cache")
    names = [p for p, _ in chain]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    opts = chain[0][1]
    assert opts["trt_fp16_enable"] and opts["trt_int8_enable"]
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == str(tmp_path / "cache")
    assert opts["trt_max_workspace_size"] == 512 * 2**20


def test_devices_lists_cpu() -> None:
    assert "CPU" in get_runtime("onnxruntime").devices()
