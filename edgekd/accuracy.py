"""The accuracy requirement: the top-1 the final INT8 artifact must reach.

A run option (DECISIONS: accuracy requirements are run options whose defaults a profile may set): the
stricter of an absolute floor and the fine-tuned teacher's top-1 less an allowed drop in points. The qad stage
uses it to pick a fallback, the bench stage and `edgekd bench` to judge; a profile's `accuracy:` block
(edgekd.targets.AccuracyDefaults) has the same two fields and supplies the defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def required_top1(floor: float | None, max_drop_points: float | None, teacher_top1: float | None) -> float | None:
    """The stricter (larger) of `floor` and `teacher_top1 - max_drop_points / 100`; None when neither applies
    (no floor, and no drop or no teacher top-1)."""
    needs = [floor] if floor is not None else []
    if max_drop_points is not None and teacher_top1 is not None:
        needs.append(teacher_top1 - max_drop_points / 100)
    return max(needs) if needs else None


class AccuracyRequirement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_drop_points: float | None = Field(default=1.0, ge=0)  # vs the fine-tuned teacher, top-1 points
    floor: float | None = Field(default=None, ge=0, le=1)  # absolute top-1

    def required(self, teacher_top1: float) -> float:
        """The top-1 the INT8 artifact must reach: the stricter of the absolute floor and the drop (0 if none)."""
        need = self.required_or_none(teacher_top1)
        return 0.0 if need is None else need

    def required_or_none(self, teacher_top1: float | None) -> float | None:
        """As `required`, but None when nothing is required (or only a drop, and the teacher's top-1 is unknown)."""
        return required_top1(self.floor, self.max_drop_points, teacher_top1)
