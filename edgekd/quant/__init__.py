"""INT8 quantization (NNCF), QAT helpers and per-layer sensitivity.

Importing this package is light: torch, nncf and openvino are imported inside the functions that use them.
"""

from edgekd.quant.nncf_quant import (
    QuantSpec,
    export_openvino_ir,
    export_qdq_onnx,
    freeze_batchnorm,
    load_quantized,
    prepare_for_qat,
    qat_train_mode,
    quantize,
    read_quantized_meta,
    save_quantized,
)
from edgekd.quant.fallback import Attempt, FallbackResult, bounded_fallback
from edgekd.quant.sensitivity import LayerSensitivity, layer_sensitivity

__all__ = [
    "Attempt",
    "FallbackResult",
    "LayerSensitivity",
    "QuantSpec",
    "export_openvino_ir",
    "export_qdq_onnx",
    "bounded_fallback",
    "freeze_batchnorm",
    "layer_sensitivity",
    "load_quantized",
    "prepare_for_qat",
    "qat_train_mode",
    "quantize",
    "read_quantized_meta",
    "save_quantized",
]
