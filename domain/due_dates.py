"""Default due dates of a workflow's tracked steps, derived from the step registry (domain/steps.py).

Pure: it says which date each step counts from and how many business days after it; the calendar
maths (holidays, business days) runs in the `schedule_deadlines` activity, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from domain.activities import DeadlineItem
from domain.policy import ProgramPolicy
from domain.steps import DueFrom, Workflow, tracked_steps


def default_deadlines(workflow: Workflow, anchors: Mapping[DueFrom, date], policy: ProgramPolicy) -> list[DeadlineItem]:
    """One `DeadlineItem` per tracked step of `workflow`, in the registry's order.

    `anchors` gives the dates the workflow knows (a programme its period start; a cycle its month's
    first and last day and the first of the next month). A step without `due_policy` is due on its
    anchor itself (the monthly call is held by the month's last day, D6)."""
    items: list[DeadlineItem] = []
    for st in tracked_steps(workflow):
        assert st.due_from is not None  # StepSpec refuses a tracked step without one
        start = anchors[st.due_from]
        if st.due_policy is None:
            items.append(DeadlineItem(key=st.name, due_on=start))
        else:
            items.append(DeadlineItem(key=st.name, business_days_from=start,
                                      business_days=getattr(policy, st.due_policy)))
    return items
