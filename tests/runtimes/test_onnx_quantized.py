""""Is this ONNX model quantized": one definition (edgekd.runtimes.base.onnx_is_quantized) for artifacts,
ONNX Runtime and TensorRT."""

from __future__ import annotations

from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from edgekd.runtimes.base import onnx_is_quantized  # noqa: E402


def _model(*ops: str):
    nodes, prev = [], "x"
    for i, op in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"y{i}"]))
        prev = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph)


def test_float_graph_is_not_quantized() -> None:
    assert not onnx_is_quantized(_model("Relu", "Identity"))


def test_qdq_graph_is_quantized_for_every_runtime(tmp_path: Path) -> None:
    m = _model("QuantizeLinear", "DequantizeLinear")
    assert onnx_is_quantized(m) and onnx_is_quantized(m, integer_kernels=False)
    path = tmp_path / "q.onnx"
    onnx.save(m, str(path))
    assert onnx_is_quantized(path)
    from edgekd.runtimes.tensorrt import onnx_has_qdq

    assert onnx_has_qdq(path)


def test_integer_kernels_count_except_for_tensorrt() -> None:
    m = _model("QLinearConv")
    assert onnx_is_quantized(m)
    assert not onnx_is_quantized(m, integer_kernels=False)


def test_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    from edgekd.errors import UsageError

    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    with pytest.raises(UsageError, match="not a readable ONNX model"):
        onnx_is_quantized(bad)
