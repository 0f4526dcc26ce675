"""CIFAR ResNets: ResNet-(6n+2) for 32x32 inputs (He et al., "Deep Residual Learning", CVPR 2016, sec. 4.2).

A 3x3 conv (16 filters, no bias) + BN + ReLU; three stages of n basic blocks with 16, 32 and 64 channels
(the first block of stages 2 and 3 has stride 2); global average pooling; a linear layer 64 -> classes.
Shortcuts are "option A": parameter-free, where the shape changes they take every second pixel and
zero-pad the channels by planes // 4 on each side.

The module names (conv1, bn1, layer1..layer3 of BasicBlock with conv1/bn1/conv2/bn2, linear) match the
public weights of akamaster/pytorch_resnet_cifar10 once their `module.` prefix is stripped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEPTHS = (20, 32, 44, 56, 110)

# Public CIFAR-10 weights (BSD-2-Clause, Yerlan Idelbayev); the 8 hex digits start each file's sha256.
PRETRAINED_URLS = {
    depth: f"https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{fname}"
    for depth, fname in {
        20: "resnet20-12fca82f.th",
        32: "resnet32-d509ac18.th",
        44: "resnet44-014dd654.th",
        56: "resnet56-4bfd9763.th",
        110: "resnet110-1d1ed7c2.th",
    }.items()
}
PRETRAINED_NUM_CLASSES = 10
# The preprocessing those weights were trained with (ToTensor, then Normalize).
PREPROCESSING = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "input_size": 32,
}


class ShortcutA(nn.Module):
    """Parameter-free shortcut: subsample by 2 and zero-pad `pad` channels on each side."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA((planes - in_planes) // 2)  # planes // 4 when the width doubles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small inputs; `depth` is one of 20, 32, 44, 56, 110 (any 6n+2 works); `width`
    scales the 16-32-64 channels (1.0: the published networks)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        base = max(4, int(round(16 * width / 4)) * 4)  # a multiple of 4, so the shortcut pads evenly
        self.in_planes = base
        self.conv1 = nn.Conv2d(in_channels, base, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.layer1 = self._make_layer(base, n, stride=1)
        self.layer2 = self._make_layer(2 * base, n, stride=2)
        self.layer3 = self._make_layer(4 * base, n, stride=2)
        self.linear = nn.Linear(4 * base, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def cifar_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """Build a randomly initialised (Kaiming) CIFAR ResNet of the given depth."""
    return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels)
