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
    assert cands == [] and "Torch-Pruning could not prune PadNet" in why


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
