"""Quantization-aware training helpers: a quantized model in train mode with its BatchNorm statistics frozen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.quant.ptq import _torch

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm in eval mode (running statistics frozen; affine weights stay trainable)."""
    batchnorm = _torch().nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d and SyncBatchNorm
    frozen = 0
    for module in model.modules():
        if isinstance(module, batchnorm):
            module.eval()
            frozen += 1
    return frozen


def qat_train_mode(qmodel: nn.Module) -> nn.Module:
    """``qmodel.train()`` then re-freeze BatchNorm statistics; call this instead of ``train()`` in QAT loops."""
    qmodel.train()
    freeze_batchnorm(qmodel)
    return qmodel


def prepare_for_qat(qmodel: nn.Module) -> nn.Module:
    """Make a quantized model ready for quantization-aware training/distillation.

    Why BatchNorm is frozen: the quantizer ranges were calibrated on activations normalised with the
    *running* statistics. In train mode BatchNorm normalises with each batch's statistics instead (and
    keeps moving the running ones), so the activations no longer match the calibrated ranges: measured on
    CIFAR ResNets, right after quantization the model in train() mode has ~4x the cross-entropy of eval()
    on the same batch. Freezing the statistics keeps train-time forward equal to inference forward, so
    QAT optimises the network it will ship. NNCF quantizers behave the same in train and eval mode.
    BatchNorms that :func:`quantize` folded into their conv are gone already (a folded BatchNorm is a
    frozen one); this freezes the rest. Weights, BatchNorm affine parameters and quantizer scales stay
    trainable. Call :func:`qat_train_mode` (not ``train()``) after any evaluation inside the QAT loop.
    """
    for p in qmodel.parameters():
        if p.is_floating_point():
            p.requires_grad_(True)
    # quantizers turned off (e.g. by sensitivity analysis) must not train their scales
    for module in qmodel.modules():
        if hasattr(module, "is_enabled_quantization") and not module.is_enabled_quantization():
            module.disable_gradients()
    return qat_train_mode(qmodel)
