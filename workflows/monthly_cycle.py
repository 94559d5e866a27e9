"""MonthlyCycleWorkflow: one month's follow-up call and written report (D6, D7, A5, A6, C10).

Started by ProgramWorkflow on the first day of each month of the period, with the
deterministic ID `program-<customer>-p<period>-m<MM>`; with another frequency agreed (C10), on the
first day of each cycle's first month, the cycle then covering its months (`month_start` to
`month_end`). The TL schedules the call (an .ics invite goes to the contacts), records it held
with notes; an activity drafts the report from the database; the TL approves it; it is mailed
and filed in the workspace. The cycle then tells its programme by signal (which reaches the
current run even after the programme continued as new) and ends.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow

# Passed through, the mixins and helpers too: shared by every run instead of copied into each cached run
# (they hold no module state; tests/test_architecture.py checks their sources for non-determinism).
with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        CallInvite,
        DeadlineItem,
        DeadlineRequest,
        ExtraRecord,
        MonthlyReportRequest,
    )
    from domain.cycle import (
        CycleCallHeld,
        CycleCompleted,
        CycleInput,
        CycleResult,
        CycleStatus,
        HoldCall,
        RecordExtraCall,
        RecordExtraReport,
        ScheduleCall,
    )
    from domain.due_dates import default_deadlines, with_agreed_call_day
    from domain.naming import SA_TECHNICAL_LEAD
    from domain.program import BillableExtra
    from domain.rules_cycle import (
        check_call_date,
        check_call_time,
        check_cycle_step_open,
        check_extra_call,
        check_extra_report,
        extra_call_key,
        extra_call_recorded,
        extra_report_key,
    )
    from domain.step_inputs import (
        BillableExtraKind,
        CompleteStepSignal,
        StepState,
        StepStatus,
        TechnicalLeadChanged,
    )
    from domain.steps import DueFrom, Workflow, tracked_steps
    from workflows import activity_calls as act
    from workflows.cycle_base import PATCH_CYCLE_PROJECTION, PATCH_UPSERT_CHANGES
    from workflows.cycle_report import CycleReport
    from workflows.signal_route import check_registry, keep_and_mail_rejection, run_step, step_handlers
    from workflows.updatable_sleep import UpdatableSleep
    from workflows.update_sequence import UpdateSequence, refuse, refuse_in_body

# Versioned changes of the command sequence (`workflow.patched`), as in workflows/program.py.
PATCH_EXTRA_CALL_ONCE = "extra-call-once-per-day-and-agreement"
# Rule D7: the report is drafted after the cycle's months end, not when the call is held; the TL may send it
# back; only the approved version reaches the workspace. Cycles started before keep drafting at the call.
PATCH_MONTH_END_REPORT = "month-end-report-draft"
# The schedule's item giving the instant the month-end draft is made (not a step).
REPORT_DRAFT_KEY = "report_draft"


@workflow.defn
class MonthlyCycleWorkflow(CycleReport):
    @workflow.init
    def __init__(self, input: CycleInput) -> None:
        self._input = input
        # No save in the sequence (the cycle's state lives in the workflow; `_step` writes the inbox projection)
        # and no wake-up: completing a step wakes the loop.
        self._updates = UpdateSequence()
        self._sleep = UpdatableSleep()
        wid = workflow.info().workflow_id
        self._status = CycleStatus(
            workflow_id=wid, customer_id=input.customer_id, period=input.period, month=input.month,
            month_start=input.month_start, month_end=input.month_end,
            steps=[StepState(step=st.name, title=st.title, rule=st.rule, workflow_id=wid)
                   for st in tracked_steps(Workflow.cycle)],
        )
        self._status.steps[0].status = StepStatus.open
        self._status.technical_lead_id = input.technical_lead.id
        self._projects = False
        self._projected = None
        self._project_lock = asyncio.Lock()

    @workflow.run
    async def run(self, input: CycleInput) -> CycleResult:
        p = input.policy
        first_of_next = input.month_end + timedelta(days=1)
        # Asked before the first command, so a run started before the change replays its recorded sequence.
        self._status.month_end_report = workflow.patched(PATCH_MONTH_END_REPORT)
        self._projects = workflow.patched(PATCH_CYCLE_PROJECTION)
        # Asked here too (answered the same in `_publish`): its marker shares the first workflow task's (one Action).
        workflow.patched(PATCH_UPSERT_CHANGES)
        items = default_deadlines(Workflow.cycle, {
            DueFrom.month_start: input.month_start, DueFrom.month_end: input.month_end,
            DueFrom.next_month: first_of_next}, p)
        # Rule D6/A2: a call day agreed in the kickoff minutes is when the call is due (None: the month's end).
        items = with_agreed_call_day(items, input.month_start, input.month_end, input.call_day_of_month)
        if self._status.month_end_report:
            # Rule D7: the draft covers the whole month: made at the first business hour after it (C5 calendar).
            items.append(DeadlineItem(key=REPORT_DRAFT_KEY, business_days_from=first_of_next, business_days=0))
        sched = await act.schedule_deadlines(
            DeadlineRequest(calendar=input.calendar, reminder_business_days=p.step_reminder_business_days,
                            items=items),
            summary=f"Due dates for {self._label} (business days)",
        )
        for d in sched.items:
            if d.key == REPORT_DRAFT_KEY:
                # A worker of the previous release answers without `starts_at`: the end of the month's first
                # business day then, rather than never.
                self._status.report_draft_at = d.starts_at or d.due_at
                continue
            st = self._step_state(d.key)
            st.due_on, st.due_at, st.remind_at = d.due_on, d.due_at, d.remind_at
        self._publish()
        await self._project()

        while not self._status.done:
            async with self._updates.lock:
                await self._process_due_events()
            next_at = self._next_event_at()
            # Cleared after the work here (the cycle always did): its Updates wake it under the lock.
            self._sleep.clear()
            await self._sleep.sleep_until(
                next_at, f"Next reminder or escalation at {next_at.isoformat()}" if next_at else "")
        await workflow.wait_condition(workflow.all_handlers_finished)
        s = self._status
        await self._tell_programme("cycle_completed", CycleCompleted(
            period=s.period, month=s.month, call_held_on=s.call_held_on, report_document_id=s.report_document_id,
            extra_calls=s.extra_calls, extra_reports=s.extra_reports))
        return CycleResult(month=s.month, call_held_on=s.call_held_on, report_document_id=s.report_document_id,
                           extra_calls=s.extra_calls, extra_reports=s.extra_reports)

    # ------------------------------------------------------------ helpers
    def _next_event_at(self) -> datetime | None:
        times = [t for st in self._status.steps if st.status == StepStatus.open
                 for t in ((st.remind_at if not st.reminded else None), (st.due_at if not st.escalated else None))
                 if t is not None]
        s = self._status
        if s.month_end_report and s.report_draft_at is not None and s.report_version == 0:
            times.append(s.report_draft_at)
        return min(times) if times else None

    async def _process_due_events(self) -> None:
        now = workflow.now()
        i = self._input
        for st in self._status.steps:
            if st.status != StepStatus.open:
                continue
            if st.remind_at and not st.reminded and now >= st.remind_at:
                st.reminded = True
                if not self._is_stale(st.remind_at):
                    await self._mail([i.technical_lead.email], "step_reminder", f"reminder:{st.step}", {
                        "step_title": f"{st.title} ({self._label})",
                        "due_on": st.due_on.isoformat() if st.due_on else None,
                        "technical_lead": i.technical_lead.model_dump(mode="json")})
            if st.due_at and not st.escalated and now >= st.due_at:
                st.escalated = True
                if self._is_stale(st.due_at):
                    continue  # a date long gone when the programme was taken over: no mail
                await self._mail([i.technical_lead.email], "step_escalation", f"escalation:{st.step}", {
                    "step_title": f"{st.title} ({self._label})", "due_on": st.due_on.isoformat() if st.due_on else None,
                    "technical_lead": i.technical_lead.model_dump(mode="json")},
                    cc=[i.policy.support_manager_mailbox])
        s = self._status
        if s.month_end_report and s.report_version == 0 and s.report_draft_at is not None and now >= s.report_draft_at:
            await self._month_ended()
        self._publish()
        await self._project()  # a step escalated (overdue), missed or opened

    # ------------------------------------------------------------ Updates
    @workflow.query
    def get_status(self) -> CycleStatus:
        return self._status

    @workflow.update
    async def schedule_call(self, inp: ScheduleCall) -> CycleStatus:
        async with self._step("schedule_call", inp.by):
            i = self._input
            self._status.call_at = inp.call_at
            # rule A5: the call reaches the contacts' calendars as an invite.
            invite = CallInvite(
                uid=f"{self._status.workflow_id}@techconnect", summary=f"TechConnect follow-up call, {self._label}",
                description=inp.agenda, starts_at=inp.call_at, duration_minutes=inp.duration_minutes,
                location=inp.dial_in, organizer_email=i.technical_lead.email,
                attendee_emails=[c.email for c in i.contacts],
            )
            await self._mail([c.email for c in i.contacts] or [i.technical_lead.email], "call_invite", "call-invite",
                             {"call_at": inp.call_at.isoformat(), "dial_in": inp.dial_in, "agenda": inp.agenda,
                              "month_label": self._label, "technical_lead": i.technical_lead.model_dump(mode="json")},
                             cc=[i.technical_lead.email], invite=invite)
            self._publish()
            return self._status

    @schedule_call.validator
    def _validate_schedule_call(self, inp: ScheduleCall) -> None:
        refuse(check_cycle_step_open(self._status, "schedule_call"))
        refuse(check_call_time(inp))

    @workflow.update
    async def hold_call(self, inp: HoldCall) -> CycleStatus:
        async with self._step("hold_call", inp.by) as s:
            i = self._input
            s.call_held_on, s.call_notes = inp.held_on, inp.notes
            if s.month_end_report:
                # Rule D7: the notes wait for the month-end draft, which counts the whole month; the programme
                # learns of the call now (its final report may come before this cycle completes).
                await self._tell_programme("cycle_call_held", CycleCallHeld(period=i.period, month=i.month,
                                                                           held_on=inp.held_on))
                self._publish()
                return s
            # rule D7/A6 (cycles started before month-end reports): the draft is generated at the call.
            draft = await act.generate_monthly_report(
                MonthlyReportRequest(customer_id=i.customer_id, customer_name=i.customer_name, period=i.period,
                                     month=i.month, month_start=i.month_start, month_end=i.month_end,
                                     call_held_on=inp.held_on, call_notes=inp.notes,
                                     idempotency_key=self._key("report-draft")),
                summary=f"Draft the follow-up report for {self._label}",
            )
            s.report_document_id, s.report_summary = draft.document_id, draft.summary
            self._publish()
            return s

    @hold_call.validator
    def _validate_hold_call(self, inp: HoldCall) -> None:
        refuse(check_cycle_step_open(self._status, "hold_call"))
        refuse(check_call_date(inp, self._input.month_start))

    @workflow.update
    async def record_extra_call(self, inp: RecordExtraCall) -> CycleStatus:
        """Rule C10: one call a month is included; a second one is a billable extra."""
        async with self._updates():
            i = self._input
            s = self._status
            key = extra_call_key(inp)
            # Two identical submissions racing past the validator (a double click): the second is refused
            # here, under the lock. Cycles started before this check replay without it.
            if workflow.patched(PATCH_EXTRA_CALL_ONCE) and key in s.extra_call_keys:
                refuse_in_body([extra_call_recorded(inp, i.month_start)])
            s.extra_call_keys.append(key)
            s.extra_calls += 1
            await self._bill_extra(BillableExtraKind.extra_call, inp.agreement_ref, inp.by,
                                   f"Extra follow-up call on {inp.held_on} ({self._label}): {inp.notes}",
                                   f"extra-call-{s.extra_calls}", "Billable extra: second call this month (C10)")
            return s

    async def _bill_extra(self, kind: BillableExtraKind, agreement_ref: str, by: str, description: str,
                          purpose: str, summary: str) -> None:
        """Rule C10: a call or report beyond the cycle's included one, recorded once per `purpose`."""
        i = self._input
        extra = BillableExtra(kind=kind, rule="C10", description=description, agreement_ref=agreement_ref,
                              recorded_at=workflow.now(), recorded_by=by)
        await act.record_billable_extra(
            ExtraRecord(customer_id=i.customer_id, period=i.period, extra=extra, idempotency_key=self._key(purpose)),
            summary=summary)

    @record_extra_call.validator
    def _validate_record_extra_call(self, inp: RecordExtraCall) -> None:
        refuse(check_extra_call(self._status, inp, self._input.month_start))

    @workflow.update
    async def record_extra_report(self, inp: RecordExtraReport) -> CycleStatus:
        """Rule C10: the cycle's report is included; another one is a billable extra, recorded once."""
        async with self._updates(lambda: check_extra_report(self._status, inp, self._input.month_start)):
            # The re-check under the lock refuses a second identical submission that raced past the validator
            # (no patch: no history recorded before this Update existed has it).
            s = self._status
            s.extra_report_keys.append(extra_report_key(inp))
            s.extra_reports += 1
            await self._bill_extra(BillableExtraKind.extra_report, inp.agreement_ref, inp.by,
                                   f"Extra follow-up report delivered on {inp.delivered_on} ({self._label}): "
                                   f"{inp.description}",
                                   f"extra-report-{s.extra_reports}",
                                   "Billable extra: a report beyond the cycle's included one (C10)")
            return s

    @record_extra_report.validator
    def _validate_record_extra_report(self, inp: RecordExtraReport) -> None:
        refuse(check_extra_report(self._status, inp, self._input.month_start))

    # ------------------------------------------------------------- the programme's new TL
    @workflow.signal
    async def technical_lead_changed(self, change: TechnicalLeadChanged) -> None:
        """Rule C7, sent by the programme: the new TL gets this month's reminders and escalations and
        finds the cycle in their inbox (the TechnicalLead search attribute)."""
        async with self._updates.lock:
            previous = self._input.technical_lead
            if self._status.done or previous.id == change.technical_lead.id:
                return
            self._input.technical_lead = change.technical_lead
            self._status.technical_lead_id = change.technical_lead.id
            self._status.technical_lead_changes.append(change.record(previous.id, workflow.now()))
            workflow.upsert_search_attributes([SA_TECHNICAL_LEAD.value_set(change.technical_lead.id)])
            await self._project()  # the steps move to the new TL's inbox

    # ------------------------------------------------------------- the signal route
    @workflow.signal
    async def complete_step(self, sig: CompleteStepSignal) -> None:
        """For tools that can only signal: the same models, validators and bodies as the Updates;
        a refusal is kept in the state (`get_status().rejections`) and mailed, never raised."""
        handlers = step_handlers(self, Workflow.cycle)
        refusal = await run_step(handlers, sig.step, sig.by, sig.payload)
        if refusal is None:
            return
        async with self._updates.lock:
            i = self._input
            await keep_and_mail_rejection(self._status.rejections, sig, refusal, i.technical_lead, i.policy,
                                          self._mail)


check_registry(MonthlyCycleWorkflow, Workflow.cycle)
