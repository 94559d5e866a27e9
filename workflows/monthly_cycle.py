"""MonthlyCycleWorkflow: one month's follow-up call and written report (D6, D7, A5, A6, C10).

Started by ProgramWorkflow on the first day of each month of the period, with the
deterministic ID `program-<customer>-p<period>-m<MM>`. The TL schedules the call
(an .ics invite goes to the contacts), records it held with notes; an activity drafts
the report from the database; the TL approves it; it is mailed and filed in the
workspace. The cycle then tells its programme by signal (which reaches the current
run even after the programme continued as new) and ends.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        CallInvite,
        DeadlineItem,
        DeadlineRequest,
        ExtraRecord,
        MailRequest,
        MonthlyReportRequest,
    )
    from domain.cycle import (
        ApproveReport,
        CycleCompleted,
        CycleInput,
        CycleResult,
        CycleStatus,
        CycleStepName,
        HoldCall,
        RecordExtraCall,
        ScheduleCall,
    )
    from domain.naming import SA_OPEN_STEPS, SA_PROGRAM_PHASE
    from domain.program import BillableExtra, BillableExtraKind, CompleteStepSignal, Rejection, StepState, StepStatus
    from workflows import activity_calls as act
    from workflows.signal_route import StepHandlers, rejection_recipient, run_step

# Versioned changes of the command sequence (`workflow.patched`), as in workflows/program.py.
PATCH_EXTRA_CALL_ONCE = "extra-call-once-per-day-and-agreement"

TITLES = {
    CycleStepName.schedule_call: "Schedule the monthly follow-up call",
    CycleStepName.hold_call: "Hold the follow-up call, record its notes",
    CycleStepName.approve_report: "Approve the monthly follow-up report",
}
RULES = {CycleStepName.schedule_call: "D6", CycleStepName.hold_call: "D6", CycleStepName.approve_report: "D7"}
ORDER = [CycleStepName.schedule_call, CycleStepName.hold_call, CycleStepName.approve_report]


@workflow.defn
class MonthlyCycleWorkflow:
    @workflow.init
    def __init__(self, input: CycleInput) -> None:
        self._input = input
        self._lock = asyncio.Lock()
        self._wakeup = False
        wid = workflow.info().workflow_id
        self._status = CycleStatus(
            workflow_id=wid, customer_id=input.customer_id, period=input.period, month=input.month,
            month_start=input.month_start, month_end=input.month_end,
            steps=[StepState(step=n.value, title=TITLES[n], rule=RULES[n], workflow_id=wid) for n in ORDER],
        )
        self._status.steps[0].status = StepStatus.open

    @property
    def _label(self) -> str:
        return self._input.month_start.strftime("%B %Y")

    @workflow.run
    async def run(self, input: CycleInput) -> CycleResult:
        p = input.policy
        first_of_next = input.month_end + timedelta(days=1)
        sched = await act.schedule_deadlines(
            DeadlineRequest(calendar=input.calendar, reminder_business_days=p.step_reminder_business_days, items=[
                DeadlineItem(key=CycleStepName.schedule_call.value, business_days_from=input.month_start,
                             business_days=p.call_schedule_business_days),
                DeadlineItem(key=CycleStepName.hold_call.value, due_on=input.month_end),
                DeadlineItem(key=CycleStepName.approve_report.value, business_days_from=first_of_next,
                             business_days=p.report_approval_business_days),
            ]),
            summary=f"Due dates for {self._label} (business days)",
        )
        for d in sched.items:
            st = self._step(d.key)
            st.due_on, st.due_at, st.remind_at = d.due_on, d.due_at, d.remind_at
        self._publish()

        while not self._status.done:
            async with self._lock:
                await self._process_due_events()
            next_at = self._next_event_at()
            self._wakeup = False
            try:
                if next_at is None:
                    await workflow.wait_condition(lambda: self._wakeup)
                else:
                    await workflow.wait_condition(
                        lambda: self._wakeup, timeout=max(next_at - workflow.now(), timedelta(seconds=1)),
                        timeout_summary=f"Next reminder or escalation at {next_at.isoformat()}",
                    )
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        s = self._status
        await workflow.get_external_workflow_handle(input.parent_workflow_id).signal(
            "cycle_completed",
            CycleCompleted(period=s.period, month=s.month, call_held_on=s.call_held_on,
                           report_document_id=s.report_document_id, extra_calls=s.extra_calls),
        )
        return CycleResult(month=s.month, call_held_on=s.call_held_on, report_document_id=s.report_document_id,
                           extra_calls=s.extra_calls)

    # ------------------------------------------------------------ helpers
    def _step(self, name: str) -> StepState:
        return next(st for st in self._status.steps if st.step == name)

    def _next_event_at(self) -> datetime | None:
        times = [t for st in self._status.steps if st.status == StepStatus.open
                 for t in ((st.remind_at if not st.reminded else None), (st.due_at if not st.escalated else None))
                 if t is not None]
        return min(times) if times else None

    def _is_stale(self, at: datetime) -> bool:
        """A date long gone when the cycle started (programme taken over late): no mail for it
        (docs/design.md "Past start dates")."""
        return workflow.now() - at > timedelta(days=self._input.policy.stale_after_days)

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
        self._publish()

    def _key(self, purpose: str) -> str:
        return f"{self._status.workflow_id}:{purpose}"

    async def _mail(self, to: list[str], template: str, purpose: str, context: dict[str, Any],
                    cc: list[str] | None = None, **kw: Any) -> None:
        i = self._input
        if i.stale:
            return
        try:
            await act.send_mail(
                MailRequest(idempotency_key=self._key(f"mail:{purpose}"), to=to, cc=cc or [], template=template,
                            customer_id=i.customer_id,
                            context={"customer_name": i.customer_name, "customer_id": i.customer_id,
                                     "portal_url": i.policy.portal_url, **context}, **kw),
                summary=f"Mail '{template}' to {', '.join(to)}",
            )
        except ActivityError as err:
            workflow.logger.warning("mail %s refused for good: %s", template, err.cause or err)

    def _complete(self, step: CycleStepName, by: str) -> None:
        st = self._check_open(step)
        now = workflow.now()
        st.status, st.done_at, st.done_by = StepStatus.done, now, by
        st.late = bool(st.due_at and now > st.due_at)
        idx = ORDER.index(step)
        if idx + 1 < len(ORDER):
            self._step(ORDER[idx + 1].value).status = StepStatus.open
        else:
            self._status.done = True
        self._wakeup = True

    def _check_open(self, step: CycleStepName) -> StepState:
        st = self._step(step.value)
        if st.status == StepStatus.done:
            raise ApplicationError(f"step {step.value} is already done", type="StepRefused", non_retryable=True)
        if st.status != StepStatus.open:
            before = ORDER[ORDER.index(step) - 1].value
            raise ApplicationError(f"step {step.value} is out of order: it waits for {before}",
                                   type="StepRefused", non_retryable=True)
        return st

    def _validate_open(self, step: CycleStepName) -> None:
        try:
            self._check_open(step)
        except ApplicationError as err:
            raise ValueError(err.message) from None

    def _publish(self) -> None:
        open_steps = [st.step for st in self._status.steps if st.status == StepStatus.open]
        workflow.upsert_search_attributes([
            SA_OPEN_STEPS.value_set(open_steps),
            SA_PROGRAM_PHASE.value_set("cycle-done" if self._status.done else "cycle"),
        ])
        lines = [f"Follow-up cycle {self._label} (period {self._input.period}, month {self._input.month})"]
        lines += [f"- [{'x' if st.status == StepStatus.done else ' '}] {st.title} (due {st.due_on})"
                  for st in self._status.steps]
        workflow.set_current_details("\n".join(lines))

    # ------------------------------------------------------------ Updates
    @workflow.query
    def get_status(self) -> CycleStatus:
        return self._status

    @workflow.update
    async def schedule_call(self, inp: ScheduleCall) -> CycleStatus:
        async with self._lock:
            i = self._input
            self._complete(CycleStepName.schedule_call, inp.by)
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
        self._validate_open(CycleStepName.schedule_call)
        if inp.call_at.tzinfo is None:
            raise ValueError("call_at needs a time zone offset (e.g. 2027-02-10T10:00:00+01:00)")

    @workflow.update
    async def hold_call(self, inp: HoldCall) -> CycleStatus:
        async with self._lock:
            i = self._input
            s = self._status
            self._complete(CycleStepName.hold_call, inp.by)
            s.call_held_on, s.call_notes = inp.held_on, inp.notes
            # rule D7/A6: the draft is generated from the database by an activity.
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
        self._validate_open(CycleStepName.hold_call)
        if inp.held_on < self._input.month_start - timedelta(days=31):
            raise ValueError(f"held_on {inp.held_on} is long before the month {self._label}")

    @workflow.update
    async def approve_report(self, inp: ApproveReport) -> CycleStatus:
        async with self._lock:
            i = self._input
            s = self._status
            self._complete(CycleStepName.approve_report, inp.by)
            await self._mail([c.email for c in i.contacts] or [i.technical_lead.email], "monthly_report",
                             "monthly-report", {"month_label": self._label, "summary": s.report_summary or "",
                                                "technical_lead": i.technical_lead.model_dump(mode="json")},
                             cc=[i.technical_lead.email], attach_document_id=s.report_document_id)
            self._publish()
            return s

    @approve_report.validator
    def _validate_approve_report(self, inp: ApproveReport) -> None:
        self._validate_open(CycleStepName.approve_report)

    @workflow.update
    async def record_extra_call(self, inp: RecordExtraCall) -> CycleStatus:
        """Rule C10: one call a month is included; a second one is a billable extra."""
        async with self._lock:
            i = self._input
            s = self._status
            key = self._extra_call_key(inp)
            # Two identical submissions racing past the validator (a double click): the second is refused
            # here, under the lock. Cycles started before this check replay without it.
            if workflow.patched(PATCH_EXTRA_CALL_ONCE) and key in s.extra_call_keys:
                raise ApplicationError(self._extra_call_twice(inp), type="StepRefused", non_retryable=True)
            s.extra_call_keys.append(key)
            s.extra_calls += 1
            extra = BillableExtra(kind=BillableExtraKind.extra_call, rule="C10",
                                  description=f"Extra follow-up call on {inp.held_on} ({self._label}): {inp.notes}",
                                  agreement_ref=inp.agreement_ref, recorded_at=workflow.now(), recorded_by=inp.by)
            await act.record_billable_extra(
                ExtraRecord(customer_id=i.customer_id, period=i.period, extra=extra,
                            idempotency_key=self._key(f"extra-call-{s.extra_calls}")),
                summary="Billable extra: second call this month (C10)",
            )
            return s

    @record_extra_call.validator
    def _validate_record_extra_call(self, inp: RecordExtraCall) -> None:
        if self._status.done:
            # The cycle is ending: an Update accepted now could land after the final
            # signal to the programme and be lost. The programme takes it instead.
            raise ValueError(f"rule C10: the {self._label} cycle is closed; record the extra call on the programme "
                             f"with record_billable_extra (kind extra_call)")
        if self._step(CycleStepName.hold_call.value).status != StepStatus.done:
            raise ValueError("rule C10: the month's included call has not been held yet; record it with hold_call")
        if self._extra_call_key(inp) in self._status.extra_call_keys:
            raise ValueError(self._extra_call_twice(inp))

    @staticmethod
    def _extra_call_key(inp: RecordExtraCall) -> str:
        return f"{inp.held_on.isoformat()} {inp.agreement_ref.strip()}"

    def _extra_call_twice(self, inp: RecordExtraCall) -> str:
        return (f"rule C10: an extra call held on {inp.held_on} under {inp.agreement_ref} is recorded already for "
                f"{self._label}; a second one that day needs its own agreement reference")

    # ------------------------------------------------------------- the signal route
    @workflow.signal
    async def complete_step(self, sig: CompleteStepSignal) -> None:
        """For tools that can only signal: the same models, validators and bodies as the Updates;
        a refusal is kept in the state (`get_status().rejections`) and mailed, never raised."""
        handlers: StepHandlers = {
            "schedule_call": (ScheduleCall, self._validate_schedule_call, self.schedule_call),
            "hold_call": (HoldCall, self._validate_hold_call, self.hold_call),
            "approve_report": (ApproveReport, self._validate_approve_report, self.approve_report),
            "record_extra_call": (RecordExtraCall, self._validate_record_extra_call, self.record_extra_call),
        }
        refusal = await run_step(handlers, sig.step, sig.by, sig.payload)
        if refusal is None:
            return
        async with self._lock:
            s = self._status
            s.rejections.append(Rejection(at=workflow.now(), step=sig.step, by=sig.by, reason=refusal))
            i = self._input
            to = [rejection_recipient(sig.by, i.technical_lead, i.policy)]
            await self._mail(to, "step_rejected", f"rejected:{len(s.rejections)}",
                             {"step": sig.step, "reason": refusal, "by": sig.by})
