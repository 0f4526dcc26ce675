"""Per-sample weighting: uniform is the mean; confidence weights sum to 1 and favour confident samples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgekd.errors import UsageError
from edgekd.losses.weighting import sample_weights, weighted_sum

LOGITS = torch.tensor([[5.0, 0.0, 0.0], [0.3, 0.2, 0.1], [0.0, 2.0, 0.0]])
Y = torch.tensor([0, 2, 0])


def test_uniform_weighting_equals_the_mean() -> None:
    per = torch.tensor([1.0, 4.0, 7.0])
    w = sample_weights(LOGITS, Y, "uniform")
    torch.testing.assert_close(w, torch.full((3,), 1 / 3))
    torch.testing.assert_close(weighted_sum(per, w), per.mean())


def test_confidence_weights_sum_to_one_and_favour_confident_samples() -> None:
    w = sample_weights(LOGITS, Y, "teacher_confidence", tau=0.1)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    conf = F.softmax(LOGITS, 1).amax(1)
    assert torch.equal(torch.argsort(w), torch.argsort(conf))
    assert w[0] > w[2] > w[1]
    torch.testing.assert_close(w, F.softmax(conf / 0.1, 0))
    flipped = sample_weights(LOGITS, Y, "teacher_confidence", tau=0.1, sign=-1)
    assert flipped[1] > flipped[2] > flipped[0]


def test_teacher_loss_weights_favour_samples_the_teacher_gets_wrong() -> None:
    w = sample_weights(LOGITS, Y, "teacher_loss")
    ce = F.cross_entropy(LOGITS, Y, reduction="none")
    torch.testing.assert_close(w, F.softmax(ce, 0))
    assert w.argmax() == 2  # the teacher is confidently wrong on sample 2


def test_weights_are_detached_and_tau_checked() -> None:
    logits = LOGITS.clone().requires_grad_()
    assert not sample_weights(logits, Y, "teacher_confidence").requires_grad
    with pytest.raises(UsageError, match="--weighting-tau must be > 0, got 0"):
        sample_weights(LOGITS, Y, "teacher_confidence", tau=0.0)
    with pytest.raises(UsageError, match="reduction='none'"):
        weighted_sum(torch.tensor(1.0), torch.ones(3) / 3)
