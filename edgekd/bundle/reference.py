"""reference.npz: a few raw sample inputs and, per artifact, the outputs it must give (an integration test).

Arrays: `raw` (uint8 or the eval set's dtype, N x C x H x W, before preprocessing), `inputs` (float32 model
input after preprocessing), `labels`, `indices` (rows of eval_set.npz), and `expected/<artifact name>`
(logits as float32). A device team feeds `raw` through its own preprocessing and compares with `inputs`, then
runs its model on `inputs` and compares with `expected/<name>` (FP32: max_abs <= 1e-4 or max_rel <= 1e-3;
INT8: same top-1 class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "expected/"


def pick_samples(labels: np.ndarray, count: int = 16) -> np.ndarray:
    """The first sample of every class (in class order), then the next ones in order, up to `count`."""
    labels = np.asarray(labels)
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    rest = [i for i in range(len(labels)) if i not in set(firsts)]
    return np.asarray((firsts + rest)[:count], dtype=np.int64)


def write_reference(path: Path, raw: np.ndarray, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                    expected: dict[str, np.ndarray]) -> None:
    arrays = {"raw": raw, "inputs": inputs.astype(np.float32), "labels": labels, "indices": indices}
    arrays.update({PREFIX + k: np.asarray(v, dtype=np.float32) for k, v in expected.items()})
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def read_reference(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        return {"raw": z["raw"], "inputs": z["inputs"], "labels": z["labels"], "indices": z["indices"],
                "expected": {k[len(PREFIX):]: z[k] for k in z.files if k.startswith(PREFIX)}}
