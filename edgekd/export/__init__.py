"""ONNX export and parity checks of exported artifacts against PyTorch.

Importing this package is light: torch, onnxruntime and openvino are imported inside the functions.
"""

from edgekd.export.onnx_export import export_onnx, onnx_facts
from edgekd.export.parity import (
    FP16_MAX_ABS,
    FP32_MAX_ABS,
    FP32_MAX_REL,
    INT8_MIN_TOP1_AGREEMENT,
    ParityReport,
    check_parity,
    check_parity_with,
    compare_logits,
    onnxruntime_infer,
)

__all__ = [
    "FP16_MAX_ABS",
    "FP32_MAX_ABS",
    "FP32_MAX_REL",
    "INT8_MIN_TOP1_AGREEMENT",
    "ParityReport",
    "check_parity",
    "check_parity_with",
    "compare_logits",
    "export_onnx",
    "onnx_facts",
    "onnxruntime_infer",
]
