"""Hinton KD against numbers computed by hand in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgekd.errors import UsageError
from edgekd.losses.kd import check_compatible, kd_loss, kd_terms

S = np.array([[1.0, 2.0, 0.5], [0.2, -1.0, 3.0]])
T = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 2.5]])
Y = np.array([1, 2])


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _by_hand(temperature: float, alpha: float) -> np.ndarray:
    p_t = _softmax(T / temperature)
    p_s = _softmax(S / temperature)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1)
    ce = -np.log(_softmax(S)[np.arange(2), Y])
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def test_kd_matches_hand_computation_per_sample_and_mean() -> None:
    expected = _by_hand(2.0, 0.5)
    per = kd_loss(_t(S), _t(T), torch.tensor(Y), temperature=2.0, alpha=0.5, reduction="none")
    np.testing.assert_allclose(per.numpy(), expected, rtol=1e-5)
    mean = kd_loss(_t(S), _t(T), torch.tensor(Y), temperature=2.0, alpha=0.5)
    assert mean.shape == ()
    np.testing.assert_allclose(mean.item(), expected.mean(), rtol=1e-5)


def test_soft_term_is_scaled_by_t_squared() -> None:
    soft, _ = kd_terms(_t(S), _t(T), torch.tensor(Y), temperature=2.0)
    p_t, p_s = _softmax(T / 2.0), _softmax(S / 2.0)
    kl = (p_t * (np.log(p_t) - np.log(p_s))).sum(axis=1)
    np.testing.assert_allclose(soft.numpy(), 4.0 * kl, rtol=1e-5)
    # alpha=1 is exactly the T^2-scaled KL, not the bare KL
    pure = kd_loss(_t(S), _t(T), torch.tensor(Y), 2.0, 1.0, reduction="none")
    np.testing.assert_allclose(pure.numpy(), 4.0 * kl, rtol=1e-5)
    assert not np.allclose(4.0 * kl, kl)


def test_alpha_zero_is_cross_entropy() -> None:
    got = kd_loss(_t(S), _t(T), torch.tensor(Y), temperature=4.0, alpha=0.0)
    torch.testing.assert_close(got, F.cross_entropy(_t(S), torch.tensor(Y)))


def test_label_smoothing_reaches_the_ce_term() -> None:
    got = kd_loss(_t(S), _t(T), torch.tensor(Y), 4.0, 0.0, label_smoothing=0.1)
    torch.testing.assert_close(got, F.cross_entropy(_t(S), torch.tensor(Y), label_smoothing=0.1))


def test_kl_is_zero_when_student_equals_teacher() -> None:
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    soft, _ = kd_terms(x, x.clone(), torch.zeros(5, dtype=torch.long), temperature=3.0)
    assert torch.allclose(soft, torch.zeros(5), atol=1e-6)


def test_gradient_reaches_student_not_teacher() -> None:
    s = _t(S).requires_grad_()
    t = _t(T).requires_grad_()
    kd_loss(s, t, torch.tensor(Y), 2.0, 0.5).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


@pytest.mark.parametrize(
    ("temperature", "alpha", "message"),
    [
        (4.0, 1.5, "--alpha must be in [0, 1], got 1.5"),
        (4.0, -0.1, "--alpha must be in [0, 1], got -0.1"),
        (4.0, float("nan"), "--alpha must be in [0, 1], got nan"),
        (0.0, 0.5, "--temperature must be in (0, 100], got 0"),
        (101.0, 0.5, "--temperature must be in (0, 100], got 101"),
    ],
)
def test_range_errors(temperature: float, alpha: float, message: str) -> None:
    with pytest.raises(UsageError) as info:
        kd_loss(_t(S), _t(T), torch.tensor(Y), temperature, alpha)
    assert str(info.value) == message


def test_class_count_mismatch_is_actionable() -> None:
    with pytest.raises(UsageError, match="teacher predicts 100 classes, student 10: fine-tune the teacher"):
        check_compatible((8, 10), (8, 100))
    with pytest.raises(UsageError, match="teacher predicts 100 classes"):
        kd_loss(torch.zeros(2, 10), torch.zeros(2, 100), torch.zeros(2, dtype=torch.long), 4.0, 0.9)
