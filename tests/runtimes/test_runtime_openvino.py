from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

from edgekd.errors import UsageError
from edgekd.runtimes import RuntimeSettings, get_runtime

from .conftest import ort_reference


@pytest.fixture(scope="module")
def ir(conv_onnx: Path, tmp_path_factory: pytest.TempPathFactory):
    return get_runtime("openvino").compile(conv_onnx, tmp_path_factory.mktemp("ir"), RuntimeSettings())


def test_compile_writes_fp32_ir_with_dynamic_batch(ir) -> None:
    assert ir.kind == "openvino_ir" and ir.path.suffix == ".xml"
    assert all(f.is_file() for f in ir.files) and ir.path.with_suffix(".bin") in ir.files
    assert ir.facts["input_shapes"]["input"].startswith("[?,")
    assert ir.facts["precision"] == "fp32"
    # fp32 weights kept: 16*3*3*3 + 16*1*3*3 + 32*16 + 10*32 weights (+ biases) at 4 bytes
    assert ir.path.with_suffix(".bin").stat().st_size >= 4 * (432 + 144 + 512 + 320)


def test_ir_bytes_do_not_depend_on_earlier_work_in_the_process(conv_onnx: Path, tmp_path: Path) -> None:
    """OpenVINO numbers unnamed nodes with a process-wide counter; the IR edgekd writes must not carry it, so a
    stage rerun after other conversions (a resumed run) writes the same file."""
    import openvino as ov

    rt = get_runtime("openvino")
    first = rt.compile(conv_onnx, tmp_path / "a", RuntimeSettings()).path.read_bytes()
    for _ in range(3):
        ov.convert_model(str(conv_onnx))  # moves OpenVINO's node counter on
    assert rt.compile(conv_onnx, tmp_path / "b", RuntimeSettings()).path.read_bytes() == first


def test_fp32_matches_onnxruntime_with_precision_pinned(ir, conv_onnx: Path, batch: np.ndarray) -> None:
    sess = get_runtime("openvino").load(ir.path, RuntimeSettings(precision="fp32", threads=1, batch=2))
    np.testing.assert_allclose(sess.infer(batch), ort_reference(conv_onnx, batch), atol=1e-4, rtol=0)
    d = sess.describe()
    assert d["properties"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert d["properties"]["PERFORMANCE_HINT"] == "LATENCY"
    assert d["properties"]["NUM_STREAMS"] == 1
    assert d["properties"]["INFERENCE_NUM_THREADS"] == 1 == d["threads"]
    assert d["device"] == "CPU" and d["version"]
    assert d["compiled_shapes"] == [[2, 3, 32, 32]]
    # another batch size compiles its own static shape and still matches
    x5 = np.random.default_rng(3).standard_normal((5, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(sess.infer(x5), ort_reference(conv_onnx, x5), atol=1e-4, rtol=0)
    assert [5, 3, 32, 32] in sess.describe()["compiled_shapes"]


def test_layer_precisions_fp32(ir) -> None:
    sess = get_runtime("openvino").load(ir.path, RuntimeSettings(precision="fp32", threads=1))
    lp = sess.layer_precisions()
    assert lp["counts"] and lp["heavy_counts"] == {"f32": sum(lp["heavy_counts"].values())}
    assert "Convolution" in lp["by_type"]
    assert lp["mismatched"] == []


def test_int8_from_fake_quantize(qdq_onnx: Path, batch: np.ndarray, tmp_path: Path) -> None:
    art = get_runtime("openvino").compile(qdq_onnx, tmp_path, RuntimeSettings())
    assert art.facts["fake_quantize_ops"] > 0 and art.facts["precision"] == "int8"
    sess = get_runtime("openvino").load(art.path, RuntimeSettings(precision="int8", threads=1))
    ref = ort_reference(qdq_onnx, batch)
    out = sess.infer(batch)
    # int8 kernels round differently from ORT's reference QDQ: a loose parity, scaled to the logits
    assert np.abs(out - ref).max() <= 0.1 * np.abs(ref).max()
    lp = sess.layer_precisions()
    assert lp["expected_heavy"] == ["i8", "u8"]
    quantized = sum(v for k, v in lp["heavy_counts"].items() if k in ("i8", "u8"))
    assert quantized >= 1, lp
    assert len(lp["mismatched"]) == sum(lp["heavy_counts"].values()) - quantized
    assert sess.describe()["properties"]["INFERENCE_PRECISION_HINT"] == "f32"


def test_bf16_is_honoured_when_asked(ir) -> None:
    sess = get_runtime("openvino").load(ir.path, RuntimeSettings(precision="bf16", threads=1))
    assert sess.describe()["properties"]["INFERENCE_PRECISION_HINT"] in ("bf16", "f32")  # f32 on CPUs without bf16


def test_load_onnx_directly(conv_onnx: Path, batch: np.ndarray) -> None:
    sess = get_runtime("openvino").load(conv_onnx, RuntimeSettings(threads=1))
    np.testing.assert_allclose(sess.infer(batch), ort_reference(conv_onnx, batch), atol=1e-4, rtol=0)


def test_errors(ir, conv_onnx: Path) -> None:
    rt = get_runtime("openvino")
    with pytest.raises(UsageError, match=r"device 'NPU' is not available.*available: .*CPU"):
        rt.load(ir.path, RuntimeSettings(device="NPU"))
    with pytest.raises(UsageError, match="no FakeQuantize"):
        rt.load(ir.path, RuntimeSettings(precision="int8"))
    with pytest.raises(UsageError, match="unknown precision"):
        rt.load(ir.path, RuntimeSettings(precision="int4"))
    with pytest.raises(UsageError, match="performance hint"):
        rt.load(ir.path, RuntimeSettings(performance_hint="FASTEST"))
    with pytest.raises(UsageError, match=".xml"):
        rt.load(conv_onnx.with_suffix(".plan"), RuntimeSettings())
    assert "CPU" in rt.devices()


def test_bound_input_follows_new_values_and_new_arrays(conv_onnx, batch) -> None:
    """The input array is bound once: values written into it later are inferred, and another array rebinds."""
    from edgekd.runtimes.timing import measure_latency

    pytest.importorskip("openvino")
    session = get_runtime("openvino").load(conv_onnx, RuntimeSettings(precision="fp32", batch=len(batch)))
    x = np.ascontiguousarray(batch.copy())
    first = session.infer(x)
    x[:] = batch[::-1]
    np.testing.assert_allclose(session.infer(x), session.infer(np.ascontiguousarray(batch[::-1])), atol=1e-5)
    np.testing.assert_allclose(session.infer(np.ascontiguousarray(batch.copy())), first, atol=1e-5)
    stats = measure_latency(lambda: session.infer(x), warmup_runs=2, warmup_s=0, min_runs=20, min_s=0)
    native = session.native_latency_ms(stats.n)
    assert len(native) == stats.n and all(v > 0 for v in native)
