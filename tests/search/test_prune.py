"""Torch-Pruning candidates: fewer MACs, weights inherited, exact checkpoint round trip, and a model it cannot
prune reported with the reason (the search then runs on the family alone)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from edgekd.models.checkpoint import load_edgekd_checkpoint, save_edgekd_checkpoint  # noqa: E402
from edgekd.models.registry import build_model  # noqa: E402
from edgekd.search.candidates import pruned_candidates, spread_by_macs, family_candidates  # noqa: E402
from edgekd.search.prune import PruneUnsupported, count_macs, prune  # noqa: E402


@pytest.mark.parametrize("arch,c,size", [("cifar_resnet20", 3, 32), ("mobilenet_v3_small", 3, 32),
                                         ("small_cnn", 1, 8)])
def test_pruning_cuts_macs_and_the_checkpoint_rebuilds_exactly(tmp_path, arch, c, size):
    torch.manual_seed(0)
    model = build_model(arch, 10, c, input_size=size).eval()
    x = torch.randn(4, c, size, size)
    pruned = prune(model, x[:2], 0.5).eval()
    assert count_macs(pruned, x[:1]) < 0.75 * count_macs(model, x[:1])
    path = tmp_path / "p.pt"
    save_edgekd_checkpoint(path, pruned, arch, {"num_classes": 10, "in_channels": c, "input_size": size},
                           extra={"pruned_from": arch})
    rebuilt, meta = load_edgekd_checkpoint(path)
    assert meta["pruned_from"] == arch
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), pruned(x))


def test_kept_channels_carry_the_teachers_weights():
    torch.manual_seed(0)
    model = build_model("cifar_resnet20", 10, 3).eval()
    pruned = prune(model, torch.randn(2, 3, 32, 32), 0.5)
    # the stem and the block outputs keep their width (option-A shortcuts), so their weights are unchanged
    assert torch.equal(pruned.conv1.weight, model.conv1.weight)
    kept = pruned.layer1[0].conv1.weight  # half of the filters, each one of the teacher's
    full = model.layer1[0].conv1.weight
    assert kept.shape[0] == full.shape[0] // 2
    assert all(any(torch.equal(k, f) for f in full) for k in kept)


class PadNet(nn.Module):
    """A residual add whose shortcut zero-pads channels by a fixed count (an "option A" shortcut outside a
    module edgekd knows): the dependency graph couples the add wrongly and the pruned copy no longer runs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv2(x) + nn.functional.pad(x, (0, 0, 0, 0, 4, 4))
        return self.fc(self.conv3(x).mean((2, 3)))


def test_a_teacher_that_cannot_be_pruned_gives_no_candidates_and_a_reason():
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(PruneUnsupported):
        prune(PadNet().eval(), x, 0.5)
    cands, why = pruned_candidates(PadNet().eval(), "padnet", [0.5], "magnitude", x, [])
    assert cands == [] and "Torch-Pruning could not prune PadNet" in why[0]


def test_taylor_importance_uses_gradients_from_real_batches():
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 1).eval()
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))) for _ in range(2)]
    pruned = prune(model, batches[0][0][:2], 0.5, "taylor", batches)
    assert count_macs(pruned, batches[0][0][:1]) < count_macs(model, batches[0][0][:1])


def test_family_spread_keeps_the_cheapest_and_the_largest():
    cands = family_candidates(["small_cnn", "cifar_resnet8_050", "cifar_resnet14", "cifar_resnet20",
                               "cifar_resnet20_150"], {"num_classes": 10, "in_channels": 1, "input_size": 8},
                              torch.zeros(1, 1, 8, 8))
    picked = spread_by_macs(cands, 3)
    macs = sorted(c.macs for c in cands)
    assert len(picked) == 3 and picked[0].macs == macs[0] and picked[-1].macs == macs[-1]


def test_a_target_not_on_this_machine_gets_a_labelled_estimate(tmp_path):
    from edgekd.search.latency import measure_candidate
    from edgekd.targets import load_target

    model = build_model("small_cnn", 10, 1, input_size=8)
    out = measure_candidate(model, torch.randn(8, 1, 8, 8), load_target("jetson"), tmp_path / "lat")
    assert out["estimated"] is True and out["latency_ms"] > 0 and out["runtime"].startswith("roofline")
    assert not (tmp_path / "lat").exists()  # the candidate's files are cleaned up


def test_depth_pruning_removes_blocks_keeps_the_rest_of_the_teacher_and_rebuilds_exactly(tmp_path):
    from edgekd.search.depth import removable_blocks

    torch.manual_seed(0)
    model = build_model("cifar_resnet20", 10, 3).eval()
    x = torch.randn(64, 3, 32, 32)
    blocks = removable_blocks(model, x[:2])
    # layer1's three blocks and all but the first (strided, padded shortcut) of layer2 and layer3
    assert blocks == ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    grads = [(x[:32], torch.randint(0, 10, (32,)))]
    cands, why = pruned_candidates(model, "cifar_resnet20", [0.5], "magnitude", x, grads, depths=[0.5, 0.25])
    assert why == []
    by = {c.name: c for c in cands}
    assert set(by) == {"cifar_resnet20-pruned50", "cifar_resnet20-depth50", "cifar_resnet20-depth25",
                       "cifar_resnet20-depth25-pruned50"}
    d50, d25, both = by["cifar_resnet20-depth50"], by["cifar_resnet20-depth25"], by["cifar_resnet20-depth25-pruned50"]
    assert len(d50.dropped_blocks) == 3 and len(d25.dropped_blocks) == 5  # 7 - round(0.5 * 7), 7 - round(0.25 * 7)
    assert d25.dropped_blocks[:3] == d50.dropped_blocks  # one drop order: the shallower keeps a subset
    assert both.macs < d25.macs < d50.macs < count_macs(model, x[:1])
    for path in d25.dropped_blocks:
        assert isinstance(d25.model.get_submodule(path), nn.Identity)
    kept = next(p for p in blocks if p not in d25.dropped_blocks)
    assert torch.equal(d25.model.get_submodule(kept).conv1.weight, model.get_submodule(kept).conv1.weight)
    assert sum(isinstance(m, nn.Identity) for m in model.modules()) == 7  # the teacher is not changed
    for c in (d25, both):
        path = tmp_path / f"{c.name}.pt"
        save_edgekd_checkpoint(path, c.model, c.arch, {"num_classes": 10, "in_channels": 3, "input_size": 32},
                               extra=c.checkpoint_extra())
        rebuilt, meta = load_edgekd_checkpoint(path)
        assert meta["dropped_blocks"] == c.dropped_blocks
        with torch.no_grad():
            assert torch.equal(rebuilt.eval()(x[:4]), c.model(x[:4]))


def test_blocks_are_dropped_least_influential_first():
    """A block whose residual branch is zeroed changes nothing when bypassed: it is the first to go."""
    from edgekd.search.depth import block_influence, drop_order

    torch.manual_seed(0)
    model = build_model("cifar_resnet20", 10, 3).eval()
    with torch.no_grad():
        model.layer2[2].bn2.weight.zero_()
        model.layer2[2].bn2.bias.zero_()
    x = torch.randn(32, 3, 32, 32)
    scores = block_influence(model, ["layer1.1", "layer2.2", "layer3.1"], x)
    assert scores["layer2.2"] < 1e-6 < min(scores["layer1.1"], scores["layer3.1"])
    assert drop_order(model, x, 1) == ["layer2.2"]


def test_a_model_without_residual_blocks_gives_no_depth_candidates_and_a_reason():
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 1, input_size=8).eval()
    x = torch.randn(8, 1, 8, 8)
    cands, why = pruned_candidates(model, "small_cnn", [], "magnitude", x, [], depths=[0.5])
    assert cands == [] and "no residual block with an identity shortcut" in why[0]


@pytest.mark.parametrize("arch,blocks", [("resnet18", 5), ("mobilenet_v3_small", 6)])
def test_depth_pruning_finds_the_residual_blocks_of_torchvision_models(tmp_path, arch, blocks):
    from edgekd.search.depth import drop_blocks, drop_order, removable_blocks

    torch.manual_seed(0)
    model = build_model(arch, 10, 3, input_size=64).eval()
    x = torch.randn(4, 3, 64, 64)
    assert len(removable_blocks(model, x[:2])) == blocks
    dropped = drop_order(model, x, 2)
    shallow = drop_blocks(model, dropped, [x])
    path = tmp_path / "d.pt"
    save_edgekd_checkpoint(path, shallow, arch, {"num_classes": 10, "in_channels": 3, "input_size": 64},
                           extra={"dropped_blocks": dropped})
    rebuilt, _ = load_edgekd_checkpoint(path)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), shallow(x))


@pytest.mark.parametrize("flag,value", [("search_prune_ratios", [1.5]), ("search_prune_depths", [0.0]),
                                        ("search_prune_depths", [1.0])])
def test_pruning_shares_outside_zero_to_one_are_usage_errors(flag, value):
    from edgekd.errors import UsageError
    from edgekd.plan import validate_options

    with pytest.raises(UsageError, match=flag):
        validate_options({flag: value})
