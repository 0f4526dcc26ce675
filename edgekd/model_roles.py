"""The models a run ships, by role, their precision, and the artifact names each stage gives them.

One place for these facts, read by the compile, bench and report stages, `edgekd bench` / `gate`
(edgekd.artifacts), the bundle and the HTML report. Data roles (train / val / test) are edgekd.data.roles.
"""

from __future__ import annotations

ROLES = ("teacher_fp32", "student_fp32", "student_int8")
ROLE_PRECISION = {"teacher_fp32": "fp32", "student_fp32": "fp32", "student_int8": "int8"}


def export_name(role: str) -> str:
    """The export stage's ONNX artifact of a role: the INT8 student is its QDQ graph, `student_int8_qdq`."""
    return "student_int8_qdq" if role == "student_int8" else role


def student_role(precision: str) -> str:
    """The student role that runs at `precision`: the final artifact of a target of that precision, or the role
    of a single model file whose graph is (int8) or is not quantized."""
    return "student_int8" if precision == "int8" else "student_fp32"
