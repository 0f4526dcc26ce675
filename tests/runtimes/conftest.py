"""Tiny ONNX models for the runtime tests: a float conv net and its QDQ-quantized twin."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest


def _export_conv_net(path: Path) -> Path:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16),  # depthwise
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    ).eval()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; it is the one asked for here
        warnings.simplefilter("ignore")
        _export(torch, net, path)
    return path


def _export(torch, net, path: Path) -> None:  # noqa: ANN001
    torch.onnx.export(
        net,
        torch.randn(1, 3, 32, 32),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )


@pytest.fixture(scope="session")
def conv_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export_conv_net(tmp_path_factory.mktemp("models") / "convnet.onnx")


def quantize_qdq(src: Path, out: Path, exclude: list[str] = ()) -> Path:
    """ONNX Runtime's static QDQ quantization (int8, per-channel weights) of `src`, leaving the nodes named in
    `exclude` in float, calibrated on 8 seeded random images."""
    quant = pytest.importorskip("onnxruntime.quantization")

    class Reader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._it = iter([{"input": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)} for _ in range(8)])

        def get_next(self):  # noqa: ANN201
            return next(self._it, None)

    quant.quantize_static(
        str(src),
        str(out),
        Reader(),
        quant_format=quant.QuantFormat.QDQ,
        activation_type=quant.QuantType.QInt8,
        weight_type=quant.QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=list(exclude),
    )
    return out


@pytest.fixture(scope="session")
def qdq_onnx(conv_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize_qdq(conv_onnx, tmp_path_factory.mktemp("qdq") / "convnet_qdq.onnx")


@pytest.fixture()
def batch() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 3, 32, 32), dtype=np.float32)


def ort_reference(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """Plain ONNX Runtime CPU output with no graph optimisation: the reference the runtimes are compared to."""
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]
