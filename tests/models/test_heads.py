"""find_head / replace_head / head_parameter_names / unfreeze_stages on the models edgekd uses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.errors import UsageError
from edgekd.models import build_model, find_head, head_parameter_names, replace_head, unfreeze_stages

CASES = [
    ("resnet18", "fc", 512),
    ("mobilenet_v3_small", "classifier.3", 1024),
    ("cifar_resnet20", "linear", 64),
    ("small_cnn", "classifier", 64),
]


@pytest.mark.parametrize(("arch", "path", "in_features"), CASES)
def test_find_and_replace_head(arch: str, path: str, in_features: int) -> None:
    model = build_model(arch, num_classes=10)
    name, head = find_head(model)
    assert (name, head.in_features, head.out_features) == (path, in_features, 10)
    assert head_parameter_names(model) == [f"{path}.weight", f"{path}.bias"]

    replace_head(model, 3, seed=1)
    name, head = find_head(model)
    assert (name, head.in_features, head.out_features) == (path, in_features, 3)
    assert model.get_submodule(path) is head
    assert torch.all(head.bias == 0) and 0.005 < head.weight.std() < 0.02
    first = head.weight.detach().clone()
    replace_head(model, 3, seed=1)
    assert torch.equal(find_head(model)[1].weight, first)  # seeded
    px = 8 if arch == "small_cnn" else 32
    assert model.eval()(torch.randn(2, 3, px, px)).shape == (2, 3)


def test_generic_fallback_and_no_head() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert find_head(net)[0] == "3"
    replace_head(net, 5)
    assert net(torch.randn(2, 4)).shape == (2, 5)
    with pytest.raises(UsageError, match="no nn.Linear"):
        find_head(nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1)))


def _prefixes(group: list[str]) -> set[str]:
    return {n.split(".")[0] if not n.startswith("features.") else ".".join(n.split(".")[:2]) for n in group}


@pytest.mark.parametrize("arch", [a for a, _, _ in CASES] + ["efficientnet_b0", "regnet_x_400mf", "mnasnet0_5"])
def test_unfreeze_stages_partition_all_parameters(arch: str) -> None:
    model = build_model(arch, num_classes=10)
    groups = unfreeze_stages(model)
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())  # each exactly once
    assert groups[0] == head_parameter_names(model)


def test_unfreeze_stages_cifar_and_torchvision_resnets() -> None:
    groups = unfreeze_stages(build_model("cifar_resnet20", num_classes=10))
    assert [_prefixes(g) for g in groups] == [{"linear"}, {"layer3"}, {"layer2"}, {"layer1"}, {"conv1", "bn1"}]
    assert groups[-1] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    groups = unfreeze_stages(build_model("resnet18", num_classes=10))
    assert [_prefixes(g) for g in groups] == [
        {"fc"}, {"layer4"}, {"layer3"}, {"layer2"}, {"layer1"}, {"conv1", "bn1"},
    ]


def test_unfreeze_stages_split_features() -> None:
    groups = unfreeze_stages(build_model("small_cnn", num_classes=10))
    assert [_prefixes(g) for g in groups] == [{"classifier"}, {"features.2"}, {"features.1"}, {"features.0"}]
    groups = unfreeze_stages(build_model("mobilenet_v3_small", num_classes=10))
    assert groups[0] == ["classifier.3.weight", "classifier.3.bias"]
    assert groups[1] == ["classifier.0.weight", "classifier.0.bias"]
    assert [_prefixes(g) for g in groups[2:]] == [{f"features.{i}"} for i in range(12, -1, -1)]


def test_unfreeze_stages_pairs_conv_bn_inside_split_backbones() -> None:
    # VGG-BN's `features` is flat (conv, bn, relu, ...): each conv+BN pair is one group, ReLU ends a run
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                               nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("fc", nn.Linear(4, 2))
    groups = unfreeze_stages(model)
    assert groups == [
        ["fc.weight", "fc.bias"],
        ["features.3.weight", "features.3.bias", "features.4.weight", "features.4.bias"],
        ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias"],
    ]
