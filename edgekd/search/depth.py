"""Depth pruning: the fine-tuned teacher with its least influential residual blocks removed.

Channel pruning (edgekd.search.prune) cuts MACs but not layers, and on CPUs and small accelerators a small
CNN's latency is mostly per-layer cost: a CIFAR ResNet-56 with 75% of its block channels removed has 4x fewer
MACs but only 2x lower latency (bench/RESULTS.md, issue 14). A residual block whose input and output have the
same shape computes x + f(x); replacing it by the identity leaves a valid, shallower network that keeps every
other weight of the teacher.

Which blocks go: each removable block's influence is how far the network's softmax moves (KL divergence, on
calibration images) when that block alone is bypassed; the least influential go first, re-scored in rounds,
so each round judges the network as it now is. This is the one-shot block importance of depth pruning in
Minitron (Muralidharan et al., "Compact Language Models via Pruning and Knowledge Distillation", 2024) and
ShortGPT's Block Influence (Men et al., 2024), applied to residual CNN blocks. BatchNorm statistics are then
re-estimated (edgekd.search.prune.recalibrate_batchnorm); distillation recovers the rest.

A removed block is an `nn.Identity` at the block's module path, and the checkpoint lists those paths
(`dropped_blocks`), so loading rebuilds the same graph without this module (edgekd.models.checkpoint).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def removable_blocks(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Module paths of residual blocks with an identity shortcut whose output has the input's shape, each a
    direct child of an nn.Sequential: a CIFAR BasicBlock with `shortcut` nn.Identity, a torchvision
    BasicBlock/Bottleneck without `downsample`, an inverted residual with `use_res_connect` (torchvision) or
    `has_skip` (timm's EfficientNet/MobileNet blocks)."""
    parents = {name: m for name, m in model.named_modules() if isinstance(m, nn.Sequential)}
    found: list[str] = []
    for pname, seq in parents.items():
        for cname, block in seq.named_children():
            residual = isinstance(getattr(block, "shortcut", None), nn.Identity) \
                or (type(block).__name__ in ("BasicBlock", "Bottleneck") and hasattr(block, "downsample")
                    and block.downsample is None) \
                or getattr(block, "use_res_connect", False) is True \
                or getattr(block, "has_skip", False) is True
            if residual:
                found.append(f"{pname}.{cname}" if pname else cname)
    if not found:
        return []
    shapes: dict[str, bool] = {}
    hooks = [model.get_submodule(p).register_forward_hook(
        lambda m, i, o, p=p: shapes.__setitem__(p, tuple(i[0].shape) == tuple(o.shape))) for p in found]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return [p for p in found if shapes.get(p)]


def _bypassed(model: nn.Module, path: str) -> nn.Module:
    """`model` with the block at `path` replaced by the identity (in place; returns the removed block)."""
    block = model.get_submodule(path)
    model.set_submodule(path, nn.Identity())
    return block


@torch.no_grad()
def block_influence(model: nn.Module, paths: list[str], images: torch.Tensor, temperature: float = 1.0) -> dict[str, float]:
    """KL(p_full || p_without_block) averaged over `images`, per block path (model in eval mode)."""
    model.eval()
    ref = torch.log_softmax(model(images) / temperature, dim=1)
    out = {}
    for path in paths:
        block = _bypassed(model, path)
        try:
            logp = torch.log_softmax(model(images) / temperature, dim=1)
        finally:
            model.set_submodule(path, block)
        out[path] = float(torch.nn.functional.kl_div(logp, ref, log_target=True, reduction="batchmean"))
    return out


def drop_order(model: nn.Module, images: torch.Tensor, n_drop: int, rounds: int = 4) -> list[str]:
    """The first `n_drop` blocks to remove, least influential first, re-scored over up to `rounds` rounds on a
    copy of `model` (the model itself is not changed)."""
    work = copy.deepcopy(model).eval()
    left = removable_blocks(work, images[:2])
    n_drop = min(n_drop, len(left))
    order: list[str] = []
    per_round = max(1, math.ceil(n_drop / max(1, rounds)))
    while len(order) < n_drop:
        scores = block_influence(work, left, images)
        take = sorted(left, key=lambda p: scores[p])[:min(per_round, n_drop - len(order))]
        for p in take:
            _bypassed(work, p)
            left.remove(p)
        order += take
    return order


def drop_blocks(model: nn.Module, paths: list[str], bn_images: list[torch.Tensor]) -> nn.Module:
    """A copy of `model` with the blocks at `paths` replaced by the identity, BatchNorm re-estimated."""
    from edgekd.search.prune import recalibrate_batchnorm

    out = copy.deepcopy(model).eval()
    for p in paths:
        _bypassed(out, p)
    recalibrate_batchnorm(out, bn_images)
    return out.eval()
