"""The candidate students: family members, and channel- and depth-pruned copies of the fine-tuned teacher."""

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
    pruned_from: str | None = None  # channel-pruned from this architecture
    dropped_blocks: list[str] = field(default_factory=list)  # residual blocks removed (depth pruning)
    input_size: tuple[int, int] | None = None  # None: the data's; else a smaller size (edgekd.search.resolution)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "arch": self.arch, "source": self.source, "macs": self.macs,
                "params": self.params, "float_layers": len(self.float_layers), "pruned_from": self.pruned_from,
                "dropped_blocks": len(self.dropped_blocks),
                "input_size": list(self.input_size) if self.input_size else None}

    def at_size(self, size: tuple[int, int], example: torch.Tensor) -> Candidate:
        """A copy of this candidate (its own weights) that takes `size` inputs: named `<name>-<H>x<W>`, its MACs
        counted at that size. The architecture is the same, so the checkpoint rebuilds it as before."""
        import copy

        from edgekd.search.prune import count_macs
        from edgekd.search.resolution import downscale

        model = copy.deepcopy(self.model)
        base = self.name.rsplit("-", 1)[0] if self.input_size else self.name
        return Candidate(f"{base}-{size[0]}x{size[1]}", self.arch, self.source, model,
                         count_macs(model, downscale(example[:1], size)), self.params, list(self.float_layers),
                         self.pruned_from, list(self.dropped_blocks), tuple(size))

    def checkpoint_extra(self) -> dict[str, Any] | None:
        """What its checkpoint must record to rebuild the graph (edgekd.models.reshape.structure_of)."""
        from edgekd.models.reshape import structure_of

        return structure_of({"pruned_from": self.pruned_from, "dropped_blocks": self.dropped_blocks})


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


def _pruned(arch: str, name: str, model: nn.Module, example: torch.Tensor,
            dropped: list[str] | None = None, width: bool = False) -> Candidate:
    from edgekd.models.family import expected_float_layers
    from edgekd.search.prune import count_macs

    return Candidate(name, arch, "pruned teacher", model, count_macs(model, example[:1]),
                     sum(p.numel() for p in model.parameters()), expected_float_layers(model),
                     pruned_from=arch if width else None, dropped_blocks=list(dropped or []))


def pruned_candidates(teacher: nn.Module, arch: str, ratios: list[float], importance: str, calib: torch.Tensor,
                      grad_batches: list[tuple[torch.Tensor, torch.Tensor]], depths: list[float] = (),
                      name: str | None = None) -> tuple[list[Candidate], list[str]]:
    """The teacher made smaller three ways, each keeping the teacher's weights: channel-pruned at each ratio
    of `ratios` (Torch-Pruning); depth-pruned keeping each share of `depths` of its removable residual
    blocks (edgekd.search.depth); and, when both are asked, the shallowest one channel-pruned at the lowest
    ratio. Candidates are named `<name>-pruned50` etc. (`name` defaults to `arch`; a model the user brought
    passes a short file-safe name, since its arch is a path). Returns (candidates, reasons a kind of pruning
    was skipped)."""
    base = name or arch
    from edgekd.search.depth import drop_blocks, drop_order, removable_blocks
    from edgekd.search.prune import PruneUnsupported, prune

    example, bn = calib[:2], [x for x, _ in grad_batches]
    out: list[Candidate] = []
    why: list[str] = []
    width_ok = True
    for ratio in ratios:
        try:
            out.append(_pruned(arch, f"{base}-pruned{int(round(ratio * 100))}",
                               prune(teacher, example, ratio, importance, grad_batches), example, width=True))
        except PruneUnsupported as exc:
            why.append(str(exc))
            width_ok = False
            out = []
            break
    if not depths:
        return out, why
    blocks = removable_blocks(teacher, example)
    if not blocks:
        why.append(f"depth pruning: {type(teacher).__name__} has no residual block with an identity shortcut")
        return out, why
    counts = {d: len(blocks) - max(0, round(d * len(blocks))) for d in depths}
    order = drop_order(teacher, calib[:64], max(counts.values()))
    shallowest = None
    for d in sorted(set(depths), reverse=True):
        if counts[d] <= 0:
            continue
        dropped = order[:counts[d]]
        model = drop_blocks(teacher, dropped, bn)
        out.append(_pruned(arch, f"{base}-depth{int(round(d * 100))}", model, example, dropped))
        shallowest = (d, dropped, model)
    if shallowest is not None and ratios and width_ok:
        d, dropped, model = shallowest
        ratio = min(ratios)
        try:
            both = prune(model, example, ratio, importance, grad_batches)
        except PruneUnsupported as exc:
            why.append(f"depth-then-channel pruning: {exc}")
        else:
            out.append(_pruned(arch, f"{base}-depth{int(round(d * 100))}-pruned{int(round(ratio * 100))}",
                               both, example, dropped, width=True))
    return out, why


def finer_shares(shares: list[float], smaller: str, step: float = 1 / 16) -> list[float]:
    """New pruning settings when too few candidates fit: one step further than the most aggressive share
    (halfway to 1 for channel ratios, `smaller="up"`; halfway to 0 for depth shares kept, `smaller="down"`)
    and the midpoint of each pair of neighbours, rounded to `step`, strictly inside (0, 1), none already in
    `shares`. The most aggressive first."""
    have = sorted(set(shares))
    edge = (1 + have[-1]) / 2 if smaller == "up" else have[0] / 2
    mids = [(a + b) / 2 for a, b in zip(have, have[1:])]
    out = []
    for v in [edge, *mids]:
        v = round(round(v / step) * step, 4)
        if 0 < v < 1 and v not in have and v not in out:
            out.append(v)
    return sorted(out, reverse=smaller == "up")
