"""Role -> artifact names and precisions: one definition (edgekd.model_roles) for every stage and reader."""

from __future__ import annotations

from edgekd.model_roles import ROLE_PRECISION, ROLES, export_name, student_role


def test_every_role_has_a_precision_and_an_export_name() -> None:
    assert set(ROLE_PRECISION) == set(ROLES)
    assert [export_name(r) for r in ROLES] == ["teacher_fp32", "student_fp32", "student_int8_qdq"]


def test_student_role_follows_the_precision() -> None:
    assert student_role("int8") == "student_int8"
    assert student_role("fp32") == "student_fp32"
    assert student_role("fp16") == "student_fp32"
    assert ROLE_PRECISION[student_role("int8")] == "int8"
