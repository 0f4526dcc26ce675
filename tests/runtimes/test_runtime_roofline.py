from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.errors import UsageError
from edgekd.runtimes.roofline import count_ops, estimate_latency


def _save(tmp_path: Path, nodes, inits, out_shape, name: str = "m.onnx", in_shape=("N", 3, 8, 8)) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / name
    onnx.save(model, path)
    return path


def _w(name: str, shape, dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name)


@pytest.fixture()
def conv_gemm(tmp_path: Path) -> Path:
    """conv 3->16 k3 p1 (8x8) -> depthwise 16 k3 s2 (3x3 out) -> flatten -> gemm 144->10 (transB)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2], group=16, name="dw"),
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["g"], transB=1, name="fc"),
        helper.make_node("Reshape", ["g", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "wm"], ["y"], name="mm"),
    ]
    inits = [_w("w1", (16, 3, 3, 3)), _w("b1", (16,)), _w("w2", (16, 1, 3, 3)), _w("wg", (10, 144)), _w("bg", (10,)),
             numpy_helper.from_array(np.array([0, 2, 5], dtype=np.int64), "shape"), _w("wm", (5, 7))]
    return _save(tmp_path, nodes, inits, ("N", 2, 7))


def test_macs_equal_hand_count(conv_gemm: Path) -> None:
    n = 4
    ops = {o.name: o for o in count_ops(conv_gemm, batch=n)}
    assert ops["conv1"].macs == n * 16 * 8 * 8 * 3 * 3 * 3
    assert ops["dw"].macs == n * 16 * 3 * 3 * (16 // 16) * 3 * 3  # depthwise: C_in/groups = 1
    assert ops["fc"].macs == n * 10 * 144
    assert ops["mm"].macs == n * 2 * 7 * 5  # [n,2,5] x [5,7]
    assert all(o.flops == 2 * o.macs for o in ops.values())
    assert ops["conv1"].weight_elems == 16 * 27 + 16
    assert ops["conv1"].act_elems == n * 3 * 64 + n * 16 * 64


def test_batch_scales_activations_not_weights(conv_gemm: Path) -> None:
    one = {o.name: o for o in count_ops(conv_gemm, batch=1)}
    eight = {o.name: o for o in count_ops(conv_gemm, batch=8)}
    assert eight["conv1"].macs == 8 * one["conv1"].macs
    assert eight["fc"].weight_elems == one["fc"].weight_elems


def test_qdq_weights_count_one_byte(tmp_path: Path) -> None:
    scale = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, dtype=np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="qconv"),
    ]
    path = _save(tmp_path, nodes, [_w("wq", (16, 3, 3, 3), np.int8), scale, zp], ("N", 16, 8, 8), "q.onnx")
    (op,) = count_ops(path, batch=1)
    assert op.quantized and op.macs == 16 * 64 * 27
    facts = {"peak_tops_int8": 10.0, "peak_tflops_fp16": 5.0, "mem_bandwidth_gbs": 100.0}
    int8 = estimate_latency(path, facts, "int8", 1)
    fp16 = estimate_latency(path, facts, "fp16", 1)
    assert int8.bytes == 16 * 27 * 1 + (3 * 64 + 16 * 64) * 1
    assert fp16.bytes == 16 * 27 * 2 + (3 * 64 + 16 * 64) * 2
    assert int8.compute_ms == pytest.approx(fp16.compute_ms / 2)
    assert "1 of 1 heavy ops QDQ-quantized" in int8.assumptions
    with pytest.raises(UsageError, match="peak_tops_int8"):
        estimate_latency(path, {"peak_tflops_fp16": 5.0, "mem_bandwidth_gbs": 100.0}, "int8")


def test_estimate_latency_formula(conv_gemm: Path) -> None:
    facts = {"peak_tflops_fp32": 1.0, "mem_bandwidth_gbs": 10.0, "efficiency": {"compute": 0.5, "memory": 0.5}}
    est = estimate_latency(conv_gemm, facts, "fp32", batch=2, layer_overhead_ms=0.01)
    ops = count_ops(conv_gemm, 2)
    flops = sum(o.flops for o in ops)
    nbytes = sum(4 * (o.weight_elems + o.act_elems) for o in ops)
    assert est.flops == flops and est.bytes == nbytes
    assert est.compute_ms == pytest.approx(flops / (1e12 * 0.5) * 1e3)
    assert est.memory_ms == pytest.approx(nbytes / (10e9 * 0.5) * 1e3)
    assert est.latency_ms == pytest.approx(max(est.compute_ms, est.memory_ms) + 4 * 0.01)
    assert est.bound == ("compute" if est.compute_ms >= est.memory_ms else "memory")
    assert est.estimated and est.label == "estimated" and est.assumptions.startswith("ESTIMATED")
    assert "ops" not in est.to_dict()


def test_fp32_peak_falls_back_with_a_stated_assumption(conv_gemm: Path) -> None:
    est = estimate_latency(conv_gemm, {"peak_tflops_fp16": 2.0, "mem_bandwidth_gbs": 10.0}, "fp32")
    assert "peak_tflops_fp16 / 2" in est.assumptions


def test_missing_device_facts(conv_gemm: Path) -> None:
    with pytest.raises(UsageError, match="mem_bandwidth_gbs"):
        estimate_latency(conv_gemm, {"peak_tflops_fp16": 1.0}, "fp16")
    with pytest.raises(UsageError, match="peak_tflops_fp32"):
        estimate_latency(conv_gemm, {"mem_bandwidth_gbs": 1.0}, "fp32")
    with pytest.raises(UsageError, match="precision"):
        estimate_latency(conv_gemm, {"mem_bandwidth_gbs": 1.0}, "int4")


def test_exported_torch_model(conv_onnx: Path, qdq_onnx: Path) -> None:
    ops = count_ops(conv_onnx, batch=3)
    assert [o.op_type for o in ops] == ["Conv", "Conv", "Conv", "Gemm"]
    expected = 3 * (16 * 32 * 32 * 27 + 16 * 32 * 32 * 9 + 32 * 32 * 32 * 16 + 10 * 32)
    assert sum(o.macs for o in ops) == expected
    qops = count_ops(qdq_onnx, batch=3)
    assert sum(o.macs for o in qops) == expected
    assert all(o.quantized for o in qops)
