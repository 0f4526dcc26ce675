"""Top-1 accuracy of a PyTorch model on an in-memory split."""

from __future__ import annotations

import numpy as np
import torch

from edgekd.data.batches import eval_batches
from edgekd.data.sources import Split
from edgekd.manifest import Preprocessing


@torch.no_grad()
def predict(model: torch.nn.Module, split: Split, pre: Preprocessing, device: torch.device | str = "cpu",
            batch_size: int = 256) -> np.ndarray:
    """Logits (N, K) of `model` in eval mode; the model's training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    outs = [model(x.to(device)).float().cpu() for x, _ in eval_batches(split, pre, batch_size)]
    model.train(was_training)
    return torch.cat(outs).numpy()


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    pred = logits.argmax(1)
    return [float((pred[labels == c] == c).mean()) if (labels == c).any() else float("nan")
            for c in range(num_classes)]


def accuracy(model: torch.nn.Module, split: Split, pre: Preprocessing, device: torch.device | str = "cpu") -> float:
    return top1(predict(model, split, pre, device), split.labels)
