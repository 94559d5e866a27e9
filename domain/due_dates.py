"""Default due dates of a workflow's tracked steps, derived from the step registry (domain/steps.py).

Pure: it says which date each step counts from and how many business days after it; the calendar
maths (holidays, business days) runs in the `schedule_deadlines` activity, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from domain.activities import DeadlineItem
from domain.calendar import add_months
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


def call_day_in_month(month_start: date, month_end: date, day: int) -> date:
    """Rule D6/A2: the agreed call day (1..31) in the cycle's first month, which runs from `month_start` to
    the day before the same day a month later (a period may start mid-month). The day is taken in the
    calendar month it falls in, clamped to that month's last day (31 in February is the 28th or 29th); never
    after `month_end` (a period's last, shorter month)."""
    first_month_end = min(add_months(month_start, 1) - timedelta(days=1), month_end)
    on = _clamped(month_start.year, month_start.month, day)
    if on < month_start:  # already gone in the start's calendar month: the next calendar month's
        nxt = add_months(month_start.replace(day=1), 1)
        on = _clamped(nxt.year, nxt.month, day)
    return min(on, first_month_end)


def _clamped(year: int, month: int, day: int) -> date:
    last = (add_months(date(year, month, 1), 1) - timedelta(days=1)).day
    return date(year, month, min(day, last))


def with_agreed_call_day(items: list[DeadlineItem], month_start: date, month_end: date,
                         call_day_of_month: int | None) -> list[DeadlineItem]:
    """A cycle's deadlines with `hold_call` due on the agreed call day (D6/A2), or unchanged without one."""
    if call_day_of_month is None:
        return items
    on = call_day_in_month(month_start, month_end, call_day_of_month)
    return [DeadlineItem(key=i.key, due_on=on) if i.key == "hold_call" else i for i in items]
