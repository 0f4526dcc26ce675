"""Preprocessing in numpy (no torch): what a device applies to raw pixels before the model."""

from __future__ import annotations

import numpy as np

from edgekd.manifest import Preprocessing


def normalize_np(images: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Raw images (N, C, H, W) at the model's input size -> float32 model input, as `pre` says."""
    x = images.astype(np.float32) / pre.value_scale
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def write_eval_set(path, images: np.ndarray, labels: np.ndarray, pre: Preprocessing) -> None:
    """The held-out split as raw uint8 + labels, so `edgekd bench` can measure accuracy on a device."""
    np.savez_compressed(path, images=images, labels=labels, preprocessing=pre.model_dump_json())


def read_eval_set(path) -> tuple[np.ndarray, np.ndarray, Preprocessing]:
    with np.load(path, allow_pickle=False) as z:
        return z["images"], z["labels"], Preprocessing.model_validate_json(str(z["preprocessing"]))
