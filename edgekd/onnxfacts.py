"""Facts about an ONNX graph that several parts of edgekd ask, defined once: which operators carry weights,
which are integer kernels, what is a constant, and whether a weight is quantized.

Used by the INT8 export (edgekd.quant.int8_export: which layers stayed in float), the bundle's integer check
(edgekd.bundle.integer: QDQ ONNX and ORT-format files) and the roofline (edgekd.runtimes.roofline: 1-byte
weights). It reads a graph as a list of `Node`s and the initializers' element types, so an ORT-format file
(read with ONNX Runtime's flatbuffer schema) answers exactly as the ONNX it came from. No torch here: bundle
code runs on devices without it; onnx is imported only to read a ModelProto.

The rule, "is this weight quantized": a weight is INT8 when it comes through a DequantizeLinear (from an
int8/uint8 initializer, or from a QuantizeLinear of a float one) or is itself stored in 8 bits or fewer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, NamedTuple

WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})  # the standard ops whose input 1 is a weight
ORT_FUSED_WEIGHTED_OPS = frozenset({"FusedConv", "FusedGemm", "FusedMatMul", "NhwcFusedConv"})  # ORT's fused forms
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
INTEGER_KERNELS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm",
                             "DynamicQuantizeMatMul"})
# ONNX TensorProto element types stored in 8 bits or fewer: UINT8, INT8, the four FLOAT8s, UINT4, INT4, FLOAT4E2M1
LOW_BIT_TYPES = frozenset({2, 3, 17, 18, 19, 20, 21, 22, 23})
_PASS_THROUGH = frozenset({"Identity", "QuantizeLinear", "DequantizeLinear"})  # a constant in, a constant out


class Node(NamedTuple):
    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]


class Graph:
    """Nodes, the element type of every constant (initializers and Constant outputs) and who produces what."""

    def __init__(self, nodes: Iterable[Node], constants: dict[str, int]) -> None:
        self.nodes = list(nodes)
        self.constants = dict(constants)  # name -> ONNX element type (TensorProto.DataType value)
        self.producers = {o: n for n in self.nodes for o in n.outputs}

    @classmethod
    def from_onnx(cls, model: Any) -> Graph:
        """From an onnx.ModelProto (its main graph)."""
        import onnx

        g = model.graph
        constants = {i.name: i.data_type for i in g.initializer}
        nodes = []
        for n in g.node:
            nodes.append(Node(n.op_type, n.name, list(n.input), list(n.output)))
            if n.op_type == "Constant" and n.attribute and n.attribute[0].type == onnx.AttributeProto.TENSOR:
                constants[n.output[0]] = n.attribute[0].t.data_type
        return cls(nodes, constants)

    def op_counts(self) -> Counter[str]:
        return Counter(n.op_type for n in self.nodes)

    def produced_by(self, name: str) -> str | None:
        """The op type that produces `name`, None for a graph input or a constant."""
        node = self.producers.get(name)
        return None if node is None else node.op_type

    def is_constant(self, name: str) -> bool:
        """A stored constant, or one passed through Identity / QuantizeLinear / DequantizeLinear (a weight)."""
        seen = set()
        while name not in self.constants:
            node = self.producers.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.inputs or name in seen:
                return False
            seen.add(name)
            name = node.inputs[0]
        return True

    def is_quantized(self, name: str) -> bool:
        """The one rule: `name` comes through a DequantizeLinear, or is stored in 8 bits or fewer."""
        return self.produced_by(name) == "DequantizeLinear" or self.constants.get(name) in LOW_BIT_TYPES

    def weight_of(self, node: Node) -> str | None:
        """The weight a weighted op reads (input 1 of a Conv; the constant input of a Gemm / MatMul), or None
        (an integer kernel, or a MatMul of two activations)."""
        if node.op_type not in WEIGHTED_OPS | ORT_FUSED_WEIGHTED_OPS or len(node.inputs) < 2:
            return None
        if node.op_type in ("Gemm", "MatMul", "FusedGemm", "FusedMatMul"):
            return next((i for i in node.inputs[:2] if i and self.is_constant(i)), None)
        return node.inputs[1]

    def weighted(self) -> list[Node]:
        """Ops that carry a weight, and integer kernels (whose weights are integer by construction)."""
        return [n for n in self.nodes if self.weight_of(n) is not None or n.op_type in INTEGER_KERNELS]

    def float_weighted(self) -> list[Node]:
        """Weighted ops whose weight is not quantized: the layers that run in float."""
        return [n for n in self.nodes if (w := self.weight_of(n)) is not None and not self.is_quantized(w)]
