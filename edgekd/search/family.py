"""The family candidates of the student search, per input scale.

Small inputs (<= 64 px: digits, CIFAR): `small_cnn`, CIFAR ResNets by depth (8-32) and width (0.5-1.5) and
MobileNetV3-Small by width (stride-1 stem). Large inputs (ImageNet-like, > 64 px): MobileNetV3 Small/Large
by width, torchvision's ResNet-18, and timm's small models when timm is installed. Every member trains from
scratch (nothing is downloaded); tests/search/test_family.py trains each one briefly on a real task.
"""

from __future__ import annotations

import importlib.util

SMALL_INPUT_MAX = 64

SMALL = ("small_cnn", "cifar_resnet8_050", "cifar_resnet14_050", "cifar_resnet20_050", "cifar_resnet8",
         "cifar_resnet14", "cifar_resnet20", "cifar_resnet32", "cifar_resnet20_150", "mobilenet_v3_small_050",
         "mobilenet_v3_small_075", "mobilenet_v3_small")
LARGE = ("mobilenet_v3_small_050", "mobilenet_v3_small_075", "mobilenet_v3_small", "mobilenet_v3_large_075",
         "mobilenet_v3_large_100", "resnet18")
TIMM_LARGE = ("timm:mobilenetv3_small_050", "timm:efficientnet_b0", "timm:mobilevitv2_050")


def family_for(input_size: int) -> list[str]:
    """The family members for square inputs of `input_size` pixels."""
    if input_size <= SMALL_INPUT_MAX:
        return list(SMALL)
    names = list(LARGE)
    if importlib.util.find_spec("timm") is not None:
        names += list(TIMM_LARGE)
    return names
