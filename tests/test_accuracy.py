"""The accuracy requirement has one rule (edgekd.accuracy), shared by the qad and bench stages, `edgekd bench`
and a profile's accuracy defaults."""

from __future__ import annotations

import pytest

from edgekd.accuracy import AccuracyRequirement, required_top1
from edgekd.targets import AccuracyDefaults


@pytest.mark.parametrize(("floor", "drop", "teacher", "want"), [
    (None, 1.0, 0.90, 0.89),  # the drop alone
    (0.95, 1.0, 0.90, 0.95),  # the floor is stricter
    (0.50, 1.0, 0.90, 0.89),  # the drop is stricter
    (0.50, 1.0, None, 0.50),  # no teacher top-1: the floor alone
    (None, 1.0, None, None),  # nothing applies
    (None, None, 0.90, None),
])  # fmt: skip
def test_required_is_the_stricter_of_floor_and_drop(floor, drop, teacher, want) -> None:
    got = required_top1(floor, drop, teacher)
    assert got == pytest.approx(want) if want is not None else got is None
    req = AccuracyRequirement(floor=floor, max_drop_points=drop)
    assert req.required_or_none(teacher) == got
    if teacher is not None:
        assert req.required(teacher) == (0.0 if got is None else got)
    assert AccuracyDefaults(floor=floor, max_drop_points=drop).required_or_none(teacher) == got


def test_profile_defaults_have_the_run_option_fields() -> None:
    assert AccuracyDefaults().model_dump() == AccuracyRequirement().model_dump()
    with pytest.raises(ValueError):
        AccuracyRequirement(floor=1.5)
    with pytest.raises(ValueError):
        AccuracyDefaults(tolerance=1)
