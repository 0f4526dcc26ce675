"""FitNets hints: adapter shapes, gradient into the adapter, spatial rules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.errors import UsageError
from edgekd.losses.hint import HintLoss


def test_adapter_maps_student_channels_to_teacher_channels() -> None:
    loss = HintLoss(16, 64)
    conv = loss.adapter
    assert isinstance(conv, nn.Conv2d)
    assert conv.weight.shape == (64, 16, 1, 1)
    with_bn = HintLoss(16, 64, batch_norm=True)
    assert isinstance(with_bn.adapter[1], nn.BatchNorm2d)
    assert isinstance(HintLoss(32, 32).adapter, nn.Identity)
    assert list(HintLoss(32, 32).parameters()) == []


def test_gradient_flows_into_adapter_and_student_not_teacher() -> None:
    g = torch.Generator().manual_seed(0)
    loss = HintLoss(4, 6)
    s = torch.randn(3, 4, 8, 8, generator=g, requires_grad=True)
    t = torch.randn(3, 6, 8, 8, generator=g, requires_grad=True)
    per = loss(s, t)
    assert per.shape == (3,)
    per.mean().backward()
    assert loss.adapter.weight.grad is not None and loss.adapter.weight.grad.abs().sum() > 0
    assert s.grad is not None and t.grad is None


def test_mse_by_hand_with_identity_and_pooling() -> None:
    s = torch.arange(16.0).reshape(1, 1, 4, 4)
    t = torch.zeros(1, 1, 2, 2)
    # student pooled 2x2 -> [[2.5, 4.5], [10.5, 12.5]], MSE against zeros
    expected = (2.5**2 + 4.5**2 + 10.5**2 + 12.5**2) / 4
    torch.testing.assert_close(HintLoss(1, 1)(s, t), torch.tensor([expected]))


def test_from_shapes_checks_spatial_sizes_and_accepts_embeddings() -> None:
    assert HintLoss.from_shapes((2, 8, 16, 16), (2, 32, 8, 8)).adapter.weight.shape == (32, 8, 1, 1)
    with pytest.raises(UsageError, match=r"student layer2 \(6x6\) with teacher layer3 \(4x4\) for hint learning"):
        HintLoss.from_shapes((2, 8, 6, 6), (2, 8, 4, 4), student_name="layer2", teacher_name="layer3")
    emb = HintLoss.from_shapes((2, 8), (2, 12))
    assert emb(torch.rand(2, 8), torch.rand(2, 12)).shape == (2,)
