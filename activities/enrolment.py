"""The enrolment's preparation: its check (a read) and its calendar maths, in one activity.

A new programme's first workflow task runs it as a local activity (workflows/program.py,
`enrolment-prepared-in-one-call`): one result wakes the run once, where the three calls it stands for
woke it three times. It only reads and computes, so running it again (a retry, a workflow task
retried after a worker died) gives the same answer; docs/local-activities.md.
"""

from __future__ import annotations

from temporalio import activity

from activities.calendar import CalendarActivities
from activities.db import DatabaseActivities
from domain.activities import DeadlineRequest, EnrolmentPreparation, PreparedEnrolment
from domain.due_dates import default_deadlines
from domain.steps import DueFrom, Workflow


class EnrolmentActivities:
    """Built in worker.py from the database and calendar activities whose calls it makes."""

    def __init__(self, database: DatabaseActivities, calendar: CalendarActivities) -> None:
        self._database = database
        self._calendar = calendar

    @activity.defn
    async def prepare_enrolment(self, request: EnrolmentPreparation) -> PreparedEnrolment:
        """Rules E1, C2, C4 (the check); C5, C14, C16 (the plan); the steps' default due dates in business days."""
        check = await self._database.check_enrolment(request.check)
        if check.violations:
            return PreparedEnrolment(check=check)
        plan = await self._calendar.plan_period(request.plan)
        # The same items the workflow computed itself before the patch (domain/due_dates.py).
        items = default_deadlines(Workflow.program, {DueFrom.period_start: plan.period_start}, request.plan.policy)
        deadlines = await self._calendar.schedule_deadlines(DeadlineRequest(
            calendar=request.plan.calendar, items=items, reminder_business_days=request.reminder_business_days))
        return PreparedEnrolment(check=check, plan=plan, default_deadlines=deadlines)
