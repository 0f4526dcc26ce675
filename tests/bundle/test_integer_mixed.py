"""The INT8 check verifies an artifact as what it is: layers the qad stage kept in float on purpose are
allowed and named; a float layer nobody asked for is a defect. The same facts for QDQ ONNX, .ort and IR.

A tiny conv net is quantized by NNCF with `features.3` kept in float (as the qad fallback does), then exported
as QDQ ONNX, ORT format and OpenVINO IR: no training, a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.bundle.integer import float_layer_names, module_of, openvino_integer_report, qdq_integer_report

pytest.importorskip("nncf")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    from edgekd.quant import QuantSpec, export_openvino_ir, export_qdq_onnx, quantize
    from edgekd.runtimes.onnxruntime import to_ort_format
    from tests.quant.conftest import TinyNet

    torch.manual_seed(0)
    x = torch.randn(64, 3, 16, 16)
    out = tmp_path_factory.mktemp("mixed")
    q = quantize(TinyNet().eval(), [x], QuantSpec(ignored_layers=["features.3"]), x[:1])
    export_qdq_onnx(q, out / "m.onnx", x[:1])
    export_openvino_ir(q, out / "m.xml", x[:1])
    to_ort_format(out / "m.onnx", out / "m.ort")
    return {"onnx": out / "m.onnx", "ort": out / "m.ort", "xml": out / "m.xml"}


@pytest.mark.parametrize("fmt", ["onnx", "ort"])
def test_qdq_and_ort_verify_as_mixed_precision(mixed, fmt: str) -> None:
    made = qdq_integer_report(mixed[fmt], ["features.3"])
    assert made["ok"] and made["float_layers_on_purpose"] == ["features.3"]
    assert made["summary"] == "INT8 except 1 layer(s) in FP32: features.3"
    assert made["weighted_ops"] == 3 and made["weighted_ops_int8"] == 2
    undeclared = qdq_integer_report(mixed[fmt])  # the same file with no record: a float layer nobody asked for
    assert not undeclared["ok"] and undeclared["summary"].startswith("NOT fully INT8: 1 layer(s)")
    assert "features.3" in undeclared["weights_in_float_not_declared"][0]


def test_ort_and_onnx_report_the_same_facts(mixed) -> None:
    a, b = qdq_integer_report(mixed["onnx"], ["features.3"]), qdq_integer_report(mixed["ort"], ["features.3"])
    keys = ("ok", "summary", "weighted_ops", "weighted_ops_int8", "float_layers_on_purpose")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys} and b["format"] == "ort"


def test_openvino_runtime_precisions_allow_the_declared_layer(mixed) -> None:
    made = openvino_integer_report(mixed["xml"], float_layers=["features.3"])
    assert made["ok"] and made["summary"] == "INT8 except 1 layer(s) in FP32: features.3"
    assert not openvino_integer_report(mixed["xml"])["ok"]


def test_module_paths_from_node_names_and_defensive_records() -> None:
    assert module_of("/features/features.3/Conv") == "features.3"
    assert module_of("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert module_of("__module.layer1.0.conv1/aten::_convolution/Convolution") == "layer1.0.conv1"
    assert module_of("/fc/Gemm") == "fc"
    assert float_layer_names(["a.b", {"layer": "c"}, {"name": "d"}, 3, None]) == ["a.b", "c", "d"]
    assert float_layer_names(None) == [] and float_layer_names({"x": 1}) == []
