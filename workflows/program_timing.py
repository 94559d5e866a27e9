"""The programme's timed events: step reminders and escalations, the monthly cycles started as
child workflows (D6, D7), the renewal notice (C14, C15), the non-renewal reminder (C16), and the
due dates of the steps (defaults in business days, or agreed at the kickoff, A2)."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain.activities import DeadlineItem, DeadlineRequest, DeadlineSchedule
    from domain.cycle import CycleInput
    from domain.due_dates import default_deadlines
    from domain.naming import SA_CUSTOMER_ID, SA_TECHNICAL_LEAD
    from domain.rules_cycle import cycle_bounds
    from domain.step_inputs import StepStatus
    from domain.steps import DueFrom, Workflow, spec
    from workflows import activity_calls as act
    from workflows.monthly_cycle import MonthlyCycleWorkflow

from workflows.program_base import iso
from workflows.program_renewal import ProgramRenewal


class ProgramTiming(ProgramRenewal):
    def _next_event_at(self) -> datetime:
        s = self._status
        assert s.plan is not None and s.renewal is not None
        candidates = [s.plan.period_end_at]
        for st in s.steps:
            if st.status == StepStatus.open:
                if not st.reminded and st.remind_at:
                    candidates.append(st.remind_at)
                if not st.escalated and st.due_at:
                    candidates.append(st.due_at)
        for c in s.cycles:
            if c.status == "scheduled":
                candidates.append(cycle_bounds(s.plan, c)[0])  # rule C10: its first month's start
        candidates += self._renewal_event_ats()
        now = workflow.now()
        return max(min(candidates), now + timedelta(seconds=1))

    async def _process_due_events(self) -> None:
        s = self._status
        assert s.plan is not None and s.renewal is not None
        now = workflow.now()
        for st in s.steps:
            if st.status not in (StepStatus.open, StepStatus.waiting):
                continue
            # A deadline long gone (programme taken over late, or a step left waiting behind an
            # overdue one) is missed, open or not, and mailed about never (docs/design.md "Past start dates").
            if st.due_at and not st.escalated and now >= st.due_at and self._is_stale(st.due_at):
                st.status, st.reminded, st.escalated = StepStatus.missed, True, True
                self._dirty = True
                continue
            if st.status != StepStatus.open:
                continue
            if st.remind_at and not st.reminded and now >= st.remind_at:
                st.reminded = True
                self._dirty = True
                if not self._is_stale(st.remind_at):
                    await self._mail(
                        [s.technical_lead.email], "step_reminder", f"reminder:{st.step}:{st.due_on}",
                        {"step_title": st.title, "due_on": iso(st.due_on),
                         "technical_lead": s.technical_lead.model_dump(mode="json")},
                    )
            if st.due_at and not st.escalated and now >= st.due_at:
                st.escalated = True
                self._dirty = True
                await self._mail(
                    [s.technical_lead.email], "step_escalation", f"escalation:{st.step}:{st.due_on}",
                    {"step_title": st.title, "due_on": iso(st.due_on),
                     "technical_lead": s.technical_lead.model_dump(mode="json")},
                    cc=[self._input.policy.support_manager_mailbox, self._input.policy.ops_mailbox],
                )
        await self._start_due_cycles(now)
        await self._process_renewal_events(now)  # workflows/program_renewal.py (C14, C15, C16, E1)

    async def _start_due_cycles(self, now: datetime) -> None:
        """Rules D6, D7: one child workflow a month, from the month's first day; rule C10: one every
        `call_frequency_months` months when so agreed, its call and report covering all its months."""
        s = self._status
        assert s.plan is not None
        for c in s.cycles:
            at, month_end, next_start_at = cycle_bounds(s.plan, c)
            if c.status != "scheduled" or now < at:
                continue
            if now >= next_start_at and self._is_stale(next_start_at):
                c.status = "missed"  # the whole month was gone before the programme was taken over
                self._dirty = True
                continue
            await workflow.start_child_workflow(
                MonthlyCycleWorkflow.run,
                CycleInput(
                    customer_id=s.customer_id, customer_name=s.customer_name, parent_workflow_id=s.workflow_id,
                    period=s.period, month=c.month, month_start=c.starts_on, month_end=month_end, months=c.months,
                    call_day_of_month=s.call_day_of_month,  # rule D6/A2: agreed in the kickoff minutes, or None
                    calendar=s.calendar, technical_lead=s.technical_lead, contacts=s.contacts,
                    policy=self._input.policy,
                ),
                id=c.workflow_id,
                # The month's report is approved after the month ends, sometimes after the
                # period ends and this run continued as new: the cycle must outlive the run.
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"{s.customer_name}: follow-up call and report, period {s.period} month {c.month}"
                               + (f" to {c.month + c.months - 1} (C10)" if c.months > 1 else ""),
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(SA_CUSTOMER_ID, s.customer_id),
                    SearchAttributePair(SA_TECHNICAL_LEAD, s.technical_lead.id),
                ]),
            )
            c.status = "running"
            self._dirty = True

    # ---------------------------------------------------------------- deadlines
    async def _schedule_default_deadlines(self, local: bool = False) -> None:
        """Each tracked step's default due date, in business days from the period start (domain/steps.py);
        `local`: as a local activity (the enrolment's, docs/local-activities.md)."""
        s = self._status
        p = self._input.policy
        assert s.plan is not None
        start = s.plan.period_start
        items = default_deadlines(Workflow.program, {DueFrom.period_start: start}, p)
        await self._apply_deadlines(items, "Default step due dates (business days)", local=local)

    async def _apply_deadlines(self, items: list[DeadlineItem], summary: str, local: bool = False) -> None:
        sched = await (act.schedule_deadlines_local if local else act.schedule_deadlines)(
            DeadlineRequest(calendar=self._status.calendar, items=items,
                            reminder_business_days=self._input.policy.step_reminder_business_days),
            summary=summary,
        )
        self._apply_schedule(sched)

    def _apply_schedule(self, sched: DeadlineSchedule) -> None:
        """The due dates computed (by `schedule_deadlines`, or by `prepare_enrolment` for the defaults)."""
        for d in sched.items:
            st = self._status.step(d.key)
            if st is not None:
                st.due_on, st.due_at, st.remind_at = d.due_on, d.due_at, d.remind_at
                st.reminded = st.escalated = False
                if st.status == StepStatus.missed and not self._is_stale(d.due_at):
                    st.status = StepStatus.waiting  # a new agreed date (A2) revives a missed step
        self._open_ready_steps()

    def _open_ready_steps(self) -> None:
        done = {st.step for st in self._status.steps if st.status == StepStatus.done}
        for st in self._status.steps:
            if st.status == StepStatus.waiting and all(d in done for d in spec(st.step).waits_for):
                st.status = StepStatus.open
