"""FP32 ONNX export: facts, checker, dynamic batch parity, and the unsupported-operator message."""

from __future__ import annotations

import pytest

from edgekd.errors import UsageError
from edgekd.export import check_parity, export_onnx

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def test_export_facts(tiny, tmp_path):
    facts = export_onnx(tiny, tmp_path / "m.onnx", torch.randn(2, 3, 16, 16))
    assert facts["opset"] == 17
    assert facts["inputs"] == {"input": ["batch", 3, 16, 16]}
    assert facts["outputs"] == {"logits": ["batch", 10]}
    assert facts["op_types"]["Conv"] == 2 and facts["exporter"] == "torchscript"


def test_static_batch_when_asked(tiny, tmp_path):
    facts = export_onnx(tiny, tmp_path / "m.onnx", torch.randn(2, 3, 16, 16), dynamic_batch=False)
    assert facts["inputs"] == {"input": [2, 3, 16, 16]}


def test_fp32_parity_at_batch_1_and_7(tiny, inputs, tmp_path):
    pytest.importorskip("onnxruntime")
    export_onnx(tiny, tmp_path / "m.onnx", torch.randn(2, 3, 16, 16))  # traced at batch 2
    report = check_parity(tmp_path / "m.onnx", tiny, inputs, "fp32", batch_sizes=(1, 7))
    assert report.passed and [b.batch_size for b in report.batches] == [1, 7]
    assert all(b.max_abs <= 1e-4 for b in report.batches)


def test_training_mode_is_restored(tiny, tmp_path):
    tiny.train()
    export_onnx(tiny, tmp_path / "m.onnx", torch.randn(2, 3, 16, 16))
    assert tiny.training


class CumMax(torch.nn.Module):
    def forward(self, x):
        return torch.cummax(x, dim=1).values  # aten::cummax has no ONNX symbolic at opset 17


def test_unsupported_operator_names_op_and_module(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.Sequential(torch.nn.ReLU(), CumMax())).eval()
    with pytest.raises(UsageError) as err:
        export_onnx(model, tmp_path / "m.onnx", torch.randn(2, 3, 8, 8))
    msg = str(err.value)
    assert msg.startswith("cannot export: operator 'aten::cummax' in module '1.1' has no ONNX symbolic at opset 17;")
    assert err.value.exit_code == 2
