"""The inbox's rows: the open steps of a programme or a monthly cycle, as the database projection holds them.

One pure function per workflow turns its status into rows. The activity that records a change writes them
(activities/db.py), and `techconnect projection check` builds the same rows from each workflow's
`get_status` query to compare: both sides use these functions, so they can only differ by what was written.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

# Only for the annotations: a reader of the inbox (`step list`) needs OpenStep, not the workflows' status
# models, and starts without building them (issue 16: the whole command in under a second).
if TYPE_CHECKING:
    from domain.cycle import CycleStatus
    from domain.program import ProgramStatus
    from domain.step_inputs import StepState

# The inbox's page size (issue 16: a page of 50 with the total).
PAGE_SIZE = 50
# Phases whose workflow has ended (Phase.closed, Phase.refused): no open steps, not in the list of programmes.
ENDED_PHASES = ("closed", "refused")


class OpenStep(BaseModel):
    """One step a person can complete now, across programmes and cycles."""

    workflow_id: str  # whose Update completes it
    step: str
    customer_id: str
    technical_lead_id: str
    period: int
    month: int | None = None  # the cycle's first month; None for the programme's own steps
    title: str
    rule: str
    status: str  # open, or missed (completed late, in order)
    due_on: date | None = None
    due_at: datetime | None = None
    overdue: bool = False  # the step was escalated (D4): past its due time


def _row(st: StepState, workflow_id: str, customer_id: str, tl: str, period: int, month: int | None) -> OpenStep:
    return OpenStep(workflow_id=workflow_id, step=st.step, customer_id=customer_id, technical_lead_id=tl,
                    period=period, month=month, title=st.title, rule=st.rule, status=st.status.value,
                    due_on=st.due_on, due_at=st.due_at, overdue=st.escalated)


def programme_open_steps(status: ProgramStatus) -> list[OpenStep]:
    """The programme's own open steps (its cycles project theirs); none once it has ended."""
    if status.phase in ENDED_PHASES:
        return []
    return [_row(st, status.workflow_id, status.customer_id, status.technical_lead.id, status.period, None)
            for st in status.open_steps()]


def cycle_open_steps(status: CycleStatus) -> list[OpenStep]:
    """A monthly cycle's open steps, with the TL it reminds now (rule C7: a reassignment moves them)."""
    from domain.step_inputs import StepStatus  # loaded already wherever a cycle's status exists

    if status.done:
        return []
    return [_row(st, status.workflow_id, status.customer_id, status.technical_lead_id, status.period, status.month)
            for st in status.steps if st.status == StepStatus.open]


class ProjectedSteps(BaseModel):
    """What one workflow's projection write carries: all its open steps, replacing the previous ones."""

    workflow_id: str
    steps: list[OpenStep] = Field(default_factory=list)


class StepDifference(BaseModel):
    """One workflow whose projected open steps differ from its `get_status` (`techconnect projection check`)."""

    workflow_id: str
    customer_id: str
    missing: list[str] = Field(default_factory=list)  # open in the workflow, absent from the projection
    extra: list[str] = Field(default_factory=list)  # in the projection, not open in the workflow
    changed: list[str] = Field(default_factory=list)  # in both, with another due date, TL or overdue flag


def compare_steps(workflow_id: str, customer_id: str, expected: list[OpenStep],
                  projected: list[OpenStep]) -> StepDifference | None:
    """None when the projection holds exactly the workflow's open steps."""
    want = {s.step: s for s in expected}
    have = {s.step: s for s in projected}
    diff = StepDifference(
        workflow_id=workflow_id, customer_id=customer_id,
        missing=sorted(set(want) - set(have)), extra=sorted(set(have) - set(want)),
        changed=sorted(k for k in set(want) & set(have) if _key(want[k]) != _key(have[k])))
    return diff if diff.missing or diff.extra or diff.changed else None


def _key(s: OpenStep) -> tuple[object, ...]:
    return (s.technical_lead_id, s.status, s.due_on, s.due_at, s.overdue, s.title, s.rule, s.period, s.month)
