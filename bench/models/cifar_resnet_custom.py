"""A user's own CIFAR ResNet, written without edgekd: the "custom module by import path" of
bench_model_sources.py. Same architecture and parameter names as akamaster/pytorch_resnet_cifar10 (He et al.
2016, section 4.2: option-A shortcuts), so the shared pretrained weights load into it.

    edgekd compress --teacher bench/models/cifar_resnet_custom.py:resnet --teacher-kwargs '{"depth": 56}' \
        --teacher-weights ../shared/models/cifar10-resnet/resnet56-4bfd9763.th ...
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is None:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 56, classes: int = 10) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths, cin, stages = (16, 32, 64), 16, []
        for i, w in enumerate(widths):
            blocks = [Block(cin if j == 0 else w, w, 2 if i > 0 and j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet(depth: int = 56, classes: int = 10) -> CifarResNet:
    return CifarResNet(depth, classes)
