"""Parity numbers, tolerances per precision, failure messages and NaN detection."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import StageFailed, UsageError
from edgekd.export import INT8_MIN_TOP1_AGREEMENT, check_parity_with, compare_logits


def test_compare_logits_numbers():
    ref = np.array([[1.0, 2.0, 4.0], [3.0, 0.0, 1.0]])
    out = ref + np.array([[0.0, 0.5, 0.0], [0.0, 3.5, 0.0]])  # second row's top-1 flips to class 1
    m = compare_logits(ref, out)
    assert m["max_abs"] == pytest.approx(3.5)
    assert m["max_rel"] == pytest.approx(3.5 / 4.0)
    assert m["top1_agreement"] == 0.5 and not m["nan_or_inf"]


def test_compare_logits_shape_mismatch():
    with pytest.raises(UsageError, match="shape"):
        compare_logits(np.zeros((2, 3)), np.zeros((3, 3)))


def test_nan_detected_and_fails_every_kind():
    ref = np.random.default_rng(0).normal(size=(8, 10)).astype(np.float32)
    out = ref.copy()
    out[3, 4] = np.nan
    assert compare_logits(ref, out)["nan_or_inf"]
    for kind in ("fp32", "fp16", "int8"):
        with pytest.raises(StageFailed, match="NaN/Inf"):
            check_parity_with(lambda x, o=out: o[x[:, 0].astype(int)], ref, np.arange(8.0)[:, None], kind)


def _lookup(table: np.ndarray):
    """infer for inputs that are row indices into ``table`` (lets a test script the artifact's outputs)."""
    return lambda x: table[x[:, 0].astype(int)]


def test_fp32_failure_message_names_the_numbers():
    ref = np.random.default_rng(1).normal(size=(10, 5))
    out = ref + 2e-2
    with pytest.raises(StageFailed) as err:
        check_parity_with(_lookup(out), ref, np.arange(10.0)[:, None], "fp32", batch_sizes=(1, 4), artifact="m.onnx")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("fp32 parity of m.onnx fails (needs max_abs <= 0.0001 or max_rel <= 0.001) on 10 inputs")
    assert "batch 1: max_abs=0.02" in msg and "batch 4: max_abs=0.02" in msg


def test_fp32_relative_tolerance_scales_with_logits():
    ref = np.full((4, 3), 1000.0)
    ref[:, 0] = 2000.0
    report = check_parity_with(_lookup(ref + 0.5), ref, np.arange(4.0)[:, None], "fp32")
    assert report.passed  # 0.5 / 2000 = 2.5e-4 relative


def test_fp16_tolerance():
    ref = np.random.default_rng(2).normal(size=(6, 4))
    assert check_parity_with(_lookup(ref + 5e-3), ref, np.arange(6.0)[:, None], "fp16").passed
    with pytest.raises(StageFailed, match="fp16 parity"):
        check_parity_with(_lookup(ref + 5e-2), ref, np.arange(6.0)[:, None], "fp16")


def _int8(out: np.ndarray, ref: np.ndarray):
    return check_parity_with(_lookup(out), ref, np.arange(float(len(ref)))[:, None], "int8", raise_on_fail=False)


def test_int8_decided_inputs_must_agree():
    n = 200
    ref = np.zeros((n, 3))
    ref[:, 0], ref[:, 1] = 1.0, 0.95  # every input decided by a 5% margin (>= 3% of the logit range)
    out = ref.copy()
    out[:2, 1] += 0.08  # 2 of 200 flip with an error of 8% of the range: 0.99 agreement, at the floor
    report = _int8(out, ref)
    assert report.passed and report.batches[0].decided_fraction == 1.0
    out[2, 1] += 0.08  # 3 of 200: 0.985 < 0.99
    report = _int8(out, ref)
    assert not report.passed and report.batches[0].top1_agreement_decided < INT8_MIN_TOP1_AGREEMENT
    assert "decided" in report.summary() and "0.9850" in report.summary()


def test_int8_near_ties_may_flip():
    """Rounding noise flips inputs whose reference top-1 barely leads: that alone is not a defect."""
    ref = np.zeros((100, 3))
    ref[:, 0] = 1.0
    ref[:10, 1] = 0.99  # 10 near-ties (1% margin)
    out = ref.copy()
    out[:10, 1] += 0.02  # all 10 flip: 90% overall agreement
    b = _int8(out, ref).batches[0]
    assert b.passed and b.top1_agreement == 0.9 and b.top1_agreement_decided == 1.0 and b.decided_fraction == 0.9


def test_int8_logit_error_beyond_10_percent_fails_without_flips():
    ref = np.random.default_rng(3).normal(size=(50, 4))
    report = _int8(ref * 1.5, ref)  # same classes everywhere, but the logits are off by half: a wrong scale
    assert report.batches[0].top1_agreement == 1.0 and not report.passed


def test_unknown_kind():
    with pytest.raises(UsageError, match="unknown parity kind"):
        check_parity_with(lambda x: x, np.zeros((2, 2)), np.zeros((2, 2)), "int4")


def test_importing_quant_and_export_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, edgekd.quant, edgekd.export; "
        "print(sorted(m for m in ('torch', 'nncf', 'openvino', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
