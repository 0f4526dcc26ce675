"""INT8 weights stored as INT8: fold each weight's QuantizeLinear into the integer initializer it produces.

The TorchScript exporter writes NNCF's weight quantizers as float32 weight -> QuantizeLinear -> DequantizeLinear,
so an "INT8" QDQ file stored every weight in float32 and was larger than the FP32 file. Folding evaluates each
QuantizeLinear whose inputs are all constants with ONNX's reference implementation (`onnx.reference`, the
operator's specification in code: x / y_scale, rounded half to even, plus the zero point, saturated to the
output type's range; per-channel along `axis` when the scale is a vector), stores the result as an int8
initializer and keeps only the DequantizeLinear. The graph computes exactly what it did: the DequantizeLinear
receives the same integers. This is the form TensorRT's explicit quantization documents for pre-quantized
weights (a DequantizeLinear between the INT8 weight and the layer) and ONNX Runtime and OpenVINO read.
Activation QuantizeLinear nodes (their input is not a constant) are left as they are. No torch here.
"""

from __future__ import annotations

from typing import Any


def _constants(graph: Any) -> Any:
    """name -> numpy value for initializers, Constant nodes and Identity chains of those; None otherwise."""
    from onnx import numpy_helper

    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}

    def value(name: str) -> Any:
        while name not in inits:
            node = producers.get(name)
            if node is None or node.op_type not in ("Identity", "Constant"):
                return None
            if node.op_type == "Constant":
                attr = node.attribute[0] if node.attribute else None
                return numpy_helper.to_array(attr.t) if attr is not None and attr.name == "value" else None
            name = node.input[0]
        return numpy_helper.to_array(inits[name])

    return value


def _remove_unused(graph: Any) -> None:
    """Drop nodes whose outputs nobody reads (repeatedly), then initializers nobody reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = outputs | {i for n in graph.node for i in n.input}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    used = outputs | {i for n in graph.node for i in n.input}
    unused = {i.name for i in graph.initializer if i.name not in used}
    for init in [i for i in graph.initializer if i.name in unused]:
        graph.initializer.remove(init)
    for inp in [i for i in graph.input if i.name in unused]:  # an older IR lists initializers as inputs too
        graph.input.remove(inp)


def fold_weight_quantizers(model: Any) -> dict[str, Any]:
    """Replace, in place, every QuantizeLinear of a constant by the integer initializer it computes.

    Returns {"folded", "per_channel", "int8_min", "int8_max"}: how many weights are now stored as integers, how
    many of them have one scale per output channel, and the smallest and largest stored value (TensorRT wants
    symmetric weights: zero point 0, values in [-127, 127]).
    """
    import numpy as np
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    value = _constants(graph)
    outputs = {o.name for o in graph.output}
    taken = {i.name for i in graph.initializer} | {o for n in graph.node for o in n.output}
    renamed: dict[str, str] = {}
    folded, per_channel, lo, hi = 0, 0, None, None
    for node in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        feeds = {name: value(name) for name in node.input if name}
        if any(v is None for v in feeds.values()) or node.output[0] in outputs:
            continue  # an activation (or a graph output): stays a QuantizeLinear
        q = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)[0]
        name, k = f"{node.input[0]}_quantized", 1
        while name in taken:
            name, k = f"{node.input[0]}_quantized_{k}", k + 1
        taken.add(name)
        graph.initializer.append(numpy_helper.from_array(np.asarray(q), name))
        renamed[node.output[0]] = name
        graph.node.remove(node)
        folded += 1
        per_channel += int(np.size(feeds[node.input[1]]) > 1)
        lo = int(q.min()) if lo is None else min(lo, int(q.min()))
        hi = int(q.max()) if hi is None else max(hi, int(q.max()))
    for n in graph.node:
        for j, name in enumerate(n.input):
            if name in renamed:
                n.input[j] = renamed[name]
    _remove_unused(graph)
    return {"folded": folded, "per_channel": per_channel, "int8_min": lo, "int8_max": hi}
