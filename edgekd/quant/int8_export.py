"""INT8 exports of an NNCF-quantized model: standard Q/DQ ONNX (ONNX Runtime, TensorRT) and OpenVINO IR."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import StageFailed, UsageError, require
from edgekd.onnxfacts import Graph
from edgekd.quant.ptq import _nncf, _torch, module_device

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def qdq_facts(onnx_model: Any) -> dict[str, Any]:
    """Counts of QuantizeLinear/DequantizeLinear and the weighted nodes left in float (edgekd.onnxfacts' rule:
    a weight is INT8 when it comes through DequantizeLinear)."""
    graph = Graph.from_onnx(onnx_model)
    ops = graph.op_counts()
    floats = graph.float_weighted()
    return {
        "quantize_linear": ops["QuantizeLinear"],
        "dequantize_linear": ops["DequantizeLinear"],
        "float_ops": [n.op_type for n in floats],
        "float_nodes": [n.name for n in floats],
    }


def export_qdq_onnx(
    qmodel: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    opset: int = 17,
    input_name: str = "input",
    output_name: str = "logits",
) -> dict[str, Any]:
    """Export standard QuantizeLinear/DequantizeLinear ONNX (ONNX Runtime, TensorRT explicit quantization).

    NNCF's own quantizers export as FakeQuantize-like custom nodes; ``nncf.strip(..., NATIVE)`` (needs
    torchao) first turns them into torch fake-quant ops, which the TorchScript exporter writes as Q/DQ. Each
    weight's QuantizeLinear is then folded into the int8 initializer it computes (edgekd.export.qdq_weights):
    the weights are stored as INT8 behind a DequantizeLinear, activations keep their Q/DQ pairs.
    ``qmodel`` is not modified. Returns the ONNX facts plus the Q/DQ counts, float ops and ``int8_weights``.
    """
    onnx = require("onnx", "train")
    nncf = _nncf()
    require("torchao", "train", "nncf.strip to native PyTorch needs torchao")
    from edgekd.export.onnx_export import check_onnx, export_onnx
    from edgekd.export.qdq_weights import fold_weight_quantizers

    from nncf.torch.function_hook.wrapper import is_wrapped

    if not is_wrapped(qmodel):
        raise StageFailed(
            "export_qdq_onnx needs a model quantized by edgekd.quant.quantize: it has no QuantizeLinear to write"
        )
    model = copy.deepcopy(qmodel).eval()
    example_input = example_input.to(module_device(model))
    stripped = nncf.strip(model, do_copy=False, strip_format=nncf.StripFormat.NATIVE, example_input=example_input)
    facts = export_onnx(stripped, path, example_input, opset=opset, input_name=input_name, output_name=output_name)
    onnx_model = onnx.load(str(path))
    facts["int8_weights"] = fold_weight_quantizers(onnx_model)  # float weight -> Q -> DQ becomes int8 -> DQ
    onnx.save(onnx_model, str(path))
    check_onnx(path)
    facts.update(qdq_facts(onnx_model))
    if facts["dequantize_linear"] == 0:
        raise StageFailed(f"{path}: the exported INT8 model has no DequantizeLinear node; was it quantized?")
    facts["precision"] = "int8"
    return facts


def export_openvino_ir(qmodel: nn.Module, xml_path: str | Path, example_input: torch.Tensor) -> dict[str, Any]:
    """Convert the NNCF fake-quant model to OpenVINO IR (FakeQuantize nodes, run as INT8 by the CPU plugin).

    Batch is made dynamic; weights are saved in FP32 (``compress_to_fp16=False``) so the IR stays
    faithful to the fake-quant model. Returns {xml, bin, fake_quantize, input_shape, precision}.
    """
    torch = _torch()
    ov = require("openvino", "cpu", "OpenVINO IR export needs OpenVINO")
    xml_path = Path(xml_path)
    if xml_path.suffix != ".xml":
        raise UsageError(f"OpenVINO IR path must end in .xml, got {xml_path.name}")
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(qmodel).eval()
    example_input = example_input.to(module_device(model))
    with torch.no_grad(), warnings.catch_warnings():
        # tracing NNCF quantizers warns about .item() and re-trace mismatches at rounding boundaries;
        # the IR is checked against the fake-quant model by parity instead
        warnings.filterwarnings("ignore", category=getattr(torch.jit, "TracerWarning", UserWarning))
        warnings.filterwarnings("ignore", category=FutureWarning)
        ov_model = ov.convert_model(model, example_input=example_input)
    if len(ov_model.inputs) != 1:
        raise UsageError(f"expected a model with one input, the IR has {len(ov_model.inputs)}")
    shape = list(example_input.shape)
    ov_model.reshape(ov.PartialShape([-1, *shape[1:]]))
    from edgekd.runtimes.openvino import save_ir

    save_ir(ov_model, xml_path)  # fp32 weights, reproducible node names
    n_fq = sum(op.get_type_name() == "FakeQuantize" for op in ov_model.get_ops())
    if n_fq == 0:
        raise StageFailed(f"{xml_path}: the OpenVINO IR has no FakeQuantize node; was the model quantized?")
    return {
        "xml": str(xml_path),
        "bin": str(xml_path.with_suffix(".bin")),
        "fake_quantize": n_fq,
        "input_shape": ["batch", *shape[1:]],
        "precision": "int8",
    }
