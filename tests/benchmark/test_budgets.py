"""The accuracy check states how precisely the test split measures the top-1 it judges."""

from __future__ import annotations

import pytest

from edgekd.benchmark.budgets import judge, top1_interval
from edgekd.targets import load_target


def _accuracy(top1: float, required: float, n: int | None):
    row = {"top1": top1, "runtime": "openvino"}
    return next(b for b in judge(load_target("intel-cpu"), row, required, True, n) if b["name"].startswith("acc"))


def test_the_interval_is_wilsons_and_narrows_with_more_images():
    lo, hi = top1_interval(0.6339, 713)  # 452 of 713 right
    assert lo == pytest.approx(0.5979, abs=5e-4) and hi == pytest.approx(0.6685, abs=5e-4)
    lo2, hi2 = top1_interval(0.6339, 7130)
    assert lo < lo2 < 0.6339 < hi2 < hi
    assert top1_interval(1.0, 50)[1] == pytest.approx(1.0) and top1_interval(0.0, 50)[0] == pytest.approx(0.0)


def test_a_miss_inside_the_interval_says_the_split_cannot_tell_and_stays_a_fail():
    near = _accuracy(0.6339, 0.65, 713)
    assert near["verdict"] == "fail"  # the rule is the rule; the words say how much it means
    assert near["value_text"] == "63.39% (95% CI 59.8%-66.8%, 713 images)"
    assert "too small to tell" in near["basis"] and near["images"] == 713
    far = _accuracy(0.6339, 0.69, 713)
    assert far["verdict"] == "fail" and "too small" not in far["basis"]
    assert _accuracy(0.70, 0.69, 713)["verdict"] == "pass" and "too small" in _accuracy(0.70, 0.69, 713)["basis"]
    bare = _accuracy(0.6339, 0.65, None)  # no image count: the check as before
    assert bare["value_text"] == "63.39%" and "interval_95" not in bare
