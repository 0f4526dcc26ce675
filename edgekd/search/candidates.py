"""The candidate students: family members and channel-pruned copies of the fine-tuned teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Candidate:
    name: str  # a family name, or "<teacher arch>-pruned<ratio>"
    arch: str  # the registry name the checkpoint records
    source: str  # "family" | "pruned teacher"
    model: nn.Module = field(repr=False)
    macs: int = 0
    params: int = 0
    float_layers: list[str] = field(default_factory=list)  # layers NNCF keeps in float on purpose
    pruned_from: str | None = None

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "source": self.source, "macs": self.macs,
                "params": self.params, "float_layers": len(self.float_layers), "pruned_from": self.pruned_from}


def spread_by_macs(cands: list[Candidate], n: int) -> list[Candidate]:
    """At most `n` candidates, evenly spaced in log-MACs (the cheapest and the largest always kept)."""
    cands = sorted(cands, key=lambda c: c.macs)
    if len(cands) <= n:
        return cands
    logs = np.log([max(c.macs, 1) for c in cands])
    picks: list[int] = []
    for goal in np.linspace(logs[0], logs[-1], n):
        free = [i for i in range(len(cands)) if i not in picks]
        picks.append(min(free, key=lambda i: abs(logs[i] - goal)))
    return [cands[i] for i in sorted(picks)]


def family_candidates(names: list[str], kwargs: dict[str, Any], example: torch.Tensor) -> list[Candidate]:
    from edgekd.models.family import expected_float_layers
    from edgekd.models.registry import build_model
    from edgekd.search.prune import count_macs

    out = []
    for name in names:
        model = build_model(name, **kwargs).eval()
        out.append(Candidate(name, name, "family", model, count_macs(model, example[:1]),
                             sum(p.numel() for p in model.parameters()), expected_float_layers(model)))
    return out


def pruned_candidates(teacher: nn.Module, arch: str, ratios: list[float], importance: str, example: torch.Tensor,
                      grad_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[Candidate], str | None]:
    """Pruned copies of the teacher at each ratio; ([], reason) when Torch-Pruning cannot prune it."""
    from edgekd.models.family import expected_float_layers
    from edgekd.search.prune import PruneUnsupported, count_macs, prune

    out = []
    for ratio in ratios:
        try:
            model = prune(teacher, example, ratio, importance, grad_batches)
        except PruneUnsupported as exc:
            return [], str(exc)
        out.append(Candidate(f"{arch}-pruned{int(round(ratio * 100))}", arch, "pruned teacher", model,
                             count_macs(model, example[:1]), sum(p.numel() for p in model.parameters()),
                             expected_float_layers(model), pruned_from=arch))
    return out, None
