"""Inputs and results of the bench's trivial workflows: one pydantic model in, one out (docs/design.md).

Imported through `workflow.unsafe.imports_passed_through()`, like `domain/` for the real
workflows, so the sandbox does not rebuild these classes for every run.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class NoopInput(BaseModel):
    label: str = ""


class NoopResult(BaseModel):
    label: str = ""


class ShapeInput(BaseModel):
    """`BenchShapeWorkflow`: how many local activities its first workflow task runs before its one activity."""

    label: str = ""
    local_activities: int = Field(ge=0, le=10)


class TimerInput(BaseModel):
    """Sleep until `until` (an aware instant), then complete."""

    until: datetime


class TimerResult(BaseModel):
    fired_at: datetime
