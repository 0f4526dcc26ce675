"""`--calib-size N` gives exactly N images, stratified by class (it once gave 294 of 300 by rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.calibration import class_quotas, sample_calibration
from edgekd.data.sources import Split


def _split(counts: list[int]) -> Split:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)]).astype(np.int64)
    rng = np.random.default_rng(1)
    return Split(rng.integers(0, 255, (len(labels), 1, 4, 4), dtype=np.uint8), rng.permutation(labels))


@pytest.mark.parametrize("counts,size", [
    ([143] * 7 + [144] * 3, 300),   # digits-like: floor shares sum to 294
    ([500, 30, 7, 1], 50),          # skewed, a one-image class
    ([10, 10, 10], 2),              # fewer images than classes
    ([3, 100], 10),
])
def test_calibration_size_is_exact_and_stratified(counts, size):
    split = _split(counts)
    calib = sample_calibration(split, size, seed=0)
    assert len(calib) == size
    got = np.bincount(calib.labels, minlength=len(counts))
    share = np.asarray(counts) / sum(counts) * size
    assert (got <= np.asarray(counts)).all()
    if size >= len(counts):
        assert (got >= 1).all()  # every class represented
        # within one image of its proportional share, unless raised to the one-image minimum
        assert ((np.abs(got - share) < 1) | (got == 1)).all(), (got, share)
    assert np.array_equal(calib.labels, sample_calibration(split, size, seed=0).labels)  # deterministic


def test_quotas_are_exact_for_the_reported_case():
    quota = class_quotas(np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]), 300)
    assert quota.sum() == 300 and quota.min() == 29 and quota.max() == 31
