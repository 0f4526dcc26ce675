"""FeatureTaps: captures outputs by module path, removes its hooks, suggests close names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.errors import UsageError
from edgekd.losses.hooks import FeatureTaps, validate_paths


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


class Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Conv2d(3, 4, 1)
        self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1))
        self.layer3 = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1))
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer3(self.layer2(self.layer1(x))).mean((2, 3)))


def test_taps_capture_outputs_and_close_removes_hooks() -> None:
    net = _net()
    x = torch.rand(2, 3, 8, 8)
    with FeatureTaps(net, ["0", "1.1", "4"]) as taps:
        out = net(x)
        assert set(taps.outputs) == {"0", "1.1", "4"}
        torch.testing.assert_close(taps.outputs["0"], net[0](x))
        assert taps.outputs["1.1"].shape == (2, 4, 8, 8)
        assert (taps.outputs["1.1"] >= 0).all()
        torch.testing.assert_close(taps.outputs["4"], out)
        assert taps.outputs["0"].requires_grad  # the graph is kept, so feature losses can backpropagate
    assert not taps.active
    taps.clear()
    net(x)
    assert taps.outputs == {}
    assert not net[0]._forward_hooks and not net._forward_pre_hooks


def test_outputs_refresh_on_each_forward() -> None:
    net = _net()
    taps = FeatureTaps(net, ["0"])
    net(torch.zeros(1, 3, 4, 4))
    first = taps.outputs["0"]
    net(torch.ones(1, 3, 4, 4))
    assert not torch.equal(first, taps.outputs["0"])
    taps.close()
    taps.close()  # idempotent


def test_unknown_path_suggests_nearest_names() -> None:
    with pytest.raises(UsageError) as info:
        FeatureTaps(Named(), ["layer4"], "cifar_resnet20")
    message = str(info.value)
    assert message.startswith("layer 'layer4' not found in cifar_resnet20; nearest: layer3, ")
    assert message.endswith("(all: edgekd models --layers cifar_resnet20)")
    nearest = message.split("nearest: ")[1].split(" (all")[0].split(", ")
    assert 1 <= len(nearest) <= 5 and "layer2" in nearest and "fc" not in nearest
    assert "\n" not in message


def test_validate_paths_only_checks() -> None:
    net = Named()
    validate_paths(net, ["layer2.1", "fc"], "named")
    assert not net.layer2[1]._forward_hooks
    with pytest.raises(UsageError, match="layer 'layer2.5' not found in named; nearest: layer2"):
        validate_paths(net, ["layer2.5"], "named")
    with pytest.raises(UsageError, match="layer '' not found"):
        validate_paths(net, [""], "named")


def test_probe_shapes_reports_layers_that_never_run() -> None:
    from edgekd.losses.hooks import probe_shapes

    class Skips(Named):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.layer1(x).mean((2, 3)))

    logits, shapes = probe_shapes(Named(), ["layer2"], torch.rand(2, 3, 4, 4), "named")
    assert logits == (2, 2) and shapes == {"layer2": (2, 4, 4, 4)}
    with pytest.raises(UsageError, match="layer 'layer2' of skips did not run in a forward pass"):
        probe_shapes(Skips(), ["layer2"], torch.rand(2, 3, 4, 4), "skips")
