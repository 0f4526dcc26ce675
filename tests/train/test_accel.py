"""GPU-ready training (edgekd.train.accel): off on CPU, autocast + channels_last + pinned memory on CUDA."""

from __future__ import annotations

import pytest
import torch

from edgekd.train.accel import policy_for
from edgekd.train.loop import Phase, TrainConfig, Trainer
from tests.train.test_loop import PRE, _ce, _data, _model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")


def test_cpu_policy_is_plain_float32():
    p = policy_for("cpu")
    assert (p.amp_dtype, p.channels_last, p.pin_memory, p.precision) == (None, False, False, "fp32")
    assert p.grad_scaler() is None
    x, y = p.to_device(torch.ones(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))
    assert x.is_contiguous() and x.device.type == "cpu"
    with p.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_cpu_training_records_fp32_and_matches_a_run_without_the_policy(tmp_path):
    """On CPU the policy changes nothing: two fits from one seed give identical weights, history says fp32."""
    torch.manual_seed(0)
    m1 = _model()
    m2 = _model()
    m2.load_state_dict(m1.state_dict())
    train, pre = _data(), PRE
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, augment="none")
    r1 = Trainer(m1, _ce, lambda: 0.5, train, pre, tmp_path / "a").fit([Phase("p", cfg)], keep="last")
    r2 = Trainer(m2, _ce, lambda: 0.5, train, pre, tmp_path / "b", mixed_precision=False).fit([Phase("p", cfg)],
                                                                                           keep="last")
    assert r1.history[0]["precision"] == "fp32" == r2.history[0]["precision"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.gpu
@needs_cuda
def test_cuda_policy_uses_autocast_channels_last_and_pinned_memory():
    p = policy_for("cuda")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert p.amp_dtype is expected and p.channels_last and p.pin_memory
    assert (p.grad_scaler() is not None) == (expected is torch.float16)
    x, _ = p.to_device(torch.ones(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))
    assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    assert policy_for("cuda", mixed_precision=False).amp_dtype is None  # the qad stage's choice


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_under_autocast_learns(tmp_path, monkeypatch):
    from edgekd.train import dist

    cuda = dist.DistContext(device=torch.device("cuda", 0))
    monkeypatch.setattr(dist, "context", lambda: cuda)
    train, pre = _data(), PRE
    model = _model()
    losses = []

    def ce(net, x, y, idx):
        loss, parts = _ce(net, x, y, idx)
        losses.append(float(loss))
        return loss, parts

    trainer = Trainer(model, ce, lambda: 0.5, train, pre, tmp_path / "s")
    result = trainer.fit([Phase("p", TrainConfig(epochs=3, batch_size=16, lr=0.05, augment="none"))], keep="last")
    assert result.history[0]["precision"] in ("bf16-autocast", "fp16-autocast+gradscaler")
    assert next(model.parameters()).is_cuda
    assert sum(losses[-4:]) < sum(losses[:4])
