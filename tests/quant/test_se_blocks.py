"""Squeeze-excitation convolutions: quantized by default (edgekd.quant.se_blocks), kept in float on request, and
NNCF's SE_BLOCK pattern is back in its registry after each call."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nncf")
nn = torch.nn


class SENet(nn.Module):
    """conv -> torchvision SqueezeExcitation -> pool -> linear: NNCF's SE_BLOCK pattern matches fc1 / fc2."""

    def __init__(self) -> None:
        from torchvision.ops.misc import SqueezeExcitation

        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.act = nn.ReLU()
        self.se = SqueezeExcitation(16, 8, scale_activation=nn.Hardsigmoid)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.se(self.act(self.conv(x)))), 1))


@pytest.mark.parametrize("se_quantized", [True, False])
def test_se_convs_quantized_unless_asked_to_keep_them(se_quantized: bool) -> None:
    from nncf.common.graph.patterns.patterns import IgnoredPatternNames
    from nncf.torch.quantization.ignored_patterns import PT_IGNORED_PATTERNS

    from edgekd.models.family import expected_float_layers
    from edgekd.quant import QuantSpec, quantize
    from edgekd.quant.sensitivity import quantized_layers

    torch.manual_seed(0)
    model = SENet().eval()
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    spec = QuantSpec(preset="mixed", subset_size=64, quantize_se_blocks=se_quantized)
    qmodel = quantize(model, [x], spec, x[:2])
    quantized = {layer.layer for layer in quantized_layers(qmodel, model, x[:2])}
    float_layers = {"conv", "se.fc1", "se.fc2", "fc"} - quantized
    assert float_layers == set(expected_float_layers(model, se_quantized=se_quantized))
    assert float_layers == (set() if se_quantized else {"se.fc1", "se.fc2"})
    assert IgnoredPatternNames.SE_BLOCK in PT_IGNORED_PATTERNS.registry_dict  # restored after the call


def test_the_default_quantizes_them() -> None:
    from edgekd.models.family import expected_float_layers
    from edgekd.quant import QuantSpec

    assert QuantSpec().quantize_se_blocks is True and expected_float_layers(SENet()) == []
