"""Bundle pieces that need no run: INT8 checks on hand-made graphs, converter errors, format parsing."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.bundle.formats import _convert, parse_formats, unsupported_operator
from edgekd.bundle.reference import pick_samples
from edgekd.bundle.verify import compare, qdq_integer_report
from edgekd.errors import UsageError


def _graph(tmp_path, quantize_weight: bool):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zp = numpy_helper.from_array(np.array(0, np.int8), "zp")
    wq = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.int8), "wq")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq")]
    inits = [scale, zp]
    if quantize_weight:
        nodes.append(helper.make_node("DequantizeLinear", ["wq", "s", "zp"], ["wd"], name="wdq"))
        inits.append(wq)
        nodes.append(helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv"))
    else:
        inits.append(w)
        nodes.append(helper.make_node("Conv", ["xd", "w"], ["c"], name="conv"))
    nodes.append(helper.make_node("Sigmoid", ["c"], ["y"], name="sig"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_qdq_report_lists_float_weights_and_ops(tmp_path):
    good = qdq_integer_report(_graph(tmp_path, True))
    assert good["ok"] and good["weighted_ops_int8"] == 1 and good["float_ops"] == ["Sigmoid sig"]
    bad = qdq_integer_report(_graph(tmp_path, False))
    assert not bad["ok"] and bad["weights_in_float"] == ["Conv conv"]


def test_converter_failure_names_the_operator():
    def boom():
        raise RuntimeError("Lowering failed: aten.grid_sampler_2d.default is not supported by the partitioner")

    with pytest.raises(UsageError, match=r"format 'tflite' cannot hold the model: operator aten.grid_sampler_2d"):
        _convert("tflite", boom)
    assert unsupported_operator(ValueError("Unsupported op: DeformConv")) == "DeformConv"


def test_parse_formats():
    assert parse_formats(["onnx, ort", "onnx"]) == ["onnx", "ort"]
    with pytest.raises(UsageError, match="unknown bundle format 'foo'"):
        parse_formats(["foo"])


def test_compare_tolerances_and_reference_samples():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert compare(ref, ref + 5e-5, "fp32")["ok"]
    assert not compare(ref, ref + [[0, 2.0], [0, 0]], "fp32")["ok"]
    assert compare(ref, ref + 0.05, "int8")["ok"] and not compare(ref, ref[::-1], "int8")["ok"]
    assert not compare(ref, ref * 1.5, "int8")["ok"]  # same classes, logits 50% off: a wrong scale
    idx = pick_samples(np.array([2, 2, 0, 1, 0]), 4)
    assert idx.tolist() == [2, 3, 0, 1]
