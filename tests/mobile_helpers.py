"""Shared pieces of the mobile-format tests: the skip when the `mobile` extra is absent, and a tiny model."""

from __future__ import annotations

import importlib.util

import pytest

MOBILE = ("executorch", "litert_torch", "ai_edge_litert", "coremltools")
_missing = [m for m in MOBILE if importlib.util.find_spec(m) is None]
needs_mobile = pytest.mark.skipif(bool(_missing), reason=f"the mobile extra is not installed (no {', '.join(_missing)}): "
                                                          "pip install 'edgekd[mobile]'")


def with_mobile_stages(stages: list[str]) -> list[str]:
    """The stage list a compress run has here: with the mobile extra installed, a `qad_pt2e` stage follows `qad`
    (the XNNPACK route as PTQ, so the default bundle's INT8 mobile formats exist, issue 15); without it, none."""
    if _missing:
        return list(stages)
    i = stages.index("qad") + 1
    return [*stages[:i], "qad_pt2e", *stages[i:]]


def tiny_resnet(head_mean: bool = False, channels: int = 3, classes: int = 4):
    """Conv-BN-ReLU, a residual block (the add that must stay integer) and a linear head. `head_mean`: pool with
    mean(dim) instead, an op the XNNPACK partitioner leaves outside its delegate."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, classes)

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(y)) + y)
            pooled = y.mean((2, 3)) if head_mean else torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
            return self.fc(pooled)

    torch.manual_seed(0)
    model = Tiny()
    for bn in (model.bn1, model.bn2):  # non-trivial statistics, so the BN folding matters
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
    return model.eval()
