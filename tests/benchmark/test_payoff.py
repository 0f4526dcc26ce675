"""edgekd.benchmark.payoff: each reason INT8 did not pay off, from constructed inputs; the counts from an ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.benchmark.payoff import GraphShares, empty_call_ms, graph_shares, why_not

SLOW = (0.97, [0.93, 1.01])  # speed-up and its 95% CI: not above 1
QUIET = GraphShares(layers=50, macs=10_000, float_layers=0, float_macs=0, depthwise_layers=0, depthwise_macs=0)


def test_paid_off_has_no_reasons() -> None:
    assert why_not(1.4, [1.2, 1.6], QUIET, fp32_ms=1.0, empty_ms=0.9) == []


def test_float_layers_share_of_layers_and_macs() -> None:
    # MobileNetV3-Small's shape: 18 SE convs in float, many layers but few MACs
    s = QUIET.model_copy(update={"float_layers": 18, "float_macs": 200})
    [reason] = why_not(*SLOW, s)
    assert "18 of 50 weighted layers (36%; 2% of the MACs) left in floating point" in reason
    few = QUIET.model_copy(update={"float_layers": 2, "float_macs": 100})  # 4% of layers, 1% of MACs: not a cause
    assert "floating point" not in why_not(*SLOW, few)[0]


def test_depthwise_convolutions() -> None:
    s = QUIET.model_copy(update={"depthwise_layers": 11, "depthwise_macs": 1500})
    [reason] = why_not(*SLOW, s, runtime_float_depthwise=3)
    assert reason.startswith("11 depthwise convolutions (22% of the layers, 15% of the MACs)")
    assert "ran 3 of them in float" in reason


def test_per_inference_overhead() -> None:
    [reason] = why_not(*SLOW, QUIET, fp32_ms=0.05, empty_ms=0.03)
    assert "empty call takes 0.030 ms, 60% of the FP32 student's 0.050 ms p50" in reason and "1.7x" in reason
    assert "no cause found" in why_not(*SLOW, QUIET, fp32_ms=1.0, empty_ms=0.03)[0]  # 3%: not a cause


def test_host_is_not_the_device() -> None:
    [reason] = why_not(*SLOW, QUIET, identity_reasons=["CPU lacks amx_int8"], host_name="this host (AMD EPYC)")
    assert reason == "measured on this host (AMD EPYC), not the target's device: CPU lacks amx_int8"


def test_host_without_int8_dot_product() -> None:
    [reason] = why_not(*SLOW, QUIET, host_flags=frozenset({"avx2", "fma"}), host_arch="x86_64")
    assert "no INT8 dot-product instructions (avx512_vnni / avx_vnni / amx_int8)" in reason
    vnni = why_not(*SLOW, QUIET, host_flags=frozenset({"avx2", "avx512_vnni"}), host_arch="x86_64")
    assert "no cause found" in vnni[0]
    assert "no cause found" in why_not(*SLOW, QUIET, host_flags=frozenset(), host_arch="x86_64")[0]  # unknown


def test_reasons_combine() -> None:
    s = QUIET.model_copy(update={"float_layers": 18, "float_macs": 200, "depthwise_layers": 11,
                                 "depthwise_macs": 1500})
    got = why_not(*SLOW, s, fp32_ms=0.05, empty_ms=0.03, identity_reasons=["CPU model differs"])
    assert len(got) == 4


def _w(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr, name)


def test_graph_shares_count_float_and_depthwise(tmp_path: Path) -> None:
    """depthwise 4ch k3 p1 (float weight) -> 1x1 conv 4->8 with an int8 weight behind DequantizeLinear."""
    nodes = [
        helper.make_node("Conv", ["x", "wd"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4, name="dw"),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w1"]),
        helper.make_node("Conv", ["d", "w1"], ["y"], kernel_shape=[1, 1], name="pw"),
    ]
    inits = [_w("wd", np.ones((4, 1, 3, 3), np.float32)), _w("wq", np.ones((8, 4, 1, 1), np.int8)),
             _w("ws", np.array(0.1, np.float32))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], initializer=inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    s = graph_shares(path)
    assert (s.layers, s.float_layers, s.depthwise_layers) == (2, 1, 1)
    assert (s.macs, s.float_macs, s.depthwise_macs) == (4 * 64 * 9 + 8 * 64 * 4, 4 * 64 * 9, 4 * 64 * 9)


def test_empty_call_is_measured_on_openvino() -> None:
    pytest.importorskip("openvino")
    from edgekd.runtimes.base import RuntimeSettings

    ms = empty_call_ms("openvino", RuntimeSettings(device="CPU", precision="int8", threads=1),
                       np.zeros((1, 3, 8, 8), np.float32))
    assert ms is not None and 0 < ms < 50


def test_the_printed_line_carries_the_reasons() -> None:
    from edgekd.report.summary import payoff_line

    p = {"speedup": 0.97, "speedup_ci95": [0.93, 1.01], "measured_with": "openvino CPU", "accuracy_cost_points": 0.4,
         "paid_off": False, "why_not": ["18 of 50 weighted layers (36%; 2% of the MACs) left in floating point"]}
    line = payoff_line(p)
    assert line.startswith("INT8 vs FP32 student (openvino CPU): 0.97x speed (95% CI 0.93-1.01")
    assert line.endswith("INT8 is not faster than FP32 here because: 18 of 50 weighted layers (36%; 2% of the MACs) "
                         "left in floating point")
    assert "because" not in payoff_line({**p, "paid_off": True, "why_not": []})
