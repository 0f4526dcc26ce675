"""Why INT8 did not pay off: causes read from the artifacts and this host, each a short sentence with numbers.

The bench stage measures the INT8 student against the FP32 one interleaved (`paired_speedup`). When the
speed-up's 95% CI does not lie above 1, `why_not` names the causes it can show, checked in this order:

- **layers left in floating point**: weighted layers (Conv, Gemm, MatMul) of the INT8 ONNX whose weight is not
  quantized (edgekd.onnxfacts' rule), as a share of the layers and of the MACs (edgekd.runtimes.roofline's
  count). A float layer inside an INT8 graph also costs a dequantize / requantize around it, so a large share
  of *layers* matters even when their MACs are few (MobileNetV3's squeeze-excitation convolutions).
- **depthwise convolutions**: a depthwise conv does kernel-size MACs per output, too few for INT8 dot-product
  instructions to pay; OpenVINO's CPU plugin may run them in float (the runtime's own layer precisions say
  how many it did) or gain little from INT8.
- **per-inference overhead**: the runtime's call on an almost empty model (one Relu, same input, same
  settings) measured here; when it is a large share of the FP32 student's p50, INT8 can only speed up the
  rest (Amdahl: at most FP32 p50 / empty call, even if INT8 arithmetic were free).
- **the host is not the device**: the target profile's device identity does not match this machine
  (edgekd.runtimes.identity), or this CPU has no INT8 dot-product instructions (x86 VNNI / AMX, Arm dot
  product / i8mm), without which INT8 convolutions gain little over FP32.

If none applies, the one reason says so with the figures checked. No torch here (bench runs on devices).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

# A cause is named when its figure passes its threshold (a share is of the INT8 graph's weighted layers / MACs).
FLOAT_LAYER_SHARE = 0.20  # float layers: each adds a dequantize / requantize between INT8 neighbours
FLOAT_MAC_SHARE = 0.10
DEPTHWISE_LAYER_SHARE = 0.20
DEPTHWISE_MAC_SHARE = 0.10
OVERHEAD_SHARE = 0.25  # empty call / FP32 p50: a quarter of the latency that INT8 cannot touch
INT8_DOT_FLAGS = {"x86_64": ("avx512_vnni", "avx_vnni", "amx_int8"), "aarch64": ("asimddp", "i8mm")}


class GraphShares(BaseModel):
    """Weighted layers of an INT8 ONNX and their MACs at the measured batch: all, left in float, depthwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: int
    macs: int
    float_layers: int
    float_macs: int
    depthwise_layers: int
    depthwise_macs: int

    def share(self, what: str) -> float:
        total = self.layers if what.endswith("layers") else self.macs
        return getattr(self, what) / total if total else 0.0


def graph_shares(onnx_path: Path, batch: int = 1) -> GraphShares:
    """Count from the INT8 QDQ ONNX the target's artifact was built from (the OpenVINO IR comes from the same
    quantized model, with the same float layers)."""
    from edgekd.onnxfacts import Graph
    from edgekd.runtimes.roofline import count_ops, read_onnx

    model = read_onnx(onnx_path)
    graph = Graph.from_onnx(model)
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    depthwise = set()
    for node in model.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group > 1 and _weight_dims(graph, node.input[1], dims)[1:2] == [1]:
            depthwise.add(node.name or node.output[0])
    ops = count_ops(onnx_path, batch)
    return GraphShares(layers=len(ops), macs=sum(o.macs for o in ops),
                       float_layers=sum(not o.quantized for o in ops),
                       float_macs=sum(o.macs for o in ops if not o.quantized),
                       depthwise_layers=sum(o.name in depthwise for o in ops),
                       depthwise_macs=sum(o.macs for o in ops if o.name in depthwise))


def _weight_dims(graph, name: str, dims: dict[str, list[int]]) -> list[int]:
    """Shape of the initializer behind `name` (through Identity / QuantizeLinear / DequantizeLinear)."""
    seen = set()
    while name not in dims and name not in seen:
        seen.add(name)
        node = graph.producers.get(name)
        if node is None or not node.inputs:
            return []
        name = node.inputs[0]
    return dims.get(name, [])


def empty_call_ms(runtime: str, settings: Any, x: Any) -> float | None:
    """p50 of the runtime's call on a one-Relu ONNX model with the input `x` (its per-inference overhead as a
    caller sees it), or None when this runtime cannot load an ONNX file."""
    import dataclasses
    import tempfile

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from edgekd.runtimes import get_runtime
    from edgekd.runtimes.timing import measure_latency

    shape = list(np.shape(x))
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "empty",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "empty.onnx"
        onnx.save(model, str(path))
        fp32 = dataclasses.replace(settings, precision="fp32")
        try:
            session = get_runtime(runtime).load(path, fp32)
        except Exception:  # noqa: BLE001 - a runtime that loads only its own format (TensorRT engine, .pte)
            return None
        xc = np.ascontiguousarray(x, dtype=np.float32)
        stats = measure_latency(lambda: session.infer(xc), warmup_runs=20, warmup_s=0.1, min_runs=300, min_s=0.3,
                                max_s=5.0)
    return float(stats.median_ms)


def _pct(v: float) -> str:
    return f"{v:.0%}"


def why_not(speedup: float, ci95: list[float], shares: GraphShares | None = None, fp32_ms: float | None = None,
            empty_ms: float | None = None, runtime_float_depthwise: int | None = None,
            host_flags: frozenset[str] | None = None, host_arch: str | None = None,
            identity_reasons: list[str] | None = None, host_name: str = "this host") -> list[str]:
    """The causes, one short sentence each, when the speed-up CI does not lie above 1; [] when INT8 paid off."""
    if ci95[0] > 1.0:
        return []
    out: list[str] = []
    s = shares
    if s and s.layers and (s.share("float_layers") >= FLOAT_LAYER_SHARE or s.share("float_macs") >= FLOAT_MAC_SHARE):
        out.append(f"{s.float_layers} of {s.layers} weighted layers ({_pct(s.share('float_layers'))}; "
                   f"{_pct(s.share('float_macs'))} of the MACs) left in floating point, each with a dequantize / "
                   "requantize around it")
    if s and s.depthwise_layers and (s.share("depthwise_layers") >= DEPTHWISE_LAYER_SHARE
                                     or s.share("depthwise_macs") >= DEPTHWISE_MAC_SHARE):
        ran = f"; the runtime ran {runtime_float_depthwise} of them in float" if runtime_float_depthwise else ""
        out.append(f"{s.depthwise_layers} depthwise convolutions ({_pct(s.share('depthwise_layers'))} of the "
                   f"layers, {_pct(s.share('depthwise_macs'))} of the MACs), which gain little from INT8{ran}")
    if empty_ms and fp32_ms and empty_ms / fp32_ms >= OVERHEAD_SHARE:
        out.append(f"per-inference overhead dominates: the runtime's empty call takes {empty_ms:.3f} ms, "
                   f"{_pct(empty_ms / fp32_ms)} of the FP32 student's {fp32_ms:.3f} ms p50 (at most "
                   f"{fp32_ms / empty_ms:.1f}x faster even if INT8 arithmetic were free)")
    if identity_reasons:
        out.append(f"measured on {host_name}, not the target's device: {'; '.join(identity_reasons)}")
    wanted = INT8_DOT_FLAGS.get(host_arch or "")
    if wanted and host_flags and not any(f in host_flags for f in wanted):
        out.append(f"{host_name} has no INT8 dot-product instructions ({' / '.join(wanted)}), so INT8 "
                   "convolutions gain little over FP32 on it")
    if not out:
        checked = [f"float layers {_pct(s.share('float_layers'))}, depthwise {_pct(s.share('depthwise_macs'))} "
                   "of MACs" if s else "no INT8 ONNX to count layers in",
                   f"empty call {_pct(empty_ms / fp32_ms)} of the FP32 p50" if empty_ms and fp32_ms else
                   "empty call not measured"]
        out.append(f"no cause found in the artifacts ({'; '.join(checked)}): INT8 kernels are not faster than FP32 "
                   f"ones for this model on {host_name}")
    return out


def payoff_reasons(payoff: dict[str, Any], *, int8_onnx: Path | None, batch: int, fp32_ms: float | None,
                   runtime: str, settings: Any, x: Any, int8_layers: list[dict[str, Any]], target: Any,
                   measured_here: bool) -> dict[str, Any]:
    """`paid_off`, `why_not` and the figures behind them, for the bench stage's int8_payoff (measures the
    runtime's empty call only when INT8 did not pay off)."""
    from edgekd.runtimes.identity import check_target, host_facts

    lo = payoff["speedup_ci95"][0]
    out: dict[str, Any] = {"paid_off": lo > 1.0, "why_not": []}
    if lo > 1.0:
        return out
    shares = None
    if int8_onnx is not None and int8_onnx.suffix == ".onnx" and int8_onnx.is_file():
        try:
            shares = graph_shares(int8_onnx, batch)
        except Exception as exc:  # noqa: BLE001 - dynamic shapes the roofline cannot count: say so, go on
            out["graph_note"] = f"layers not counted: {str(exc).splitlines()[0]}"
    empty = empty_call_ms(runtime, settings, x)
    facts = host_facts()
    ident = check_target(target, facts)
    float_dw = sum(1 for x_ in int8_layers if x_.get("type") == "GroupConvolution")
    out["why_not"] = why_not(payoff["speedup"], payoff["speedup_ci95"], shares, fp32_ms, empty, float_dw or None,
                             facts.cpu_flags, facts.arch, [] if ident.matches else list(ident.reasons),
                             f"this host ({facts.cpu_model or facts.arch})")
    out.update({"graph": shares.model_dump() if shares else None, "empty_call_ms": empty,
                "host_is_target": ident.matches, "measured_on_target": measured_here})
    return out
