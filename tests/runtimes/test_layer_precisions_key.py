"""A layer left in float reaches the table: OpenVINO's `describe()["layer_precisions"]` is the one key the bench
stage, the report and `edgekd bench` read, and the precision column says "int8 (N layer(s) fp32)"."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("openvino")
onnx = pytest.importorskip("onnx")

from edgekd.benchmark import layers_not_in_precision  # noqa: E402
from edgekd.report.summary import precision_text  # noqa: E402
from edgekd.runtimes import RuntimeSettings, get_runtime  # noqa: E402

from .conftest import quantize_qdq  # noqa: E402


def _facts(qdq: Path, tmp: Path) -> dict:
    art = get_runtime("openvino").compile(qdq, tmp, RuntimeSettings())
    return get_runtime("openvino").load(art.path, RuntimeSettings(precision="int8", threads=1)).describe()


def test_a_float_layer_is_named_and_counted_in_the_precision_column(conv_onnx: Path, tmp_path: Path) -> None:
    convs = [n.name for n in onnx.load(str(conv_onnx)).graph.node if n.op_type == "Conv"]
    full = _facts(quantize_qdq(conv_onnx, tmp_path / "all.onnx", []), tmp_path / "all")
    mixed = _facts(quantize_qdq(conv_onnx, tmp_path / "mixed.onnx", [convs[-1]]), tmp_path / "mixed")
    assert "layers_not_in_requested_precision" not in mixed and "heavy_layer_precisions" not in mixed
    before, after = layers_not_in_precision(full), layers_not_in_precision(mixed)
    assert len(after) == len(before) + 1, (before, after)
    new = [x for x in after if x["name"] not in {b["name"] for b in before}]
    assert len(new) == 1 and new[0]["precision"] in ("f32", "fp32")
    text = precision_text({"precision": "int8", "layers_not_in_precision": after})
    assert text.startswith("int8 (") and f"{len(after)} layer" in text and "fp32" in text
    assert precision_text({"precision": "int8", "layers_not_in_precision": []}) == "int8"


def test_a_runtime_without_layer_facts_falls_back_to_the_qad_float_layers() -> None:
    rows = layers_not_in_precision({"runtime": "onnxruntime"}, ["features.0", "fc"])
    assert [r["name"] for r in rows] == ["features.0", "fc"]
    assert precision_text({"precision": "int8", "layers_not_in_precision": rows}) == "int8 (2 layers fp32)"
