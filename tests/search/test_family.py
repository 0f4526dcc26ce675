"""Every family member the student search can propose trains on a real task and quantizes.

The real task: scikit-learn's 1,797 handwritten digits (8x8, one channel; the large-input members at 16 px,
the image upscaled), 1,437 images to train, 360 held out. Each member trains 3 epochs with SGD and must clearly
beat chance (10%) on the held-out images in eval mode (the MobileNetV3 collapse to one class came from
eval-mode BatchNorm with running statistics that had not moved). Then NNCF quantizes it: every Conv/Linear
gets a weight quantizer except the layers the member declares (MobileNetV3's squeeze-excitation convs, kept
in float by NNCF's SE-block pattern).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nncf")
pytest.importorskip("sklearn")

from torch import nn  # noqa: E402

from edgekd.models.family import expected_float_layers  # noqa: E402
from edgekd.models.registry import build_model  # noqa: E402
from edgekd.search.family import LARGE, SMALL  # noqa: E402


def _digits(size: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - 0.3) / 0.4
    if size != 8:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    return x[perm[:1437]], y[perm[:1437]], x[perm[1437:]], y[perm[1437:]]


DATA: dict[int, tuple] = {}


def _train(name: str, size: int):
    if size not in DATA:
        DATA[size] = _digits(size)
    xtr, ytr, xte, yte = DATA[size]
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=1, input_size=size)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    g = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(3):
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        top1 = float((model(xte).argmax(1) == yte).float().mean())
    return model, top1, xtr


# The members that take over 10 s here each run only with -m slow; the rest (about 55 s on one thread) run with
# the search pipeline tests (-m search, CI's second pytest call).
HEAVY = {"cifar_resnet32", "mobilenet_v3_small", "mobilenet_v3_small_075", "mobilenet_v3_large_075", "mobilenet_v3_large_100", "resnet18"}
MEMBERS = [pytest.param(n, s, marks=[pytest.mark.slow] if n in HEAVY else [pytest.mark.search], id=f"{n}@{s}px")
           for n, s in [(n, 8) for n in SMALL] + [(n, 16) for n in LARGE if n not in SMALL]]


@pytest.mark.parametrize("name,size", MEMBERS)
def test_family_member_trains_and_quantizes(name, size):
    from edgekd.quant.nncf_quant import QuantSpec, quantize
    from edgekd.quant.sensitivity import quantized_layers

    torch.set_num_threads(1)
    model, top1, xtr = _train(name, size)
    assert top1 >= 0.5, f"{name} at {size}px reached {top1:.1%} (chance is 10%)"
    example = xtr[:2]
    qmodel = quantize(model, [xtr[:64]], QuantSpec(preset="mixed", subset_size=64, min_calibration=32), example)
    quantized = {layer.layer for layer in quantized_layers(qmodel, model, example)}
    weighted = {p for p, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    declared = set(expected_float_layers(model))
    assert weighted - quantized == declared, f"{name}: float layers {sorted(weighted - quantized)}"
