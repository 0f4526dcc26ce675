"""NNCF quantization of a tiny conv net: calibration rules, ignored layers, save/load, QDQ ONNX, OpenVINO IR."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edgekd.errors import StageFailed, UsageError
from edgekd.quant import (
    QuantSpec,
    export_openvino_ir,
    export_qdq_onnx,
    load_quantized,
    prepare_for_qat,
    qat_train_mode,
    quantize,
    read_quantized_meta,
    save_quantized,
)

from .conftest import TinyNet, accuracy

torch = pytest.importorskip("torch")


def test_quantize_keeps_accuracy_and_folds_batchnorm(trained, qmodel, data):
    fp32_acc = accuracy(trained, data["x_eval"], data["y_eval"])
    q_acc = accuracy(qmodel, data["x_eval"], data["y_eval"])
    assert fp32_acc > 0.5, "the fixture model should have learnt the synthetic task"
    assert q_acc >= fp32_acc - 0.03
    assert qmodel.edgekd_folded_batchnorm == [["features.0", "features.1"], ["features.3", "features.4"]]
    names = [n for n, m in qmodel.named_modules() if type(m).__name__ == "SymmetricQuantizer"]
    assert len(names) == 7  # 3 weight + 4 activation quantizers (input, after each ReLU, after pool)
    assert not qmodel.training
    assert isinstance(trained.features[1], torch.nn.BatchNorm2d), "the input model is not modified"


def test_trt_preset_is_signed_int8_with_zero_point_zero(qmodel, example, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    export_qdq_onnx(qmodel, tmp_path / "q.onnx", example)
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # constants the exporter shares through Identity nodes
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]
    zps = [inits.get(n.input[2]) for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(zps) == 7  # 4 activations (Q->DQ) and 3 weights (int8 initializer -> DQ)
    assert zps and all(z is not None and z.dtype == np.int8 and not z.any() for z in zps)


def test_calibration_minimum(trained, example):
    few = [torch.randn(12, 3, 16, 16)]
    with pytest.raises(UsageError, match="calibration set has 12 images, fewer than the minimum 32"):
        quantize(trained, few, QuantSpec(), example)


def test_spec_is_strict():
    with pytest.raises(ValueError):
        QuantSpec(preset="int4")
    with pytest.raises(ValueError):
        QuantSpec(subset=10)


def test_unknown_ignored_layer_lists_nearest(trained, calib, example):
    with pytest.raises(UsageError, match=r"'features\.33' \(nearest: features\.3"):
        quantize(trained, calib, QuantSpec(ignored_layers=["features.33"]), example)


def test_ignored_layer_stays_float_in_qdq_onnx(trained, calib, example, tmp_path):
    q = quantize(trained, calib, QuantSpec(subset_size=64, ignored_layers=["features.3"]), example)
    facts = export_qdq_onnx(q, tmp_path / "q.onnx", example)
    assert facts["float_ops"] == ["Conv"]
    assert facts["float_nodes"] == ["/features/features.3/Conv"]
    assert facts["quantize_linear"] > 0


def test_save_load_round_trip(qmodel, example, data, tmp_path):
    path = save_quantized(qmodel, tmp_path / "q.pt", {"arch": "tiny", "input_size": [16, 16]})
    ckpt = torch.load(path, weights_only=True)  # plain types only
    assert ckpt["format"] == "edgekd-nncf-quantized"
    assert read_quantized_meta(path) == {"arch": "tiny", "input_size": [16, 16]}
    restored = load_quantized(TinyNet(), path, example)
    with torch.no_grad():
        assert torch.equal(qmodel(data["x_eval"]), restored(data["x_eval"]))


def test_load_into_other_architecture_is_usage_error(qmodel, tmp_path):
    path = save_quantized(qmodel, tmp_path / "q.pt", {})
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    with pytest.raises(UsageError):
        load_quantized(other, path)


def test_qdq_onnx_matches_fake_quant_torch_on_ort(qmodel, example, data, tmp_path):
    pytest.importorskip("onnxruntime")
    from edgekd.export import check_parity

    facts = export_qdq_onnx(qmodel, tmp_path / "q.onnx", example)
    assert facts["opset"] == 17 and facts["float_ops"] == []
    assert facts["quantize_linear"] == 4 and facts["dequantize_linear"] == 7  # weight Q folded into int8
    assert facts["inputs"] == {"input": ["batch", 3, 16, 16]}
    report = check_parity(tmp_path / "q.onnx", qmodel, data["x_eval"].numpy(), "int8", batch_sizes=(1, 7))
    assert report.passed
    assert all(b.top1_agreement >= 0.99 for b in report.batches)
    # same INT8 grid: logits differ only where float rounding moves a value across a quantization step
    assert max(b.max_rel for b in report.batches) < 0.05


def test_openvino_ir_has_fake_quantize_and_runs(qmodel, example, data, tmp_path):
    ov = pytest.importorskip("openvino")
    from edgekd.export import check_parity_with

    facts = export_openvino_ir(qmodel, tmp_path / "q.xml", example)
    assert facts["fake_quantize"] >= 4  # activation quantizers; OpenVINO folds weight FakeQuantize to int8
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(facts["xml"]), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}
    )

    def infer(x: np.ndarray) -> np.ndarray:
        return compiled(np.ascontiguousarray(x, dtype=np.float32))[0]

    report = check_parity_with(infer, qmodel, data["x_eval"].numpy(), "int8", batch_sizes=(1, 7), artifact="q.xml")
    assert report.passed


def test_export_of_float_model_is_refused(trained, example, tmp_path):
    with pytest.raises(StageFailed, match="no QuantizeLinear"):
        export_qdq_onnx(trained, tmp_path / "f.onnx", example)


def test_qat_train_mode_freezes_batchnorm(trained, calib, example, data):
    q = quantize(trained, calib, QuantSpec(subset_size=64, fold_batchnorm=False), example)
    bns = [m for m in q.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2
    with torch.no_grad():
        eval_out = q(data["x_eval"][:32])
    prepare_for_qat(q)
    means = [bn.running_mean.clone() for bn in bns]
    assert q.training and q.features[0].training and not any(bn.training for bn in bns)
    out = q(data["x_eval"][:32])
    torch.testing.assert_close(out, eval_out)  # train-time forward == inference forward
    out.sum().backward()
    assert q.features[0].weight.grad is not None and bns[0].weight.grad is not None
    assert all(torch.equal(m, bn.running_mean) for m, bn in zip(means, bns))
    q.eval()
    qat_train_mode(q)
    assert q.training and not any(bn.training for bn in bns)


def test_quantize_accepts_plain_tensor_batches(trained, data, example):
    q = quantize(trained, [data["x"][:40]], QuantSpec(subset_size=40), example)
    assert accuracy(q, data["x_eval"], data["y_eval"]) > 0.5


def test_mixed_preset_quantizes(trained, calib, example, data):
    q = quantize(copy.deepcopy(trained), calib, QuantSpec(preset="mixed", subset_size=64), example)
    assert any(type(m).__name__ == "AsymmetricQuantizer" for m in q.modules())
    assert accuracy(q, data["x_eval"], data["y_eval"]) >= accuracy(trained, data["x_eval"], data["y_eval"]) - 0.03
