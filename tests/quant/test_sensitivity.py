"""Per-layer sensitivity (quantizers disabled in place)."""

from __future__ import annotations

import pytest

from edgekd.quant import QuantSpec, layer_sensitivity, quantize
from edgekd.quant.sensitivity import quantized_layers, quantizers_disabled

torch = pytest.importorskip("torch")


def _enabled_weight_quantizers(model) -> int:
    from nncf.torch.function_hook.wrapper import get_hook_storage

    hooks = get_hook_storage(model).named_hooks()
    return sum(name.startswith("pre_hooks.") and h.is_enabled_quantization() for name, h in hooks)


def test_quantized_layers_find_weight_and_input_quantizers(qmodel, trained, example):
    layers = {q.layer: q for q in quantized_layers(qmodel, trained, example)}
    assert set(layers) == {"features.0", "features.3", "fc"}
    assert layers["features.0"].input_quantizers == ("post_hooks.x__0.0",)
    assert layers["features.3"].input_quantizers == ("post_hooks.features/2/relu/0__0.0",)
    # fc reads pool -> flatten: the walk goes up through flatten to the pool's quantizer
    assert layers["fc"].input_quantizers == ("post_hooks.pool/adaptive_avg_pool2d/0__0.0",)
    assert layers["fc"].weight_quantizers == ("pre_hooks.fc/linear/0__1.0",)


def test_layer_sensitivity_one_entry_per_layer_sorted(qmodel, trained, data):
    x = data["x_eval"][:64]
    with torch.no_grad():
        before = qmodel(x)
    batches = [(x[i : i + 32], None) for i in range(0, 64, 32)]
    ranking = layer_sensitivity(qmodel, trained, batches)
    assert sorted(r.layer for r in ranking) == ["fc", "features.0", "features.3"]
    metrics = [r.metric for r in ranking]
    assert metrics == sorted(metrics, reverse=True)
    assert ranking[0].metric > 0  # restoring the most sensitive layer must reduce the error
    with torch.no_grad():
        assert torch.equal(qmodel(x), before), "quantizers are restored afterwards"


def test_all_quantizers_disabled_is_closer_to_fp32(qmodel, trained, data):
    from edgekd.quant.sensitivity import _quantizers

    x = data["x_eval"][:64]
    with torch.no_grad():
        ref, quant = trained(x), qmodel(x)
        with quantizers_disabled(qmodel, list(_quantizers(qmodel))):
            restored = qmodel(x)
    # not exactly FP32: NNCF's bias correction already moved the biases of quantized layers
    assert (restored - ref).abs().max() < (quant - ref).abs().max()
    assert float((restored.argmax(1) == ref.argmax(1)).float().mean()) >= 0.95
    assert _enabled_weight_quantizers(qmodel) == 3
