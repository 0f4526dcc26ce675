"""Batches: normalisation, seeded augmentation and (distributed) sharding of in-memory splits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from edgekd.data.sources import Split, read_rows
from edgekd.manifest import Preprocessing
from edgekd.preprocess import normalize_np  # noqa: F401  (re-exported for stages)

Augment = Literal["none", "crop", "crop_flip", "rrc_flip"]
RRC_SCALE = (0.25, 1.0)  # area fraction of the stored (centre-cropped) image
RRC_RATIO = (3 / 4, 4 / 3)


def normalize(images: torch.Tensor | np.ndarray, pre: Preprocessing) -> torch.Tensor:
    """uint8/float raw images (N, C, H, W) -> float32 model input, as the preprocessing record says."""
    return _normalize_(torch.as_tensor(images).to(torch.float32, copy=True), pre)


def _normalize_(x: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """`normalize` in place on a float32 tensor the caller owns (no second copy of the batch)."""
    x.div_(pre.value_scale)
    x.sub_(torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1))
    return x.div_(torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1))


def draw_augment(mode: Augment, n: int, h: int, w: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The random choices of one batch's augmentation, drawn from `gen` in a fixed order (so batches can be
    augmented by other threads and the result still depends only on the seed)."""
    if mode == "none":
        return {}
    if mode == "rrc_flip":  # Inception-style: area fraction RRC_SCALE, log-uniform aspect ratio RRC_RATIO
        area = torch.empty(n).uniform_(*RRC_SCALE, generator=gen) * h * w
        log_r = torch.empty(n).uniform_(*(float(torch.log(torch.tensor(r))) for r in RRC_RATIO), generator=gen)
        ratio = torch.exp(log_r)
        cw = torch.sqrt(area * ratio).round().clamp(1, w).long()
        ch = torch.sqrt(area / ratio).round().clamp(1, h).long()
        x0 = (torch.rand(n, generator=gen) * (w - cw + 1)).long().clamp(max=w - cw)
        y0 = (torch.rand(n, generator=gen) * (h - ch + 1)).long().clamp(max=h - ch)
        return {"box": torch.stack([x0, y0, cw, ch], 1), "flip": torch.rand(n, generator=gen) < 0.5}
    pad = max(1, h // 8)
    out = {"dy": torch.randint(0, 2 * pad + 1, (n,), generator=gen),
           "dx": torch.randint(0, 2 * pad + 1, (n,), generator=gen)}
    if mode == "crop_flip":
        out["flip"] = torch.rand(n, generator=gen) < 0.5
    return out


def apply_augment(x: torch.Tensor, mode: Augment, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """crop / crop_flip: random crop after zero padding (1/8 of the side), optional horizontal flip.
    rrc_flip: random-resized-crop of each image back to its own size (bilinear, antialiased, on uint8: torch's
    fast path; the stored images are the eval centre crop) and a horizontal flip."""
    if mode == "none":
        return x
    n, _, h, w = x.shape
    if mode == "rrc_flip":
        out = torch.empty_like(x)
        for i, (x0, y0, cw, ch) in enumerate(params["box"].tolist()):
            out[i:i + 1] = torch.nn.functional.interpolate(x[i:i + 1, :, y0:y0 + ch, x0:x0 + cw], size=(h, w),
                                                           mode="bilinear", antialias=True, align_corners=False)
    else:
        pad = max(1, h // 8)
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows = (params["dy"].view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
        cols = (params["dx"].view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
        out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1),
                     rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
    if "flip" in params:
        flip = params["flip"]
        out[flip] = out[flip].flip(-1)
    return out


def augment_batch(x: torch.Tensor, mode: Augment, gen: torch.Generator) -> torch.Tensor:
    """Augment one batch with choices drawn from `gen` (see draw_augment / apply_augment)."""
    return apply_augment(x, mode, draw_augment(mode, x.shape[0], x.shape[2], x.shape[3], gen))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The same permutation on every rank for a given (seed, epoch): the basis of sharding and resume."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def train_batches(split: Split, pre: Preprocessing, *, batch_size: int, seed: int, epoch: int,
                  augment: Augment, rank: int = 0, world: int = 1, drop_last: bool = True, prefetch: int = 2,
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """Yield (normalised inputs, labels, dataset indices) for this rank's share of each global batch.

    `batch_size` is the global batch: each of `world` ranks takes an equal, disjoint slice of it, so the
    samples seen per step do not depend on the world size. Batches are read from the split (a memory map for
    folder data) and augmented by `prefetch` threads ahead of the consumer (torch ops release the GIL); the
    random choices are drawn here in batch order from one generator per (seed, epoch, rank), so the result
    does not depend on the threads.
    """
    order = epoch_order(len(split), seed, epoch)
    per_rank = batch_size // world
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch * 7919 + rank)
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    h, w = split.images.shape[2:]
    plan = []
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size][rank * per_rank:(rank + 1) * per_rank]
        if len(idx):
            plan.append((idx, draw_augment(augment, len(idx), h, w, gen)))

    def make(idx: np.ndarray, params: dict) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        raw = torch.from_numpy(read_rows(split.images, idx))
        x = _normalize_(apply_augment(raw, augment, params).float(), pre)
        return x, torch.from_numpy(split.labels[idx]), idx

    if prefetch <= 0:
        yield from (make(idx, params) for idx, params in plan)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=prefetch) as pool:
        pending: deque = deque()
        for idx, params in plan:
            pending.append(pool.submit(make, idx, params))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def eval_batches(split: Split, pre: Preprocessing, batch_size: int = 256
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(split), batch_size):
        sl = slice(start, start + batch_size)
        yield normalize(split.images[sl], pre), torch.from_numpy(split.labels[sl])


def num_train_steps(n: int, batch_size: int, drop_last: bool = True) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)
