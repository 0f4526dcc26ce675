"""Rebuild a channel-pruned model from its state_dict, without the pruning library.

A student pruned from the teacher (edgekd.search.prune, Torch-Pruning) keeps the teacher's architecture and
module names with fewer channels. Its checkpoint records `pruned_from`; loading builds the architecture at
full width and then gives each Conv2d, BatchNorm and Linear the shapes its saved weights have (a depthwise
conv keeps groups == channels). Only channel counts change, never the graph, so this is exact.

A depth-pruned student (edgekd.search.depth) lists its removed residual blocks in `dropped_blocks`; each is
an nn.Identity at its module path, set before the channel counts are matched.

`structure_of(meta)` is the checkpoint fields a stage must carry over when it saves such a model again.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _conv(old: nn.Conv2d, weight: torch.Tensor) -> nn.Conv2d:
    out_c, in_per_group = int(weight.shape[0]), int(weight.shape[1])
    depthwise = old.groups == old.in_channels and old.groups > 1
    groups = out_c if depthwise else old.groups
    return nn.Conv2d(in_per_group * groups, out_c, old.kernel_size, stride=old.stride, padding=old.padding,
                     dilation=old.dilation, groups=groups, bias=old.bias is not None, padding_mode=old.padding_mode)


STRUCTURE_KEYS = ("pruned_from", "dropped_blocks")


def structure_of(meta: Mapping) -> dict | None:
    """The fields of a checkpoint's meta that say how its graph differs from the registry architecture."""
    out = {k: meta[k] for k in STRUCTURE_KEYS if meta.get(k)}
    return out or None


def apply_dropped_blocks(model: nn.Module, paths: list[str]) -> nn.Module:
    """Replace each removed residual block (module path) by nn.Identity, in place."""
    for p in paths:
        model.set_submodule(p, nn.Identity())
    return model


def reshape_to_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Replace every Conv2d / BatchNorm2d / Linear whose saved weight shape differs from the model's."""
    for path, module in list(model.named_modules()):
        key = f"{path}.weight" if path else "weight"
        weight = state.get(key)
        if weight is None or not hasattr(module, "weight") or module.weight is None:
            continue
        if tuple(weight.shape) == tuple(module.weight.shape):
            continue
        if isinstance(module, nn.Conv2d):
            new: nn.Module = _conv(module, weight)
        elif isinstance(module, nn.BatchNorm2d):
            new = nn.BatchNorm2d(int(weight.shape[0]), eps=module.eps, momentum=module.momentum,
                                 affine=module.affine, track_running_stats=module.track_running_stats)
        elif isinstance(module, nn.Linear):
            new = nn.Linear(int(weight.shape[1]), int(weight.shape[0]), bias=module.bias is not None)
        else:
            raise ValueError(f"cannot reshape {type(module).__name__} at {path} to the saved {tuple(weight.shape)}")
        model.set_submodule(path, new)
    return model
