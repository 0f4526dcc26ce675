"""One definition of "is this weight quantized" (edgekd.onnxfacts), and the three places that ask it agreeing:
the INT8 export's facts, the bundle's integer check and the roofline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.onnxfacts import Graph, Node


def _graph(tmp_path):
    """Four weighted ops: conv_qdq (float weight behind Q->DQ), conv_int8 (int8 weight behind DQ only),
    fc (float weight, no DQ: a layer left in float) and mm (a MatMul of two activations: no weight)."""
    f = lambda name, shape: numpy_helper.from_array(np.ones(shape, np.float32), name)  # noqa: E731
    inits = [f("w1", [4, 3, 1, 1]), numpy_helper.from_array(np.ones([4, 4, 1, 1], np.int8), "w2"),
             f("s", []), numpy_helper.from_array(np.array(0, np.int8), "z"), f("wf", [4, 4])]
    nodes = [
        helper.make_node("QuantizeLinear", ["w1", "s", "z"], ["w1q"]),
        helper.make_node("DequantizeLinear", ["w1q", "s", "z"], ["w1d"]),
        helper.make_node("Conv", ["x", "w1d"], ["c1"], name="conv_qdq"),
        helper.make_node("DequantizeLinear", ["w2", "s", "z"], ["w2d"]),
        helper.make_node("Conv", ["c1", "w2d"], ["c2"], name="conv_int8"),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["fl"]),
        helper.make_node("Gemm", ["fl", "wf"], ["g"], name="fc"),
        helper.make_node("Transpose", ["g"], ["gt"]),
        helper.make_node("MatMul", ["g", "gt"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return model, path


def test_the_rule(tmp_path):
    model, _ = _graph(tmp_path)
    g = Graph.from_onnx(model)
    assert [n.name for n in g.weighted()] == ["conv_qdq", "conv_int8", "fc"]  # mm reads no constant
    assert [n.name for n in g.float_weighted()] == ["fc"]
    assert g.is_constant("w1d") and g.is_constant("w2d") and not g.is_constant("c1")
    assert g.is_quantized("w1d") and g.is_quantized("w2") and not g.is_quantized("wf")


def test_export_bundle_and_roofline_agree(tmp_path):
    from edgekd.bundle.integer import qdq_integer_report
    from edgekd.quant.int8_export import qdq_facts
    from edgekd.runtimes.roofline import count_ops

    model, path = _graph(tmp_path)
    assert qdq_facts(model)["float_nodes"] == ["fc"]
    report = qdq_integer_report(path)
    assert report["weights_in_float"] == ["Gemm fc"] and report["weighted_ops"] == 3
    assert {op.name: op.quantized for op in count_ops(path)} == \
        {"conv_qdq": True, "conv_int8": True, "fc": False, "mm": False}


def test_no_torch_behind_it():
    code = "import sys, edgekd.onnxfacts, edgekd.bundle.integer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("op", ["Identity", "QuantizeLinear"])
def test_a_loop_is_not_a_constant(op):
    g = Graph([Node(op, "a", ["t"], ["t"])], {})
    assert not g.is_constant("t")
