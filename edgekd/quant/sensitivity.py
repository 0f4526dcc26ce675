"""Per-layer quantization sensitivity and the floating-point fallback the qad stage uses.

How a layer is "restored to floating point" here: in place, by turning its NNCF quantizers off. NNCF 3.4's
torch backend keeps every quantizer as a hook module in the model's hook storage
(``nncf.torch.function_hook.wrapper.get_hook_storage``): weight quantizers are *pre*-hooks on the constant
port of the op (``pre_hooks.features/3/conv2d/0__1``), activation quantizers are *post*-hooks on the op that
produces the tensor (``post_hooks.features/2/relu/0__0``). Each quantizer has an ``enabled`` buffer
(``BaseQuantizer.enable_quantization`` / ``disable_quantization``) and passes its input through unchanged
when it is 0. For a layer we disable its weight quantizer and the activation quantizer feeding its input,
found by walking the FP32 graph (``build_nncf_graph``) up from the layer's input through single-input ops
(pooling, flatten ...) to the first op with a post-hook quantizer. When that quantizer is shared with other
consumers (e.g. a residual branch), they see float too while it is off; a walk that meets a multi-input op
(add, cat) or another weighted layer stops, and only the weight quantizer is disabled. A restored layer keeps
the bias NNCF's bias correction gave it, so it is float but not exactly the FP32 layer.

In-place disabling is only the ranking (cheap: one forward pass per layer). The fallback search
(:mod:`edgekd.quant.fallback`) then re-quantizes with the chosen layers in ``ignored_layers`` (nncf.IgnoredScope)
and judges the requirement on that model, so the verdict is on the artifact that will be exported, not on an
approximation of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from edgekd.errors import UsageError, require

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

_WEIGHTED_OPS = frozenset(
    {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear",
     "addmm", "matmul", "bmm", "embedding"}
)  # fmt: skip


@dataclass(frozen=True)
class QuantizedLayer:
    """A weighted layer (module path) and the names of the quantizer hooks that quantize it."""

    layer: str
    node: str
    weight_quantizers: tuple[str, ...]
    input_quantizers: tuple[str, ...]


class LayerSensitivity(NamedTuple):
    """``metric``: how much the mean KL(fp32 || quantized) of the logits drops when only this layer is
    restored to floating point; larger = more sensitive. ``kl_restored``: the KL with it restored."""

    layer: str
    metric: float
    kl_restored: float


def _split_hook(name: str) -> tuple[str, str, int]:
    """'pre_hooks.features/3/conv2d/0__1.0' -> ('pre_hooks', 'features/3/conv2d/0', 1)."""
    kind, rest = name.split(".", 1)
    key = rest.rsplit(".", 1)[0]
    node, port = key.rsplit("__", 1)
    return kind, node, int(port)


def _module_path(node: str) -> str:
    """'features/3/conv2d/0' -> 'features.3' (the op name and call index are the last two parts)."""
    return ".".join(node.split("/")[:-2])


def _op_name(node: str) -> str:
    return node.split("/")[-2] if "/" in node else node


def _quantizers(qmodel: nn.Module) -> dict[str, nn.Module]:
    from nncf.torch.function_hook.wrapper import get_hook_storage

    return {
        name: hook
        for name, hook in get_hook_storage(qmodel).named_hooks()
        if hasattr(hook, "is_enabled_quantization")
    }


def quantized_layers(qmodel: nn.Module, fp32_model: nn.Module, example_input: torch.Tensor) -> list[QuantizedLayer]:
    """Each weighted layer that has a weight quantizer, with the quantizers that feed it, in graph order."""
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    quantizers = _quantizers(qmodel)
    pre: dict[tuple[str, int], str] = {}
    post: dict[tuple[str, int], str] = {}
    for name in quantizers:
        kind, node, port = _split_hook(name)
        (pre if kind == "pre_hooks" else post)[(node, port)] = name
    graph = build_nncf_graph(fp32_model, example_input)  # traced in eval mode, mode restored
    layers: list[QuantizedLayer] = []
    for node in graph.get_all_nodes():
        name = node.node_name
        weight = tuple(q for (n, port), q in pre.items() if n == name and port > 0)
        if _op_name(name) not in _WEIGHTED_OPS or not weight:
            continue
        inputs: list[str] = []
        for edge in graph.get_input_edges(node):
            if (name, edge.input_port_id) in pre and edge.input_port_id == 0:
                inputs.append(pre[(name, 0)])
                continue
            if edge.from_node.node_type in ("nncf_model_const", "const") or edge.input_port_id != 0:
                continue
            found = _walk_up(graph, edge, post)
            if found:
                inputs.append(found)
        layers.append(QuantizedLayer(_module_path(name), name, weight, tuple(inputs)))
    return layers


def _walk_up(graph: Any, edge: Any, post: dict[tuple[str, int], str], limit: int = 32) -> str | None:
    """Nearest activation quantizer above an input edge, through single-input ops only."""
    for _ in range(limit):
        src = edge.from_node
        hit = post.get((src.node_name, edge.output_port_id))
        if hit:
            return hit
        if _op_name(src.node_name) in _WEIGHTED_OPS:
            return None
        data_edges = [
            e for e in graph.get_input_edges(src) if e.from_node.node_type not in ("nncf_model_const", "const")
        ]
        if len(data_edges) != 1:
            return None
        edge = data_edges[0]
    return None


@contextlib.contextmanager
def quantizers_disabled(qmodel: nn.Module, names: Iterable[str]) -> Iterator[None]:
    """Temporarily turn off the named quantizer hooks (their ``enabled`` buffer), restoring it afterwards."""
    quantizers = _quantizers(qmodel)
    saved = {}
    try:
        for name in names:
            q = quantizers[name]
            saved[name] = q.enabled.clone()
            q.enabled.fill_(0)  # not disable_quantization(): that also changes requires_grad
        yield
    finally:
        for name, value in saved.items():
            quantizers[name].enabled.copy_(value)


def _eval_batches(batches: Iterable[Any], max_images: int) -> list[torch.Tensor]:
    torch = require("torch", "train", "sensitivity analysis needs PyTorch")
    out: list[torch.Tensor] = []
    seen = 0
    for item in batches:
        x = item[0] if isinstance(item, (tuple, list)) else item
        x = x.unsqueeze(0) if x.dim() == 3 else x
        out.append(x[: max_images - seen])
        seen += len(out[-1])
        if seen >= max_images:
            break
    if not out:
        raise UsageError("sensitivity analysis needs at least one batch of images")
    return [torch.as_tensor(x) for x in out]


def _mean_kl(qmodel: nn.Module, ref_logp: list[torch.Tensor], xs: list[torch.Tensor]) -> float:
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for x, lp in zip(xs, ref_logp, strict=True):
            q_logp = F.log_softmax(qmodel(x).float(), dim=1)
            total += float(F.kl_div(q_logp, lp, log_target=True, reduction="sum"))
            count += len(x)
    return total / count


def layer_sensitivity(
    qmodel: nn.Module, fp32_model: nn.Module, batches: Iterable[Any], max_images: int = 256
) -> list[LayerSensitivity]:
    """Rank quantized weighted layers by how much restoring each one alone to float reduces the output
    error (mean KL divergence of the quantized model's softmax from the FP32 model's), most sensitive first.

    ``batches``: image tensors or (x, y) pairs; at most ``max_images`` images are used. One entry per
    quantized weighted layer. Both models are used in eval mode; the quantizers are left as they were.
    """
    import torch
    import torch.nn.functional as F

    device = next((p.device for p in qmodel.parameters()), torch.device("cpu"))
    xs = [x.to(device) for x in _eval_batches(batches, max_images)]
    q_training, f_training = qmodel.training, fp32_model.training
    qmodel.eval()
    fp32_model.eval()
    try:
        with torch.no_grad():
            ref = [F.log_softmax(fp32_model(x).float(), dim=1) for x in xs]
        base = _mean_kl(qmodel, ref, xs)
        results = []
        for layer in quantized_layers(qmodel, fp32_model, xs[0][:1]):
            with quantizers_disabled(qmodel, layer.weight_quantizers + layer.input_quantizers):
                kl = _mean_kl(qmodel, ref, xs)
            results.append(LayerSensitivity(layer.layer, base - kl, kl))
    finally:
        qmodel.train(q_training)
        fp32_model.train(f_training)
    return sorted(results, key=lambda r: r.metric, reverse=True)
