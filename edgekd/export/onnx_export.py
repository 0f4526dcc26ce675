"""PyTorch -> ONNX with the ONNX checker and errors that name the operator and the module.

One exporter path: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. It is the path that turns
NNCF's stripped fake-quant ops into standard QuantizeLinear/DequantizeLinear (the dynamo exporter does
not here), it is stable for CNNs, and keeping one path for FP32 and INT8 means their graphs differ only
by the Q/DQ nodes. Opset 17 is the default: ONNX Runtime, OpenVINO and TensorRT 8.6+/10 all read it.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import StageFailed, UsageError, require

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

_UNSUPPORTED = re.compile(r"operator '([\w:.]+)' to ONNX opset version (\d+) is not supported")


def _module_of_op(model: nn.Module, example_input: torch.Tensor, op: str) -> str | None:
    """Module path whose forward calls ``op`` (e.g. 'aten::cummax'), from a TorchScript trace's scopes."""
    import torch

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (example_input,), check_trace=False)
    except Exception:  # noqa: BLE001 - best effort: the export error is the real one
        return None
    for node in traced.inlined_graph.nodes():
        if node.kind() == op:
            scope = node.scopeName()  # '__module.features/__module.features.3'
            last = scope.split("/")[-1]
            return last.removeprefix("__module.") if last.startswith("__module.") else (last or "")
    return None


def onnx_facts(onnx_model: Any) -> dict[str, Any]:
    """Opset, input/output names and shapes ('batch' for a symbolic dim), node count and op histogram."""

    def shape(value: Any) -> list[int | str]:
        dims = value.type.tensor_type.shape.dim
        return [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]

    opset = next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), None)
    graph = onnx_model.graph
    return {
        "opset": opset,
        "inputs": {v.name: shape(v) for v in graph.input},
        "outputs": {v.name: shape(v) for v in graph.output},
        "nodes": len(graph.node),
        "op_types": dict(sorted(Counter(n.op_type for n in graph.node).items())),
    }


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    opset: int = 17,
    input_name: str = "input",
    output_name: str = "logits",
    dynamic_batch: bool = True,
) -> dict[str, Any]:
    """Export ``model`` (put in eval mode for the export, then restored) and run ``onnx.checker``.

    Returns facts: opset, inputs/outputs with shapes, nodes, op_types, exporter, dynamic_batch, path.
    An operator without an ONNX symbolic -> UsageError naming the operator and the module calling it.
    """
    torch = require("torch", "train", "ONNX export needs PyTorch")
    onnx = require("onnx", "train")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=getattr(torch.jit, "TracerWarning", UserWarning))
            torch.onnx.export(
                model,
                (example_input,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except Exception as exc:
        match = _UNSUPPORTED.search(str(exc))
        if match is None:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StageFailed(f"ONNX export failed: {type(exc).__name__}: {first}") from exc
        op = match.group(1)
        module = _module_of_op(model, example_input, op)
        where = f" in module '{module or '<root>'}'" if module is not None else ""
        raise UsageError(
            f"cannot export: operator '{op}'{where} has no ONNX symbolic at opset {opset}; "
            "replace it with supported operations, try a newer opset, or register a custom symbolic "
            "(torch.onnx.register_custom_op_symbolic)"
        ) from exc
    finally:
        model.train(was_training)
    check_onnx(path)
    facts = onnx_facts(onnx.load(str(path), load_external_data=False))
    facts.update({"path": str(path), "exporter": "torchscript", "dynamic_batch": dynamic_batch})
    return facts


def check_onnx(path: str | Path) -> None:
    """onnx.checker with full shape inference; a failure is a StageFailed naming the file and the first line."""
    onnx = require("onnx", "train")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise StageFailed(f"{path}: the exported ONNX fails onnx.checker: {first}") from exc


def adopt_onnx(src: str | Path, path: str | Path, input_name: str = "input",
               output_name: str = "logits") -> dict[str, Any]:
    """A user's ONNX teacher as the run's teacher_fp32.onnx: the same graph with edgekd's input and output names
    (every reference renamed) and its first output alone, checked by onnx.checker. Returns onnx_facts."""
    onnx = require("onnx", "train")
    model = onnx.load(str(src))
    graph = model.graph
    init = {i.name for i in graph.initializer}
    old_in = next(i.name for i in graph.input if i.name not in init)
    old_out = graph.output[0].name
    while len(graph.output) > 1:
        graph.output.pop()
    renames = {old_in: input_name, old_out: output_name}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise UsageError(f"{src}: the ONNX teacher fails onnx.checker: {str(exc).strip().splitlines()[0]}") from exc
    facts = onnx_facts(model)
    facts.update({"path": str(path), "exporter": "adopted", "source": str(src),
                  "dynamic_batch": isinstance(facts["inputs"][input_name][0], str)})
    return facts
