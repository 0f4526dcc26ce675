"""INT8 QDQ files store INT8 weights: each weight's QuantizeLinear folded into the int8 initializer it computes,
bit-exactly (ONNX Runtime's own QuantizeLinear gives the same integers), with only a DequantizeLinear left."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.export.qdq_weights import fold_weight_quantizers

ort = pytest.importorskip("onnxruntime")


def _weight_qdq(w: np.ndarray, scale: np.ndarray, axis: int = 0, expose_q: bool = False) -> onnx.ModelProto:
    """y = DequantizeLinear(QuantizeLinear(w)) with int8 zero points, w a constant; `expose_q`: q is an output too."""
    zp = np.zeros(scale.shape, np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["w", "s", "z"], ["q"], axis=axis),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, w.shape)]
    if expose_q:
        outputs.append(helper.make_tensor_value_info("q", TensorProto.INT8, w.shape))
    graph = helper.make_graph(nodes, "g", [], outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ort_run(model: onnx.ModelProto, outputs: list[str]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # ORT's kernel, not its folding
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(outputs, {})


def _stored(model: onnx.ModelProto) -> np.ndarray:
    (init,) = [i for i in model.graph.initializer if i.data_type == TensorProto.INT8 and i.name.endswith("_quantized")]
    return numpy_helper.to_array(init)


def test_rounding_half_to_even_and_saturation_per_channel():
    w = np.array([[2.5, 3.5, -2.5, -0.5], [300.0, -300.0, 0.49, 1.5]], np.float32)
    scale = np.array([1.0, 2.0], np.float32)  # channel 1: 150, -150, 0.245, 0.75
    model = _weight_qdq(w, scale)
    facts = fold_weight_quantizers(model)
    expected = np.array([[2, 4, -2, 0], [127, -128, 0, 1]], np.int8)  # half to even; saturate to [-128, 127]
    assert np.array_equal(_stored(model), expected)
    assert facts == {"folded": 1, "per_channel": 1, "int8_min": -128, "int8_max": 127}
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear"]
    assert [i.name for i in model.graph.initializer if i.data_type == TensorProto.FLOAT] == ["s"]  # w is gone
    onnx.checker.check_model(model, full_check=True)


def test_same_integers_as_onnx_runtime_quantize_linear():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, size=(32, 16, 3, 3)).astype(np.float32)
    scale = (np.abs(w).reshape(32, -1).max(1) / 127).astype(np.float32)
    w[0, 0, 0, :3] = np.array([0.5, 1.5, -2.5], np.float32) * scale[0]  # exact halves (scale a power-of-2 away)
    q_ort, y_before = _ort_run(_weight_qdq(w, scale, expose_q=True), ["q", "y"])
    model = _weight_qdq(w, scale)
    fold_weight_quantizers(model)
    assert np.array_equal(_stored(model), q_ort)
    assert np.array_equal(_ort_run(model, ["y"])[0], y_before)  # the graph computes exactly what it did


def test_activation_quantizers_stay():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              initializer=[numpy_helper.from_array(np.array(0.1, np.float32), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_weight_quantizers(model)["folded"] == 0 and len(model.graph.node) == 2


torch = pytest.importorskip("torch")
pytest.importorskip("nncf")


class WideNet(torch.nn.Module):
    """Weights dominate the file: 3->64->128 3x3 convs and a 128->10 linear, ~77k weights."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(128, 10)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def test_int8_qdq_file_holds_int8_weights_and_keeps_parity(tmp_path, monkeypatch):
    from edgekd.export import check_parity, export_onnx
    from edgekd.quant import QuantSpec, export_qdq_onnx, quantize

    torch.manual_seed(0)
    model = WideNet().eval()
    x = torch.randn(96, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    q = quantize(model, [x[:64]], QuantSpec(subset_size=64), x[:2])
    export_onnx(model, tmp_path / "fp32.onnx", x[:2])
    facts = export_qdq_onnx(q, tmp_path / "int8.onnx", x[:2])
    folded = facts["int8_weights"]
    assert (folded["folded"], folded["per_channel"], folded["int8_max"]) == (3, 3, 127)
    assert folded["int8_min"] >= -127  # symmetric weights, as TensorRT wants them
    # 4 activation quantizers (input, after each ReLU, before fc) keep Q->DQ; the 3 weights have a DQ only
    assert facts["quantize_linear"] == 4 and facts["dequantize_linear"] == 7 and facts["float_ops"] == []
    m = onnx.load(str(tmp_path / "int8.onnx"))
    inits = {i.name: i for i in m.graph.initializer}
    for node in (n for n in m.graph.node if n.op_type in ("Conv", "Gemm")):
        dq = next(n for n in m.graph.node if node.input[1] in n.output)
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == TensorProto.INT8
    size_int8, size_fp32 = (tmp_path / "int8.onnx").stat().st_size, (tmp_path / "fp32.onnx").stat().st_size
    assert size_int8 <= 0.30 * size_fp32, (size_int8, size_fp32)
    report = check_parity(tmp_path / "int8.onnx", q, x[64:].numpy(), "int8", batch_sizes=(1, 7))
    assert report.passed and min(b.top1_agreement for b in report.batches) >= 0.99
    # the unfolded file (float weights -> Q -> DQ) gives the very same logits on ONNX Runtime
    import edgekd.export.qdq_weights as qw

    monkeypatch.setattr(qw, "fold_weight_quantizers", lambda m: {})
    export_qdq_onnx(q, tmp_path / "unfolded.onnx", x[:2])
    assert (tmp_path / "unfolded.onnx").stat().st_size > size_fp32
    feed = {"input": x[64:].numpy()}
    runs = [ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]).run(None, feed)[0]
            for f in ("int8.onnx", "unfolded.onnx")]
    assert np.array_equal(*runs)
