"""Scaled student families: the members the student search (edgekd.search) picks from, one name each.

Names follow timm's convention of a width suffix in hundredths (`mobilenetv3_small_075`):

- `cifar_resnet{8,14,20,32}` at width 1 (16-32-64 channels) and `cifar_resnet{d}_{050,150,200}` at width
  0.5 / 1.5 / 2 (He et al. 2016, sec. 4.2; widths as in Zagoruyko & Komodakis' wide ResNets, 2016);
- `mobilenet_v3_small_{050,075}` and `mobilenet_v3_large_{075,100}`: torchvision's MobileNetV3 (Howard et
  al. 2019) with its `width_mult`; `mobilenet_v3_small` (width 1) is registered in registry.py.

MobileNetV3 trained here from scratch gets BatchNorm momentum 0.1 instead of torchvision's 0.01 (a value
tuned for ImageNet's 600 epochs of many steps): with 0.01 the running statistics of a run of a few hundred
steps are still mostly their initial values, so the eval-mode model collapses to one class although the
train-mode loss falls (seen on a real 100x100 photo task at 10.0% on every epoch). `fix_bn_momentum` does the
same for the width-1 model.

NNCF keeps squeeze-excitation blocks in floating point unless told otherwise (its SE_BLOCK ignored pattern in
nncf/torch/quantization/ignored_patterns.py, for accuracy); edgekd tells it to quantize them by default
(edgekd.quant.se_blocks: faster on OpenVINO CPU at the same top-1, bench/RESULTS.md). `expected_float_layers`
names those convolutions of a MobileNetV3 when they are kept in float, so a search or a test can treat them as
declared, not as a failure to quantize.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from edgekd.models import cifar_resnet as _cifar
from edgekd.quant.se_blocks import QUANTIZE_SE_BLOCKS

FAMILY_DEPTHS = (8, 14, 20, 32)
WIDTHS = {"050": 0.5, "075": 0.75, "100": 1.0, "150": 1.5, "200": 2.0}
BN_MOMENTUM = 0.1  # PyTorch's default; torchvision's MobileNetV3 uses 0.01


def fix_bn_momentum(model: nn.Module, momentum: float = BN_MOMENTUM) -> nn.Module:
    """Set every BatchNorm's running-statistics momentum (for from-scratch, few-step training)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum
    return model


def cifar_resnet_scaled(depth: int, width: float, num_classes: int, in_channels: int) -> nn.Module:
    return _cifar.CifarResNet(depth, num_classes=num_classes, in_channels=in_channels, width=width)


def mobilenet_v3(kind: str, width: float, num_classes: int, in_channels: int, input_size: int | None) -> nn.Module:
    """torchvision's MobileNetV3-{Small,Large} at `width` with BN momentum 0.1; stride-1 stem at <= 64 px."""
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

    from edgekd.models.small import adapt_mobilenet_v3_small

    setting, last = _mobilenet_v3_conf(f"mobilenet_v3_{kind}", width_mult=width)
    model = MobileNetV3(setting, last, num_classes=num_classes,
                        norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=BN_MOMENTUM))
    return adapt_mobilenet_v3_small(model, in_channels, input_size)


def expected_float_layers(model: nn.Module, se_quantized: bool = QUANTIZE_SE_BLOCKS) -> list[str]:
    """Module paths NNCF keeps in floating point on purpose: the two 1x1 convs of each squeeze-excitation, unless
    they are quantized (`se_quantized`, QuantSpec.quantize_se_blocks; edgekd's default): then none."""
    from torchvision.ops.misc import SqueezeExcitation

    out: list[str] = []
    if se_quantized:
        return out
    for path, m in model.named_modules():
        if isinstance(m, SqueezeExcitation):
            out += [f"{path}.fc1", f"{path}.fc2"]
    return out


def family_names() -> list[str]:
    """Every family name this module adds to the registry (besides the width-1 models registered there)."""
    names = [f"cifar_resnet{d}" for d in FAMILY_DEPTHS if d not in _cifar.DEPTHS]
    names += [f"cifar_resnet{d}_{w}" for d in FAMILY_DEPTHS for w in ("050", "150", "200")]
    names += ["mobilenet_v3_small_050", "mobilenet_v3_small_075", "mobilenet_v3_large_075", "mobilenet_v3_large_100"]
    return names


def build_family(name: str, num_classes: int, in_channels: int, input_size: int | None) -> nn.Module:
    """Build a name from family_names() (randomly initialised)."""
    if name.startswith("cifar_resnet"):
        stem, _, w = name[len("cifar_resnet"):].partition("_")
        return cifar_resnet_scaled(int(stem), WIDTHS[w] if w else 1.0, num_classes, in_channels)
    kind, w = name[len("mobilenet_v3_"):].split("_")
    return mobilenet_v3(kind, WIDTHS[w], num_classes, in_channels, input_size)
