"""The month-end report of a cycle (rules D6, D7, A6): drafted after the cycle's months end, approved or sent
back by the TL, and only the approved version published and mailed."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.activities import MonthlyReportRequest, PublishReport
    from domain.cycle import ApproveReport, CycleCallHeld, CycleStatus, ReportReview, SendBackReport
    from domain.rules_cycle import check_approval_version, check_cycle_step_open, check_send_back
    from domain.step_inputs import StepStatus
    from workflows import activity_calls as act
    from workflows.cycle_base import CycleBase
    from workflows.update_sequence import refuse


class CycleReport(CycleBase):
    # ------------------------------------------------------------ the month-end report (D7, A6)
    async def _month_ended(self) -> None:
        """Rule D6/D7: the months are over. A call not held by now is missed (the TL hears of it, and
        the report says so); the draft covering the whole cycle is made and waits for the TL."""
        s, i = self._status, self._input
        if s.call_held_on is None and not s.no_call_held:
            s.no_call_held = True
            for name in ("schedule_call", "hold_call"):
                st = self._step_state(name)
                if st.status != StepStatus.done:
                    st.status = StepStatus.missed
            if s.report_draft_at is not None and not self._is_stale(s.report_draft_at):
                await self._mail([i.technical_lead.email], "step_escalation", "escalation:no-call-held", {
                    "step_title": f"Hold the follow-up call ({self._label}): no call was held, the month's report "
                                  f"says so",
                    "due_on": self._input.month_end.isoformat(),
                    "technical_lead": i.technical_lead.model_dump(mode="json")},
                    cc=[i.policy.support_manager_mailbox])
        if not await self._draft_report():
            return
        self._step_state("approve_report").status = StepStatus.open
        self._sleep.wake()

    async def _draft_report(self) -> bool:
        """One more version of the month-end draft, filed out of the customer's sight (D7). A draft that
        cannot be made (refused for good) is tried again an hour later; the cycle never fails on it."""
        s, i = self._status, self._input
        version = s.report_version + 1
        try:
            draft = await act.draft_monthly_report(
                MonthlyReportRequest(customer_id=i.customer_id, customer_name=i.customer_name, period=i.period,
                                     month=i.month, month_start=i.month_start, month_end=i.month_end,
                                     call_held_on=s.call_held_on, call_notes=s.call_notes,
                                     idempotency_key=self._key(f"report-draft-v{version}"),
                                     draft=True, version=version, months_ended=True, reviews=s.report_reviews),
                summary=f"Draft {version} of the follow-up report for {self._label}",
            )
        except ActivityError as err:
            workflow.logger.warning("report draft %s of %s refused: %s", version, self._label, err.cause or err)
            if s.report_version == 0 and s.report_draft_at is not None:
                s.report_draft_at = workflow.now() + timedelta(hours=1)
            return False
        s.report_version = version
        s.report_document_id, s.report_summary = draft.document_id, draft.summary
        return True

    @workflow.update
    async def approve_report(self, inp: ApproveReport) -> CycleStatus:
        async with self._step("approve_report", inp.by, lambda: check_approval_version(self._status, inp)) as s:
            i = self._input
            s.report_reviews.append(ReportReview(version=max(s.report_version, 1), decision="approved", by=inp.by,
                                                 at=workflow.now(), comments=inp.comments))
            if s.month_end_report and s.report_document_id is not None:
                # Rule D7: only the approved version reaches the customer's workspace and mail.
                await act.publish_report(
                    PublishReport(document_id=s.report_document_id, approved_by=inp.by, approved_at=workflow.now(),
                                  reviews=s.report_reviews),
                    summary=f"Publish version {s.report_version} of the report for {self._label}")
            await self._mail([c.email for c in i.contacts] or [i.technical_lead.email], "monthly_report",
                             "monthly-report", {"month_label": self._label, "summary": s.report_summary or "",
                                                "technical_lead": i.technical_lead.model_dump(mode="json")},
                             cc=[i.technical_lead.email], attach_document_id=s.report_document_id)
            self._publish()
            return s

    @approve_report.validator
    def _validate_approve_report(self, inp: ApproveReport) -> None:
        refuse(check_cycle_step_open(self._status, "approve_report"))
        refuse(check_approval_version(self._status, inp))

    @workflow.update
    async def send_back_report(self, inp: SendBackReport) -> CycleStatus:
        """Rule D7: the TL sends the draft back with comments; they are kept, and the next version is drafted
        from the database again (with the corrected call notes, when given)."""
        async with self._updates(lambda: check_send_back(self._status, inp, self._input.month_start)):
            s, i = self._status, self._input
            s.report_reviews.append(ReportReview(version=s.report_version, decision="sent_back", by=inp.by,
                                                 at=workflow.now(), comments=inp.comments))
            if inp.call_notes:
                s.call_notes = inp.call_notes
            if inp.held_on is not None:
                # Rule D6: the call took place, recorded after the month's steps were marked missed.
                s.call_held_on, s.no_call_held = inp.held_on, False
                hold = self._step_state("hold_call")
                hold.status, hold.done_at, hold.done_by, hold.late = StepStatus.done, workflow.now(), inp.by, True
                await self._tell_programme("cycle_call_held", CycleCallHeld(period=i.period, month=i.month,
                                                                           held_on=inp.held_on))
            await self._draft_report()
            self._publish()
            await self._project()  # the call recorded late: hold_call is done
            return s

    @send_back_report.validator
    def _validate_send_back_report(self, inp: SendBackReport) -> None:
        refuse(check_send_back(self._status, inp, self._input.month_start))

