"""Attention transfer: the map against a hand computation, pooling of integer multiples, the size error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.errors import UsageError
from edgekd.losses.attention import attention_loss, attention_map, normalized_attention


def test_attention_map_by_hand() -> None:
    # one sample, two channels, 2x2
    a = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]], [[-1.0, 0.0], [2.0, 1.0]]]])
    q = attention_map(a, p=2)
    np.testing.assert_allclose(q[0].numpy(), [[1.0, 2.0], [2.0, 5.0]])  # (1+1)/2, (4+0)/2, (0+4)/2, (9+1)/2
    qn = normalized_attention(a, p=2)
    norm = np.sqrt(1 + 4 + 4 + 25)
    np.testing.assert_allclose(qn[0].numpy(), np.array([1.0, 2.0, 2.0, 5.0]) / norm, rtol=1e-6)
    q1 = attention_map(a, p=1)
    np.testing.assert_allclose(q1[0].numpy(), [[1.0, 1.0], [1.0, 2.0]])


def test_attention_loss_by_hand() -> None:
    s = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # Q = [1, 0, 0, 0]
    t = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])  # Q = [0, 1, 0, 0]
    got = attention_loss(s, t, p=2)
    np.testing.assert_allclose(got.numpy(), [(1 + 1) / 4])  # mean over H*W of the squared difference
    # scale invariance: the maps are normalised
    torch.testing.assert_close(attention_loss(3 * s, 0.5 * t), got)


def test_identical_features_give_zero_and_teacher_is_detached() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 5, generator=g)
    assert torch.allclose(attention_loss(x, x), torch.zeros(3))
    s = torch.randn(3, 4, 5, 5, generator=g, requires_grad=True)
    t = torch.randn(3, 8, 5, 5, generator=g, requires_grad=True)  # channel counts may differ
    attention_loss(s, t, reduction="mean").backward()
    assert s.grad is not None and t.grad is None


def test_integer_multiple_sizes_are_pooled() -> None:
    g = torch.Generator().manual_seed(1)
    big = torch.rand(2, 3, 8, 8, generator=g)
    small = torch.rand(2, 5, 4, 4, generator=g)
    got = attention_loss(big, small)
    # by hand: pool the student's attention map 2x2, then normalise
    q_big = (big**2).mean(1).reshape(2, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(2, -1)
    q_big = q_big / q_big.norm(dim=1, keepdim=True)
    q_small = (small**2).mean(1).reshape(2, -1)
    q_small = q_small / q_small.norm(dim=1, keepdim=True)
    torch.testing.assert_close(got, (q_big - q_small).pow(2).mean(1))
    # either side may be the larger one
    assert attention_loss(small, big).shape == (2,)


def test_non_multiple_sizes_are_an_error() -> None:
    with pytest.raises(UsageError) as info:
        attention_loss(torch.rand(1, 2, 7, 7), torch.rand(1, 2, 4, 4), student_name="layer3", teacher_name="layer4")
    assert str(info.value) == (
        "cannot pair student layer3 (7x7) with teacher layer4 (4x4) for attention transfer: "
        "choose layers with equal or integer-multiple spatial sizes"
    )


def test_non_4d_feature_is_an_error() -> None:
    with pytest.raises(UsageError, match="4-D"):
        attention_loss(torch.rand(2, 10), torch.rand(2, 3, 4, 4), student_name="fc")
