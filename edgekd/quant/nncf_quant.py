"""INT8 post-training quantization with NNCF, QAT helpers, save/load, and INT8 exports: one import for all.

Each concern has its module: edgekd.quant.ptq (QuantSpec, calibration, quantize), edgekd.quant.qat,
edgekd.quant.checkpoint (save/load), edgekd.quant.int8_export (QDQ ONNX, OpenVINO IR).

The flow the qad stage uses::

    spec = QuantSpec(preset="trt")                       # or "mixed" for OpenVINO
    qmodel = quantize(model, calib_loader, spec, example_input)
    prepare_for_qat(qmodel)                              # train mode, BatchNorm statistics frozen
    ... distil into qmodel ...
    save_quantized(qmodel, "qmodel.pt", meta={...})
    export_qdq_onnx(qmodel, "model.int8.onnx", example_input)   # ONNX Runtime / TensorRT
    export_openvino_ir(qmodel, "model.int8.xml", example_input) # OpenVINO

Presets and the reasons for them: edgekd.quant.ptq.

Conv -> BatchNorm pairs are folded before quantization by default (``fold_batchnorm``; see
:mod:`edgekd.quant.bn_fold`): without it NNCF quantizes the conv weight *before* the BatchNorm and ORT
cannot form INT8 convolutions at all.

nncf, torch and torchao come from the ``train`` extra; openvino from ``cpu``. They are imported inside the
functions so that ``import edgekd`` never imports them.
"""

from edgekd.quant.checkpoint import (
    CHECKPOINT_FORMAT, CHECKPOINT_VERSION, load_quantized, read_quantized_meta, save_quantized,
)  # fmt: skip
from edgekd.quant.int8_export import export_openvino_ir, export_qdq_onnx, qdq_facts
from edgekd.quant.ptq import (
    FOLDED_ATTR, QuantSpec, collect_calibration, ignored_scope_for, iter_images, module_device, quantize,
)  # fmt: skip
from edgekd.quant.qat import freeze_batchnorm, prepare_for_qat, qat_train_mode

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "FOLDED_ATTR", "QuantSpec", "collect_calibration",
    "export_openvino_ir", "export_qdq_onnx", "freeze_batchnorm", "ignored_scope_for", "iter_images",
    "load_quantized", "module_device", "prepare_for_qat", "qat_train_mode", "qdq_facts", "quantize",
    "read_quantized_meta", "save_quantized",
]  # fmt: skip
