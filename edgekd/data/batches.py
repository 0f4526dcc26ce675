"""Batches: normalisation, seeded augmentation and (distributed) sharding of in-memory splits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from edgekd.data.sources import Split
from edgekd.manifest import Preprocessing
from edgekd.preprocess import normalize_np  # noqa: F401  (re-exported for stages)

Augment = Literal["none", "crop", "crop_flip", "rrc_flip"]
RRC_SCALE = (0.25, 1.0)  # area fraction of the stored (centre-cropped) image
RRC_RATIO = (3 / 4, 4 / 3)


def normalize(images: torch.Tensor | np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """uint8/float raw images (N, C, H, W) -> float32 model input, as the preprocessing record says."""
    x = torch.as_tensor(images).float() / pre.value_scale
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std


def random_resized_crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Inception-style random-resized-crop of each image, back to its own size (bilinear, torchvision's
    roi_align). The stored images are the eval centre crop, so crops cover RRC_SCALE of that area with an
    aspect ratio in RRC_RATIO (log-uniform), clamped to the image."""
    from torchvision.ops import roi_align

    n, _, h, w = x.shape
    area = torch.empty(n).uniform_(*RRC_SCALE, generator=gen) * h * w
    log_r = torch.empty(n).uniform_(*(float(torch.log(torch.tensor(r))) for r in RRC_RATIO), generator=gen)
    ratio = torch.exp(log_r)
    cw = torch.sqrt(area * ratio).clamp(1, w)
    ch = torch.sqrt(area / ratio).clamp(1, h)
    x0 = torch.rand(n, generator=gen) * (w - cw)
    y0 = torch.rand(n, generator=gen) * (h - ch)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + cw, y0 + ch], dim=1)
    return roi_align(x.float(), boxes, output_size=(h, w), spatial_scale=1.0, sampling_ratio=2, aligned=True)


def augment_batch(x: torch.Tensor, mode: Augment, gen: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding (1/8 of the side) and optional horizontal flip, seeded by `gen`;
    rrc_flip: random-resized-crop and horizontal flip (photos)."""
    if mode == "none":
        return x
    if mode == "rrc_flip":
        out = random_resized_crop(x, gen)
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
        return out
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1),
                 rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    if mode == "crop_flip":
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The same permutation on every rank for a given (seed, epoch): the basis of sharding and resume."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def train_batches(split: Split, pre: Preprocessing, *, batch_size: int, seed: int, epoch: int,
                  augment: Augment, rank: int = 0, world: int = 1, drop_last: bool = True,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """Yield (normalised inputs, labels, dataset indices) for this rank's share of each global batch.

    `batch_size` is the global batch: each of `world` ranks takes an equal, disjoint slice of it, so the
    samples seen per step do not depend on the world size.
    """
    order = epoch_order(len(split), seed, epoch)
    per_rank = batch_size // world
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch * 7919 + rank)
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size][rank * per_rank:(rank + 1) * per_rank]
        if len(idx) == 0:
            continue
        raw = torch.from_numpy(split.images[idx])
        x = normalize(augment_batch(raw, augment, gen), pre)
        yield x, torch.from_numpy(split.labels[idx]), idx


def eval_batches(split: Split, pre: Preprocessing, batch_size: int = 256
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        sl = slice(start, start + batch_size)
        yield normalize(split.images[sl], pre), torch.from_numpy(split.labels[sl])


def num_train_steps(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
