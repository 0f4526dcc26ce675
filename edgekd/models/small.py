"""Small students for edge devices.

- `resnet18_cifar`: torchvision's ResNet-18 with the small-input stem used for CIFAR (a 3x3 stride-1 conv1
  and no max pooling), as in the SimCLR CIFAR experiments; torchvision module names are kept.
- `mobilenet_v3_small`: torchvision's MobileNetV3-Small (Howard et al., 2019); for inputs of at most
  `SMALL_INPUT_MAX` pixels its first conv gets stride 1, so a 32x32 image still leaves a 2x2 map at the end.
- `small_cnn`: a tiny CNN (conv-BN-ReLU blocks, global average pooling, one linear layer) that runs on
  8x8 single-channel digits as well as on 32x32 RGB.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small as tv_mobilenet_v3_small
from torchvision.models import resnet18 as tv_resnet18

SMALL_INPUT_MAX = 64


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first nn.Conv2d in module order, with its dotted path."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(model).__name__} has no Conv2d layer")


def replace_conv(
    model: nn.Module,
    path: str,
    *,
    in_channels: int | None = None,
    stride: int | tuple[int, int] | None = None,
    kernel_size: int | None = None,
    padding: int | None = None,
) -> nn.Conv2d:
    """Swap the conv at `path` for one with a new input width/stride/kernel.

    When only the input width changes, the old weights are carried over the way timm does it
    (`adapt_input_conv`): summed over RGB for one channel, else tiled and rescaled by 3 / in_channels, so a
    pretrained stem still sees inputs of about the same scale.
    """
    old = model.get_submodule(path)
    assert isinstance(old, nn.Conv2d)
    cin = old.in_channels if in_channels is None else in_channels
    k = old.kernel_size if kernel_size is None else (kernel_size, kernel_size)
    new = nn.Conv2d(
        cin,
        old.out_channels,
        k,
        stride=old.stride if stride is None else stride,
        padding=old.padding if padding is None else padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    ).to(old.weight.device, old.weight.dtype)
    if new.kernel_size == old.kernel_size and old.groups == 1:
        with torch.no_grad():
            new.weight.copy_(adapt_input_weight(old.weight, cin))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    model.set_submodule(path, new)
    return new


def adapt_input_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Map a conv weight [out, c, kh, kw] to `in_channels` input channels (timm's adapt_input_conv)."""
    c = weight.shape[1]
    if in_channels == c:
        return weight.clone()
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // c)
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (c / in_channels)


def resnet18_cifar(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-18 with a 3x3 stride-1 conv1 and maxpool replaced by Identity."""
    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def adapt_mobilenet_v3_small(model: nn.Module, in_channels: int, input_size: int | None) -> nn.Module:
    """Set the stem of a torchvision MobileNetV3-Small for `in_channels` and small inputs."""
    path, conv = first_conv(model)
    small = input_size is not None and input_size <= SMALL_INPUT_MAX
    if conv.in_channels != in_channels or (small and conv.stride != (1, 1)):
        replace_conv(model, path, in_channels=in_channels, stride=1 if small else None)
    return model


def mobilenet_v3_small(
    num_classes: int = 10, in_channels: int = 3, input_size: int | None = None
) -> nn.Module:
    """torchvision MobileNetV3-Small; first conv stride 1 when input_size <= 64 px."""
    model = tv_mobilenet_v3_small(weights=None, num_classes=num_classes)
    return adapt_mobilenet_v3_small(model, in_channels, input_size)


class SmallCNN(nn.Module):
    """conv-BN-ReLU blocks (`features.i`), global average pooling and a linear `classifier`.

    The first block keeps the resolution, each later one halves it, so an 8x8 digit ends at 2x2 and a
    32x32 image at 8x8 with the default three blocks.
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)
    ) -> None:
        super().__init__()
        blocks = []
        cin = in_channels
        for i, width in enumerate(widths):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(cin, width, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            cin = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def small_cnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    """A tiny CNN for 8x8 to 32x32 inputs (about 24k parameters at the default widths)."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels)
