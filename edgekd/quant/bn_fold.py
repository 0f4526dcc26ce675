"""Fold BatchNorm into the preceding convolution before INT8 quantization.

Why: NNCF's torch backend quantizes the *convolution* weight and leaves the BatchNorm after it, so the
exported Q/DQ graph is ``DQ(w) -> Conv -> BatchNormalization -> Relu -> Q``. ONNX Runtime cannot fuse that
into an INT8 convolution (measured here with ORT 1.32: the optimized graph keeps Conv and
BatchNormalization in float, so the "INT8" model runs slower than FP32). With BatchNorm folded, the graph
is ``DQ(w) -> Conv -> Relu -> Q`` which ORT turns into QLinearConv, and OpenVINO/TensorRT get the pattern
they fuse best. For QAT, a folded BatchNorm is the same as a frozen one (running statistics fixed; its
affine transform lives on in the conv weight and bias, which stay trainable).

Only unambiguous pairs are folded: a conv module called once whose only consumer is a BatchNorm module
called once (found on NNCF's traced graph, so any model NNCF can quantize works, no torch.fx needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.errors import require

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

_CONV_OPS = ("conv1d", "conv2d", "conv3d")


def _module_and_op(node_name: str) -> tuple[str, str, str]:
    """'layer1/0/conv1/conv2d/0' -> ('layer1.0.conv1', 'conv2d', '0')."""
    parts = node_name.split("/")
    if len(parts) < 2:
        return "", node_name, ""
    return ".".join(parts[:-2]), parts[-2], parts[-1]


def fold_batchnorm(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str]]:
    """Fold every unambiguous Conv -> BatchNorm pair of ``model`` (in eval mode) in place.

    The BatchNorm module is replaced by ``nn.Identity``. Returns the (conv, batchnorm) module paths folded.
    """
    torch = require("torch", "train", "BatchNorm folding needs PyTorch")
    require("nncf", "train", "BatchNorm folding traces the model with NNCF")
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    model.eval()
    modules = dict(model.named_modules())
    graph = build_nncf_graph(model, example_input)
    calls: dict[str, int] = {}
    for node in graph.get_all_nodes():
        path, _, _ = _module_and_op(node.node_name)
        calls[path] = calls.get(path, 0) + 1
    bn_types = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    conv_types = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    pairs: list[tuple[str, str]] = []
    for node in graph.get_all_nodes():
        conv_path, op, _ = _module_and_op(node.node_name)
        if op not in _CONV_OPS or calls.get(conv_path) != 1:
            continue
        consumers = graph.get_next_nodes(node)
        if len(consumers) != 1:
            continue
        bn_path, bn_op, _ = _module_and_op(consumers[0].node_name)
        if bn_op != "batch_norm" or calls.get(bn_path) != 1:
            continue
        conv, bn = modules.get(conv_path), modules.get(bn_path)
        if not isinstance(conv, conv_types) or not isinstance(bn, bn_types) or not bn.track_running_stats:
            continue
        if bn.running_mean is None or bn.num_features != conv.out_channels:
            continue
        pairs.append((conv_path, bn_path))
    for conv_path, bn_path in pairs:
        conv, bn = modules[conv_path], modules[bn_path]
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = weight, bias
        parent_path, _, child = bn_path.rpartition(".")
        setattr(modules[parent_path] if parent_path else model, child, torch.nn.Identity())
    return pairs


def apply_folded_structure(model: nn.Module, folded: list[list[str]]) -> None:
    """Give ``model`` the structure of a folded one (BatchNorm -> Identity, conv with a bias); the values
    come from the checkpoint's state dict. Unknown module paths raise KeyError."""
    torch = require("torch", "train", "BatchNorm folding needs PyTorch")
    modules = dict(model.named_modules())
    for conv_path, bn_path in folded:
        conv, _ = modules[conv_path], modules[bn_path]
        if getattr(conv, "bias", True) is None:
            conv.bias = torch.nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device))
        parent, _, child = bn_path.rpartition(".")
        setattr(modules[parent] if parent else model, child, torch.nn.Identity())
