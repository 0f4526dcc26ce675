"""How a training step uses a CUDA GPU: mixed precision, memory format, pinned host memory.

On CUDA (decided by the device the trainer runs on, never by a flag that could differ between ranks):

- autocast in bfloat16 where the GPU supports it (Ampere and newer: no loss scaling needed), else float16 with
  ``torch.amp.GradScaler`` (dynamic loss scaling, so small gradients do not underflow);
- the model and each input batch in ``channels_last`` (NHWC), the layout cuDNN's tensor-core convolutions
  prefer for 4-D inputs;
- batches assembled in pinned (page-locked) host memory and copied with ``non_blocking=True``, so the copy
  overlaps the previous step's kernels.

On CPU all of it is off: training stays float32 and bit-identical to a run without this module. The qad stage
turns autocast off on every device (``mixed_precision=False``): fake-quantization ranges and rounding are
defined in float32, and QAD trains exactly the arithmetic the INT8 export will run.

Losses promote logits to float32 (edgekd.losses.kd), so the KD terms are computed in full precision under
autocast. What ran is recorded with each phase's history (``precision`` field) and in the stage manifest.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AccelPolicy:
    """What a training step does on `device`; see the module docstring."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: float32, no autocast
    channels_last: bool
    pin_memory: bool

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16-autocast", torch.float16: "fp16-autocast+gradscaler"}[
            self.amp_dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> "torch.amp.GradScaler | None":
        """A loss scaler for float16 autocast; None otherwise (bf16 has float32's exponent range)."""
        if self.amp_dtype is torch.float16:
            return torch.amp.GradScaler(self.device.type)
        return None

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Host batch -> device: pinned and asynchronous on CUDA, channels_last for image batches."""
        if self.pin_memory:
            x, y = x.pin_memory(), y.pin_memory()
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


def policy_for(device: torch.device | str, mixed_precision: bool = True) -> AccelPolicy:
    """The policy for training on `device` (CUDA: bf16 autocast if supported, else fp16 + GradScaler)."""
    device = torch.device(device)
    if device.type != "cuda":
        return AccelPolicy(device, None, channels_last=False, pin_memory=False)
    amp = None
    if mixed_precision:
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AccelPolicy(device, amp, channels_last=True, pin_memory=True)
