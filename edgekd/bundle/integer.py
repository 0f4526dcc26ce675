"""Is an INT8 artifact integer where it promises to be? The same facts for QDQ ONNX, ORT format and OpenVINO IR.

- QDQ ONNX and `.ort` (ONNX Runtime's own format, read with its flatbuffer schema from
  `onnxruntime.tools.ort_format_model`): a Conv/Gemm/MatMul (or ORT's fused/QLinear kernels) is INT8 when its
  weight comes through DequantizeLinear or it is an integer kernel (edgekd.onnxfacts, the one definition). The
  same rule on both files, so the
  `.ort` made from a QDQ ONNX verifies exactly as that ONNX does.
- OpenVINO IR: FakeQuantize nodes, and the precision the CPU plugin actually chose for each heavy layer.

Mixed precision made on purpose: the qad stage may return layers to floating point to meet the accuracy
requirement (their module paths, e.g. `features.3`, are recorded in its manifest). Those layers are allowed
in float and named ("INT8 except 1 layer in FP32: features.3"); `ok` is False only for a float layer nobody
asked for, i.e. a defect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from edgekd.onnxfacts import INTEGER_KERNELS, ORT_FUSED_WEIGHTED_OPS, WEIGHTED_OPS, Graph, Node

STRUCTURAL = frozenset({"QuantizeLinear", "DequantizeLinear", "Constant", "Shape", "Reshape", "Flatten", "Identity",
                        "Squeeze", "Unsqueeze", "Gather", "Concat"})


def module_of(node_name: str) -> str:
    """The PyTorch module path a node was exported from: `/layer1/layer1.0/conv1/Conv` (TorchScript ONNX)
    and `__module.layer1.0.conv1/aten::_convolution/Convolution` (OpenVINO) both give `layer1.0.conv1`."""
    first = node_name.split("/")[0]
    if first.startswith("__module."):
        return first.removeprefix("__module.")
    path = ""
    for part in [p for p in node_name.split("/") if p][:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


def _declared(layer: str, declared: Iterable[str]) -> str | None:
    return next((d for d in declared if layer == d or layer.endswith("." + d)), None)


def float_layer_names(record: Any) -> list[str]:
    """Module paths from a manifest's record of layers kept in float, read defensively (a list of names, or
    of dicts with a 'layer'/'name'/'module' key); anything else gives []."""
    if not isinstance(record, (list, tuple)):
        return []
    out = []
    for item in record:
        if isinstance(item, dict):
            item = item.get("layer") or item.get("name") or item.get("module")
        if isinstance(item, str) and item:
            out.append(item)
    return out


def _summary(float_on_purpose: list[str], defects: list[str]) -> str:
    if defects:
        return f"NOT fully INT8: {len(defects)} layer(s) in FP32 nobody asked for: {', '.join(defects)}"
    if float_on_purpose:
        return f"INT8 except {len(float_on_purpose)} layer(s) in FP32: {', '.join(float_on_purpose)}"
    return "INT8"


def _split(names: list[str], declared: list[str]) -> tuple[list[str], list[str]]:
    """(module paths of float layers asked for, labels of float layers nobody asked for)."""
    on_purpose, defects = [], []
    for label, layer in ((n, module_of(n.split(" ", 1)[-1])) for n in names):
        d = _declared(layer, declared)
        if d is not None:
            on_purpose.append(d)
        else:
            defects.append(label)
    return sorted(set(on_purpose)), defects


# ------------------------------------------------------------------------------------------------ graphs
def _onnx_graph(path: Path) -> Graph:
    from edgekd.runtimes.base import read_onnx

    return Graph.from_onnx(read_onnx(path))


def _ort_graph(path: Path) -> Graph:
    """An ORT-format model's graph, read with ONNX Runtime's own flatbuffer schema (no session needed)."""
    from edgekd.errors import require
    from edgekd.runtimes.base import unreadable_model

    require("onnxruntime.tools.ort_format_model", "cpu", "to inspect .ort models")  # puts the schema on sys.path
    import ort_flatbuffers_py.fbs as fbs  # type: ignore[import-not-found]

    buf = bytearray(Path(path).read_bytes())
    session = fbs.InferenceSession.InferenceSession
    if not session.InferenceSessionBufferHasIdentifier(buf, 0):
        raise unreadable_model(Path(path), ValueError("no ORT flatbuffer identifier"), "ORT-format")
    g = session.GetRootAsInferenceSession(buf, 0).Model().Graph()
    nodes = []
    for i in range(g.NodesLength()):
        n = g.Nodes(i)
        nodes.append(Node(n.OpType().decode(), n.Name().decode(),
                          [n.Inputs(j).decode() for j in range(n.InputsLength())],
                          [n.Outputs(j).decode() for j in range(n.OutputsLength())]))
    inits = [g.Initializers(i) for i in range(g.InitializersLength())]
    # the schema's TensorDataType values are ONNX's TensorProto.DataType values
    return Graph(nodes, {t.Name().decode(): t.DataType() for t in inits})


def qdq_integer_report(path: Path, float_layers: Iterable[str] = ()) -> dict[str, Any]:
    """QDQ ONNX or .ort: every weighted op's weight must come through DequantizeLinear (or the op is an integer
    kernel), except the layers in `float_layers`; lists what stays in float."""
    path, declared = Path(path), list(float_layers)
    graph = _ort_graph(path) if path.suffix == ".ort" else _onnx_graph(path)
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)

    def from_dq(name: str) -> bool:
        return graph.produced_by(name) == "DequantizeLinear"

    weighted = graph.weighted()
    float_weights = [f"{n.op_type} {n.name}" for n in graph.float_weighted()]
    on_purpose, defects = _split(float_weights, declared)
    float_ops: list[str] = []
    skip = STRUCTURAL | WEIGHTED_OPS | ORT_FUSED_WEIGHTED_OPS | INTEGER_KERNELS
    for n in graph.nodes:
        if n.op_type in skip:
            continue
        acts = [i for i in n.inputs if i and i not in graph.constants and graph.produced_by(i) is not None]
        into_q = all(c.op_type == "QuantizeLinear" for o in n.outputs for c in consumers.get(o, [])) and \
            any(consumers.get(o) for o in n.outputs)
        if acts and not any(from_dq(i) for i in acts) and not into_q:
            float_ops.append(f"{n.op_type} {n.name}")
    ops = graph.op_counts()
    quantized = ops["QuantizeLinear"] + ops["DynamicQuantizeLinear"] + sum(ops[k] for k in INTEGER_KERNELS)
    return {"ok": bool(weighted) and not defects and quantized > 0 and len(float_weights) < len(weighted),
            "summary": _summary(on_purpose, defects), "format": "ort" if path.suffix == ".ort" else "onnx",
            "weighted_ops": len(weighted), "weighted_ops_int8": len(weighted) - len(float_weights),
            "weights_in_float": float_weights, "float_layers_on_purpose": on_purpose, "float_layers_declared": declared,
            "weights_in_float_not_declared": defects, "quantize_linear": ops["QuantizeLinear"],
            "dequantize_linear": ops["DequantizeLinear"], "float_ops": float_ops,
            "rule": "a Conv/Gemm/MatMul (or ONNX Runtime's fused form) is INT8 when its weight comes through "
                    "DequantizeLinear, or it is an integer kernel (QLinearConv, ...); layers the qad stage kept in "
                    "float on purpose are allowed and named; float_ops are other operators whose inputs do not come "
                    "from DequantizeLinear and whose output is not re-quantized"}


def openvino_integer_report(path: Path, precision: str = "int8", float_layers: Iterable[str] = ()) -> dict[str, Any]:
    """FakeQuantize nodes in the IR, and the layer precisions the CPU plugin actually chose at run time; heavy
    layers not in INT8 are allowed only when they are the layers kept in float on purpose."""
    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.base import RuntimeSettings

    declared = list(float_layers)
    session = get_runtime("openvino").load(path, RuntimeSettings(device="CPU", precision=precision))
    layers = session.layer_precisions()
    fq = session.describe()["fake_quantize_ops"]
    heavy = layers["heavy_counts"]
    in_int8 = sum(v for k, v in heavy.items() if k.lower().startswith(("i8", "u8")))
    not_int8 = [f"{m['type']} {m['name']} ({m['precision']})" for m in layers["mismatched"]]
    on_purpose, defects = _split([f"{m['type']} {m['name']}" for m in layers["mismatched"]], declared)
    return {"ok": fq > 0 and in_int8 > 0 and not defects, "summary": _summary(on_purpose, defects),
            "fake_quantize": fq, "runtime_heavy_layer_precisions": heavy,
            "runtime_layer_precisions": layers["counts"], "layers_not_int8": not_int8,
            "float_layers_on_purpose": on_purpose, "float_layers_declared": declared,
            "layers_not_int8_not_declared": defects, "device": "CPU (OpenVINO CPU plugin on this machine)"}
