"""Estimated latency from an ONNX graph and a device's peak numbers (a roofline model); imports onnx only.

Everything here is an ESTIMATE for a device this machine cannot run: it is labelled so in every field.

Counting (batch made concrete, shapes from onnx.shape_inference):
- Conv (incl. grouped / depthwise): MACs = N * C_out * prod(out spatial) * (C_in / groups) * prod(kernel)
  = prod(output shape) * prod(weight.shape[1:]).
- ConvTranspose: MACs = prod(input shape) * prod(weight.shape[1:]) (= N*C_in*H_in*W_in * C_out/g * k).
- Gemm: MACs = M * N * K.  MatMul (with broadcast batch dims): MACs = prod(output shape) * K.
- FLOPs = 2 * MACs (bias adds and all other ops ignored).
Bytes moved per heavy op: weights at the precision they run (1 byte for QDQ-quantized weights, edgekd.onnxfacts:
int8/uint8 initializers behind DequantizeLinear, or float initializers behind QuantizeLinear->DequantizeLinear),
plus every activation input and the output, each element at the op's run precision. Elementwise ops,
pooling, reshapes are assumed fused or negligible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, shape_inference

from edgekd.errors import UsageError
from edgekd.onnxfacts import WEIGHTED_OPS, Graph
from edgekd.runtimes.base import read_onnx
_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
DEFAULT_COMPUTE_EFFICIENCY = 0.3
DEFAULT_MEMORY_EFFICIENCY = 0.6
DEFAULT_LAYER_OVERHEAD_MS = 0.005  # 5 us launch/dispatch cost per heavy layer


@dataclass(frozen=True)
class OpCost:
    """Estimated cost of one heavy op."""

    name: str
    op_type: str
    macs: int
    flops: int
    weight_elems: int
    act_elems: int  # activation inputs + output
    quantized: bool  # weights (and activation inputs) come through DequantizeLinear


@dataclass(frozen=True)
class Estimate:
    """An estimated (never measured) latency for one model, precision, batch and device."""

    flops: int
    macs: int
    bytes: int
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    latency_ms: float
    bound: str  # compute | memory
    precision: str
    batch: int
    layers: int
    assumptions: str
    estimated: bool = True
    label: str = "estimated"
    ops: list[OpCost] = field(default_factory=list, repr=False)

    def to_dict(self, include_ops: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not include_ops:
            out.pop("ops")
        return out


def _dims(vi: onnx.ValueInfoProto) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return dims


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """Fix the first dim of every non-initializer graph input to `batch`, then infer shapes."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.tensor_type.HasField("shape"):
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) > 0:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = batch
    # a stale value_info with the old batch would conflict with the new one
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.tensor_type.HasField("shape") and len(out.type.tensor_type.shape.dim) > 0:
            d0 = out.type.tensor_type.shape.dim[0]
            d0.ClearField("dim_value")
            d0.dim_param = "batch"
    return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def _probe_shapes(onnx_path: Path | str, model: onnx.ModelProto, batch: int) -> dict[str, list[int]]:
    """Shapes that static inference could not work out (e.g. a Pad whose pads are computed), read from one
    ONNX Runtime run on zeros with every intermediate tensor exposed as an output. {} without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for out in node.output:
            if out and out not in known:
                probe.graph.output.append(onnx.ValueInfoProto(name=out))
                known.add(out)
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        for inp in sess.get_inputs():
            dims = [batch if not isinstance(d, int) or i == 0 else d for i, d in enumerate(inp.shape)]
            dtype = np.float32 if "float" in inp.type else np.int64
            feeds[inp.name] = np.zeros(dims, dtype=dtype)
        values = sess.run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - the caller reports the missing shape in one line
        del exc
        return {}
    return {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), values) if hasattr(v, "shape")}


class _Tensors:
    """Shapes of every tensor of a graph (batch made concrete), its constants, and who produces what."""

    def __init__(self, onnx_path: Path | str, model: Any, batch: int) -> None:
        g = model.graph
        self.path = onnx_path
        self.shapes: dict[str, list[int]] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            dims = _dims(vi)
            if dims is not None:
                self.shapes[vi.name] = dims
        self.inits = {i.name: i for i in g.initializer}
        heavy_io = {t for n in g.node if n.op_type in WEIGHTED_OPS for t in (*n.input, *n.output) if t}
        if any(t not in self.shapes and t not in self.inits for t in heavy_io):
            self.shapes.update(_probe_shapes(onnx_path, model, batch))
        for c in g.node:  # Constant nodes act as initializers
            if c.op_type == "Constant" and c.attribute and c.attribute[0].type == onnx.AttributeProto.TENSOR:
                self.inits[c.output[0]] = c.attribute[0].t
        for name, t in self.inits.items():
            self.shapes[name] = [int(d) for d in t.dims]
        self.facts = Graph.from_onnx(model)  # what is a weight, and whether it is quantized (edgekd.onnxfacts)

    def weight_of(self, name: str) -> tuple[bool, bool]:
        """(is a weight/constant, is QDQ-quantized) for a tensor name."""
        return self.facts.is_constant(name), self.facts.is_quantized(name)

    def from_dq(self, name: str) -> bool:
        return self.facts.produced_by(name) == "DequantizeLinear"

    def n_elems(self, name: str) -> int:
        if name not in self.shapes:
            raise UsageError(f"cannot infer the shape of '{name}' in {self.path}: the roofline needs static shapes")
        return int(np.prod(self.shapes[name], dtype=np.int64)) if self.shapes[name] else 1


def _op_cost(node: Any, t: _Tensors) -> OpCost:
    """MACs, FLOPs, weight and activation elements of one heavy op, and whether it runs quantized."""
    shapes = t.shapes
    out = node.output[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    ins = [i for i in node.input if i]
    if node.op_type == "Conv":
        macs = t.n_elems(out) * int(np.prod(shapes[ins[1]][1:])) if ins[1] in shapes else None
        data_inputs = [ins[0]]
        w_inputs = ins[1:]
    elif node.op_type == "ConvTranspose":
        macs = t.n_elems(ins[0]) * int(np.prod(shapes[ins[1]][1:])) if ins[1] in shapes else None
        data_inputs, w_inputs = [ins[0]], ins[1:]
    elif node.op_type == "Gemm":
        a = shapes.get(ins[0])
        k = (a[0] if attrs.get("transA", 0) else a[1]) if a else None
        macs = t.n_elems(out) * k if k else None
        data_inputs = [i for i in ins[:2] if not t.weight_of(i)[0]]
        w_inputs = [i for i in ins if t.weight_of(i)[0]]
    else:  # MatMul
        a = shapes.get(ins[0])
        macs = t.n_elems(out) * a[-1] if a else None
        data_inputs = [i for i in ins if not t.weight_of(i)[0]]
        w_inputs = [i for i in ins if t.weight_of(i)[0]]
    if macs is None:
        raise UsageError(f"cannot count MACs of {node.op_type} '{node.name}': its input shapes are unknown")
    quantized = any(t.weight_of(w)[1] for w in w_inputs[:1]) or (
        not w_inputs and bool(data_inputs) and all(t.from_dq(i) for i in data_inputs)
    )
    return OpCost(
        name=node.name or out,
        op_type=node.op_type,
        macs=int(macs),
        flops=2 * int(macs),
        weight_elems=sum(t.n_elems(w) for w in w_inputs),
        act_elems=sum(t.n_elems(i) for i in data_inputs) + t.n_elems(out),
        quantized=quantized,
    )


def count_ops(onnx_path: Path | str, batch: int = 1) -> list[OpCost]:
    """Per-op MACs / FLOPs / element counts of the heavy ops, with the batch made concrete."""
    if batch < 1:
        raise UsageError(f"batch must be >= 1, got {batch}")
    model = _with_batch(read_onnx(onnx_path), batch)
    tensors = _Tensors(onnx_path, model, batch)
    return [_op_cost(node, tensors) for node in model.graph.node if node.op_type in WEIGHTED_OPS]


def _efficiencies(facts: dict[str, Any]) -> tuple[float, float]:
    eff = facts.get("efficiency")
    compute, memory = DEFAULT_COMPUTE_EFFICIENCY, DEFAULT_MEMORY_EFFICIENCY
    if isinstance(eff, dict):
        compute = float(eff.get("compute", compute))
        memory = float(eff.get("memory", memory))
    elif eff is not None:
        compute = memory = float(eff)
    compute = float(facts.get("compute_efficiency", compute))
    memory = float(facts.get("memory_efficiency", memory))
    for label, v in (("compute", compute), ("memory", memory)):
        if not 0 < v <= 1:
            raise UsageError(f"{label} efficiency must be in (0, 1], got {v}")
    return compute, memory


def _peak_tflops(facts: dict[str, Any], precision: str, notes: list[str]) -> float:
    """Peak in tera-ops/s (a MAC counts as 2 ops) for `precision`."""
    if precision == "int8":
        v = facts.get("peak_tops_int8")
    elif precision == "fp16":
        v = facts.get("peak_tflops_fp16")
    else:
        v = facts.get("peak_tflops_fp32")
        if v is None and facts.get("peak_tflops_fp16"):
            v = float(facts["peak_tflops_fp16"]) / 2
            notes.append("peak_tflops_fp32 not given: assumed peak_tflops_fp16 / 2")
    if v is None or float(v) <= 0:
        key = {"int8": "peak_tops_int8", "fp16": "peak_tflops_fp16"}.get(precision, "peak_tflops_fp32")
        raise UsageError(f"device facts lack '{key}', needed to estimate {precision} latency")
    return float(v)


def estimate_latency(
    onnx_path: Path | str,
    device_facts: dict[str, Any],
    precision: str = "fp32",
    batch: int = 1,
    *,
    layer_overhead_ms: float = DEFAULT_LAYER_OVERHEAD_MS,
) -> Estimate:
    """Estimated latency = max(compute_ms, memory_ms) + layers * layer_overhead_ms.

    device_facts: peak_tops_int8, peak_tflops_fp16, peak_tflops_fp32 (optional), mem_bandwidth_gbs,
    efficiency (float for both, or {'compute': .., 'memory': ..}; default 0.3 / 0.6). For int8, ops whose
    weights are not QDQ-quantized run in fp16 when the device states an fp16 peak, else in fp32.
    """
    if precision not in _BYTES:
        raise UsageError(f"unknown precision '{precision}': choose fp32, fp16 or int8")
    bw = device_facts.get("mem_bandwidth_gbs")
    if not bw or float(bw) <= 0:
        raise UsageError("device facts lack 'mem_bandwidth_gbs', needed for the memory-bound estimate")
    c_eff, m_eff = _efficiencies(device_facts)
    notes: list[str] = []
    ops = count_ops(onnx_path, batch)
    fallback = "fp16" if (precision == "int8" and device_facts.get("peak_tflops_fp16")) else (
        "fp32" if precision == "int8" else precision
    )

    c_eff_int8 = float(device_facts.get("compute_efficiency_int8") or c_eff)  # int8 kernels reach another share
    compute_s = 0.0
    total_bytes = 0
    n_fallback = 0
    for op in ops:
        run = "int8" if (precision == "int8" and op.quantized) else fallback
        if precision == "int8" and not op.quantized:
            n_fallback += 1
        peak = _peak_tflops(device_facts, run, notes)
        compute_s += op.flops / (peak * 1e12 * (c_eff_int8 if run == "int8" else c_eff))
        w_bytes = 1 if op.quantized and precision == "int8" else _BYTES[run]
        total_bytes += op.weight_elems * w_bytes + op.act_elems * _BYTES[run]
    memory_s = total_bytes / (float(bw) * 1e9 * m_eff)
    compute_ms, memory_ms = compute_s * 1e3, memory_s * 1e3
    overhead_ms = len(ops) * layer_overhead_ms

    if precision == "int8":
        notes.append(
            f"{len(ops) - n_fallback} of {len(ops)} heavy ops QDQ-quantized (int8 peak, 1-byte weights and "
            f"activations); the rest run in {fallback}"
        )
    notes = list(dict.fromkeys(notes))
    assumptions = (
        f"ESTIMATED, not measured: roofline over {len(ops)} Conv/ConvTranspose/Gemm/MatMul ops at batch {batch}, "
        f"{precision}; FLOPs = 2 x MACs, other ops assumed fused; compute efficiency {c_eff:g} of peak"
        + (f" ({c_eff_int8:g} for int8 ops)" if c_eff_int8 != c_eff and precision == "int8" else "") + ", memory "
        f"efficiency {m_eff:g} of {float(bw):g} GB/s; bytes = weights + activation inputs/outputs of each heavy "
        f"op (no cache reuse); latency = max(compute, memory) + {layer_overhead_ms:g} ms per heavy layer"
        + ("; " + "; ".join(notes) if notes else "")
    )
    return Estimate(
        flops=sum(o.flops for o in ops),
        macs=sum(o.macs for o in ops),
        bytes=int(total_bytes),
        compute_ms=compute_ms,
        memory_ms=memory_ms,
        overhead_ms=overhead_ms,
        latency_ms=max(compute_ms, memory_ms) + overhead_ms,
        bound="compute" if compute_ms >= memory_ms else "memory",
        precision=precision,
        batch=batch,
        layers=len(ops),
        assumptions=assumptions,
        ops=ops,
    )
