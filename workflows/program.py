"""ProgramWorkflow: one customer's TechConnect programme, one run per period.

The run checks enrolment (E1, C2, C4), plans the period on the programme calendar
(C5, C14, C16), provisions the workspace (D10/A9), then waits for the Technical
Lead's steps (D4, D5, D8, D9), starts one child workflow a month (D6, D7), sends
reminders and escalations, the renewal notice (C14, C15) and the non-renewal
reminder (C16), and at the period end either continues as new into the next period
(maintenance re-checked, E1) or closes.

Every human step is an Update with a validator: a refused step leaves no event in
history. `complete_step` is the same as a Signal for tools that can only signal; a
refused signal is kept as a rejection and mailed, never failing the workflow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, SearchAttributeUpdate, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        AnalysisRequest,
        AuditEntry,
        CloseWorkspace,
        DeadlineItem,
        DeadlineRequest,
        EnrolmentCheckRequest,
        ExtraRecord,
        FileDocumentRequest,
        FinalReportRequest,
        MailRequest,
        PlanPeriodRequest,
        ProjectionUpdate,
        RegisterProgramme,
    )
    from domain.cycle import CycleCompleted, CycleInput
    from domain.errors import RuleRefused, RuleViolation
    from domain.inventory import check_site_inventory
    from domain.money import Money, check_renewal_price, raised_price
    from domain.naming import (
        SA_CUSTOMER_ID,
        SA_NON_RENEWAL_DEADLINE,
        SA_OPEN_STEPS,
        SA_PERIOD_END,
        SA_PROGRAM_PHASE,
        SA_TECHNICAL_LEAD,
        monthly_cycle_workflow_id,
    )
    from domain.program import (
        EXTRA_RULES,
        STEP_DEPENDS_ON,
        STEP_RULES,
        STEP_TITLES,
        AddContact,
        AddFindings,
        BillableExtra,
        BillableExtraKind,
        CompleteKickoff,
        CompleteStepSignal,
        CycleSummary,
        DeliverCommunicationPlan,
        GiveNonRenewalNotice,
        NonRenewal,
        Phase,
        PresentConfigurationAnalysis,
        ProgramInput,
        ProgramResult,
        ProgramStatus,
        ProposeRenewalPrice,
        ReassignTechnicalLead,
        RecordBillableExtra,
        RecordInvoicePaid,
        Rejection,
        RenewalState,
        ScheduleKickoff,
        StepName,
        StepState,
        StepStatus,
        SubmitSiteInventory,
        agenda_not_covered,
        check_billable_extra,
        check_kickoff_agenda,
    )
    from workflows import activity_calls as act
    from workflows.monthly_cycle import MonthlyCycleWorkflow
    from workflows.signal_route import StepHandlers, rejection_recipient, run_step

# Versioned changes of the command sequence (`workflow.patched`): a run started before the change
# replays on the old path. Remove a patch (workflow.deprecate_patch, then nothing) only once no run
# started before it is open or in the replay histories (tests/test_patching.py).
PATCH_SAVE_BEFORE_WELCOME = "save-state-before-welcome-mail"
# Rule C1: each additional system agreed at enrolment is recorded as a billable extra of the period.
PATCH_BILL_ADDITIONAL_SYSTEMS = "bill-additional-systems-at-enrolment"
# Rules A2, A7, C11, C3 checked on a step's payload (`_rule_checks`). Update validators never run on
# replay; the `complete_step` signal route runs them in its handler, so it checks only when patched.
PATCH_STEP_RULE_CHECKS = "step-rule-checks-a2-a7-c11-c3"
RULE_CHECKED_STEPS = {"complete_kickoff", "submit_site_inventory", "update_site_inventory", "record_billable_extra"}

DELIVERABLES = [
    {"id": "D1", "title": "Priority call handling", "frequency": "continuous"},
    {"id": "D2", "title": "Dedicated Technical Lead for problem resolution", "frequency": "continuous"},
    {"id": "D3", "title": "Problem management and escalation", "frequency": "continuous"},
    {"id": "D4", "title": "Programme planning and review meeting", "frequency": "once a period"},
    {"id": "D5", "title": "Support programme / communication plan document", "frequency": "once a period"},
    {"id": "D6", "title": "Follow-up calls", "frequency": "monthly"},
    {"id": "D7", "title": "Written follow-up reports", "frequency": "monthly"},
    {"id": "D8", "title": "Site inventory document", "frequency": "once a period, with updates"},
    {"id": "D9", "title": "Configuration analysis", "frequency": "once a period"},
    {"id": "D10", "title": "Private TechConnect workspace", "frequency": "active for the whole period"},
]


def _iso(d: date | datetime | None) -> str | None:
    return d.isoformat() if d else None


@workflow.defn
class ProgramWorkflow:
    @workflow.init
    def __init__(self, input: ProgramInput) -> None:
        e = input.enrolment
        self._input = input
        self._lock = asyncio.Lock()
        self._wakeup = False
        self._dirty = False
        self._audit: list[AuditEntry] = []
        self._subscription_contacts = 0
        self._period_over = False
        self._rule_checks_off = False  # only while a pre-patch `complete_step` signal's validator replays
        self._previous_period_cycles: list[CycleCompleted] = []
        self._status = ProgramStatus(
            customer_id=e.customer.id,
            customer_name=e.customer.name,
            workflow_id=workflow.info().workflow_id,
            period=input.period,
            phase=Phase.enrolling,
            calendar=e.calendar,
            technical_lead=e.technical_lead,
            technical_lead_history=[e.technical_lead.id],
            contacts=e.contacts(),
            handbook_version=input.policy.handbook_version,
            annual_fee=e.annual_fee,
            inventory=input.inventory,
            inventory_version=input.inventory_version,
        )

    # ------------------------------------------------------------------ main run
    @workflow.run
    async def run(self, input: ProgramInput) -> ProgramResult:
        s = self._status
        e = input.enrolment
        policy = input.policy
        check = await act.check_enrolment(
            EnrolmentCheckRequest(enrolment=e, policy=policy, period=input.period),
            summary=f"Enrolment check, period {input.period} (E1, C2, C4)",
        )
        if check.violations:
            # A refused enrolment is a person's mistake, not a crash: the run completes
            # with outcome "refused" and the rule messages, readable in the UI.
            s.phase = Phase.refused
            s.refusal = check.violations
            s.outcome = "refused: " + "; ".join(str(v) for v in check.violations)
            self._publish()
            return ProgramResult(customer_id=s.customer_id, period=s.period, outcome="refused",
                                 refusal=check.violations)
        self._subscription_contacts = check.subscription.contact_count if check.subscription else 0
        # rule E2: buying or using the services means accepting the handbook.
        s.handbook_accepted_at = workflow.now()

        plan = await act.plan_period(
            PlanPeriodRequest(calendar=e.calendar, period=input.period, period_start=e.period_start,
                              term_months=e.term_months, policy=policy),
            summary="Plan the period on the programme calendar (C5, C14, C16)",
        )
        s.plan = plan
        s.renewal = RenewalState(
            notice_on=plan.renewal_notice_on,
            non_renewal_deadline=plan.non_renewal_deadline,
            non_renewal_deadline_end_at=plan.non_renewal_deadline_end_at,
            reminder_on=plan.non_renewal_reminder_on,
        )
        s.cycles = [
            CycleSummary(month=i + 1, starts_on=d,
                         workflow_id=monthly_cycle_workflow_id(s.customer_id, s.period, i + 1))
            for i, d in enumerate(plan.month_starts)
        ]
        s.steps = [
            StepState(step=n.value, title=STEP_TITLES[n], rule=STEP_RULES[n], workflow_id=s.workflow_id)
            for n in StepName
        ]
        if input.inventory is not None:
            # The inventory is "updatable all period" (D8) and carries into the next one;
            # the new period still asks for a reviewed submission.
            s.inventory = input.inventory
        s.extras = list(input.extras_carried)
        await self._schedule_default_deadlines()
        self._open_ready_steps()
        s.phase = Phase.onboarding

        ws = await act.register_programme(
            RegisterProgramme(status=s, enrolment=e), summary="Register programme and provision workspace (D10, A9)"
        )
        s.workspace_id = ws.workspace_id
        self._record("programme_started", input.started_by, {"period": s.period})
        if e.additional_systems and workflow.patched(PATCH_BILL_ADDITIONAL_SYSTEMS):
            # rules C1, C11 (C3: the enrolment check refused them without an agreement): each additional
            # system, its support, site inventory and configuration analysis, is a billable extra.
            for system in e.additional_systems:
                await self._add_extra(RecordBillableExtra(
                    by=input.started_by, kind=BillableExtraKind.additional_system,
                    agreement_ref=e.additional_systems_agreement_ref or "",
                    description=f"Additional production system {system} (C1), with its site inventory and "
                                f"configuration analysis (C11), period {s.period}"))
        if workflow.patched(PATCH_SAVE_BEFORE_WELCOME):
            # The start (workspace id, audit entry) reaches the system of record before any mail:
            # an SMTP outage then delays only the mails, not what the portal and support staff see.
            await self._save()
        await self._file(
            "welcome", "welcome", f"Welcome to TechConnect, period {s.period}",
            {"period_start": _iso(plan.period_start), "period_end": _iso(plan.period_end),
             "technical_lead": s.technical_lead.model_dump(mode="json"),
             "contacts": [c.model_dump(mode="json") for c in s.contacts],
             "products": [p.model_dump(mode="json") for p in e.products],
             "handbook_version": s.handbook_version, "deliverables": DELIVERABLES},
        )
        await self._mail_contacts("welcome", "welcome", {
            "period_start": _iso(plan.period_start), "period_end": _iso(plan.period_end),
            "technical_lead": s.technical_lead.model_dump(mode="json"), "handbook_version": s.handbook_version,
            "workspace_url": f"{policy.portal_url}/workspace/{s.customer_id}", "deliverables": DELIVERABLES,
        })
        await self._mail_tl_assignment("tl_assignment")
        await self._save()

        while True:
            # Reset before the work, not after it: an Update or signal that lands while
            # `_save` awaits its activity (outside the lock) sets it again and is not lost.
            self._wakeup = False
            async with self._lock:
                await self._process_due_events()
            if self._dirty:
                await self._save()
            now = workflow.now()
            if now >= plan.period_end_at:
                # From here on validators refuse: an Update accepted while the run ends
                # (continue-as-new or close) would be dropped with it.
                self._period_over = True
                break
            next_at = self._next_event_at()
            try:
                await workflow.wait_condition(
                    lambda: self._wakeup, timeout=next_at - now,
                    timeout_summary=f"Next programme event at {next_at.isoformat()}",
                )
            except TimeoutError:
                pass

        # Let in-flight Updates finish before the run ends (Temporal would warn and drop them).
        await workflow.wait_condition(workflow.all_handlers_finished)
        return await self._end_of_period()

    # -------------------------------------------------------- period end / renewal
    async def _end_of_period(self) -> ProgramResult:
        s = self._status
        e = self._input.enrolment
        assert s.plan is not None and s.renewal is not None
        if s.renewal.non_renewal is not None:
            nr = s.renewal.non_renewal
            return await self._close(f"non-renewal notice from {nr.party} received on {nr.received_on} (C16)")
        next_start = s.plan.period_end + timedelta(days=1)
        next_fee = s.renewal.next_price or self._default_next_price()
        next_enrolment = e.model_copy(update={
            "period_start": next_start, "annual_fee": next_fee, "technical_lead": s.technical_lead,
            "primary_contact": s.contacts[0] if s.contacts and e.primary_contact else e.primary_contact,
            "additional_contacts": s.contacts[1:] if e.primary_contact else s.contacts,
        })
        check = await act.check_enrolment(
            EnrolmentCheckRequest(enrolment=next_enrolment, policy=self._input.policy, period=s.period + 1),
            summary=f"Maintenance re-check for period {s.period + 1} (E1)",
        )
        if check.violations:
            return await self._close("not renewed: " + "; ".join(str(v) for v in check.violations))
        s.outcome = f"renewed into period {s.period + 1}"
        self._record("programme_renewed", "system", {"next_period": s.period + 1, "fee": str(next_fee)})
        await self._save()
        # One run per period keeps each history small however many years pass.
        workflow.continue_as_new(ProgramInput(
            enrolment=next_enrolment, policy=self._input.policy, period=s.period + 1, started_by="renewal",
            inventory=s.inventory, inventory_version=s.inventory_version,
        ))

    async def _close(self, reason: str) -> ProgramResult:
        s = self._status
        assert s.plan is not None
        s.phase = Phase.closing
        self._publish()
        await act.generate_final_report(
            FinalReportRequest(status=s, idempotency_key=self._key("final-report")),
            summary="Generate the final report",
        )
        await self._mail_contacts("programme_closed", "closed", {"period_end": _iso(s.plan.period_end),
                                                                  "reason": reason})
        await act.close_workspace(CloseWorkspace(customer_id=s.customer_id, period=s.period, reason=reason),
                                  summary="Archive the workspace, revoke contacts' access (A9)")
        s.phase = Phase.closed
        s.outcome = f"closed: {reason}"
        self._record("programme_closed", "system", {"reason": reason})
        await self._save()
        return ProgramResult(customer_id=s.customer_id, period=s.period, outcome=s.outcome)

    def _default_next_price(self) -> Money:
        pct = self._input.enrolment.renewal_price_increase_percent
        percent = Decimal(str(pct)) if pct is not None else self._input.policy.default_price_increase_percent
        return raised_price(self._status.annual_fee, percent)

    # ------------------------------------------------------------- timed events
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
        for c, at in zip(s.cycles, s.plan.month_start_ats, strict=True):
            if c.status == "scheduled":
                candidates.append(at)
        if not s.renewal.notice_sent:
            candidates.append(s.plan.renewal_notice_at)
        if not s.renewal.reminder_sent:
            candidates.append(s.plan.non_renewal_reminder_at)
        now = workflow.now()
        return max(min(candidates), now + timedelta(seconds=1))

    def _is_stale(self, at: datetime) -> bool:
        """A date long gone when the programme was taken over: no mail for it (docs/design.md "Past start dates")."""
        return workflow.now() - at > timedelta(days=self._input.policy.stale_after_days)

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
                        {"step_title": st.title, "due_on": _iso(st.due_on),
                         "technical_lead": s.technical_lead.model_dump(mode="json")},
                    )
            if st.due_at and not st.escalated and now >= st.due_at:
                st.escalated = True
                self._dirty = True
                await self._mail(
                    [s.technical_lead.email], "step_escalation", f"escalation:{st.step}:{st.due_on}",
                    {"step_title": st.title, "due_on": _iso(st.due_on),
                     "technical_lead": s.technical_lead.model_dump(mode="json")},
                    cc=[self._input.policy.support_manager_mailbox, self._input.policy.ops_mailbox],
                )
        for i, (c, at) in enumerate(zip(s.cycles, s.plan.month_start_ats, strict=True)):
            if c.status != "scheduled" or now < at:
                continue
            month_end = (s.plan.month_starts[i + 1] - timedelta(days=1)) if i + 1 < len(s.cycles) \
                else s.plan.period_end
            next_start_at = s.plan.month_start_ats[i + 1] if i + 1 < len(s.cycles) else s.plan.period_end_at
            if now >= next_start_at and self._is_stale(next_start_at):
                c.status = "missed"  # the whole month was gone before the programme was taken over
                self._dirty = True
                continue
            await workflow.start_child_workflow(
                MonthlyCycleWorkflow.run,
                CycleInput(
                    customer_id=s.customer_id, customer_name=s.customer_name, parent_workflow_id=s.workflow_id,
                    period=s.period, month=c.month, month_start=c.starts_on, month_end=month_end,
                    calendar=s.calendar, technical_lead=s.technical_lead, contacts=s.contacts,
                    policy=self._input.policy,
                ),
                id=c.workflow_id,
                # The month's report is approved after the month ends, sometimes after the
                # period ends and this run continued as new: the cycle must outlive the run.
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"{s.customer_name}: follow-up call and report, period {s.period} month {c.month}",
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(SA_CUSTOMER_ID, s.customer_id),
                    SearchAttributePair(SA_TECHNICAL_LEAD, s.technical_lead.id),
                ]),
            )
            c.status = "running"
            self._dirty = True
        if not s.renewal.notice_sent and now >= s.plan.renewal_notice_at:
            await self._send_renewal_notice(stale=self._is_stale(s.plan.renewal_notice_at))
        if not s.renewal.reminder_sent and now >= s.plan.non_renewal_reminder_at:
            s.renewal.reminder_sent = True
            self._dirty = True
            if s.renewal.non_renewal is None and not self._is_stale(s.plan.non_renewal_reminder_at):
                await self._mail_contacts("non_renewal_reminder", "non-renewal-reminder", {
                    "non_renewal_deadline": _iso(s.renewal.non_renewal_deadline),
                    "period_end": _iso(s.plan.period_end),
                })

    async def _send_renewal_notice(self, stale: bool) -> None:
        """Rule C14: renewal notice about 90 days before the end, with the next price (C15)."""
        s = self._status
        assert s.plan is not None and s.renewal is not None
        s.renewal.notice_sent = True
        if s.renewal.next_price is None:
            s.renewal.next_price = self._default_next_price()
        if s.phase in (Phase.onboarding, Phase.running):
            s.phase = Phase.renewal
        self._dirty = True
        if stale or s.renewal.non_renewal is not None:
            return
        ctx = {"period_end": _iso(s.plan.period_end), "current_price": s.annual_fee.model_dump(mode="json"),
               "next_price": s.renewal.next_price.model_dump(mode="json"),
               "non_renewal_deadline": _iso(s.renewal.non_renewal_deadline)}
        doc = await self._file("renewal_notice", "renewal_notice", f"Renewal notice, period {s.period + 1}", ctx)
        await self._mail_contacts("renewal_notice", "renewal-notice", ctx, cc=[self._input.policy.ops_mailbox],
                                  attach_document_id=doc)

    # ---------------------------------------------------------------- deadlines
    async def _schedule_default_deadlines(self) -> None:
        s = self._status
        p = self._input.policy
        assert s.plan is not None
        start = s.plan.period_start
        days = {
            StepName.schedule_kickoff: p.kickoff_schedule_business_days,
            StepName.complete_kickoff: p.kickoff_held_business_days,
            StepName.deliver_communication_plan: p.communication_plan_business_days,
            StepName.submit_site_inventory: p.site_inventory_business_days,
            StepName.add_findings: p.configuration_analysis_business_days,
            StepName.present_configuration_analysis: p.configuration_analysis_business_days,
        }
        await self._apply_deadlines([DeadlineItem(key=n.value, business_days_from=start, business_days=d)
                                     for n, d in days.items()], "Default step due dates (business days)")

    async def _apply_deadlines(self, items: list[DeadlineItem], summary: str) -> None:
        sched = await act.schedule_deadlines(
            DeadlineRequest(calendar=self._status.calendar, items=items,
                            reminder_business_days=self._input.policy.step_reminder_business_days),
            summary=summary,
        )
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
            if st.status == StepStatus.waiting and all(d.value in done for d in STEP_DEPENDS_ON[StepName(st.step)]):
                st.status = StepStatus.open

    # ------------------------------------------------------------ step helpers
    def _check_open(self, step: StepName) -> StepState:
        s = self._status
        if self._period_over:
            raise ValueError(f"step {step.value} refused: period {s.period} has ended")
        # A programme closing after a non-renewal notice still runs to its period end (C16).
        if s.phase in (Phase.enrolling, Phase.refused, Phase.closed):
            raise ValueError(f"step {step.value} refused: the programme is {s.phase.value}")
        st = s.step(step.value)
        if st is None:
            raise ValueError(f"unknown step {step.value}")
        if st.status == StepStatus.done:
            raise ValueError(f"step {step.value} is already done (by {st.done_by} at {_iso(st.done_at)})")
        waiting_for = [d.value for d in STEP_DEPENDS_ON[step]
                       if (dep := s.step(d.value)) and dep.status != StepStatus.done]
        # A missed step may still be done late, but in order, like any other.
        if st.status == StepStatus.waiting or (st.status == StepStatus.missed and waiting_for):
            raise ValueError(f"step {step.value} is out of order: it waits for {', '.join(waiting_for)}")
        return st

    def _check_live(self) -> None:
        if self._period_over:
            raise ValueError(f"refused: period {self._status.period} has ended")
        if self._status.phase in (Phase.enrolling, Phase.refused, Phase.closed):
            raise ValueError(f"refused: the programme is {self._status.phase.value}")

    def _complete(self, step: StepName, by: str, via: str = "temporal") -> None:
        # Re-checked under the lock: two Updates for one step may both pass their
        # validators before either runs. ApplicationError fails only the Update.
        try:
            st = self._check_open(step)
        except ValueError as err:
            raise ApplicationError(str(err), type="StepRefused", non_retryable=True) from None
        now = workflow.now()
        st.status, st.done_at, st.done_by = StepStatus.done, now, by
        st.late = bool(st.due_at and now > st.due_at)
        self._open_ready_steps()
        if self._status.phase == Phase.onboarding and all(
            x.status == StepStatus.done for x in self._status.steps
        ):
            self._status.phase = Phase.running
        self._record(step.value, by, {}, interface=via)

    def _record(self, action: str, by: str, detail: dict[str, Any], interface: str = "temporal") -> None:
        self._audit.append(AuditEntry(at=workflow.now(), actor=by, action=action,
                                      customer_id=self._status.customer_id, detail=detail, interface=interface))
        self._dirty = True
        self._wakeup = True

    def _key(self, purpose: str) -> str:
        # Stable across retries, replays and worker crashes: the outbox and the
        # documents table refuse a second row with the same key.
        return f"{self._status.workflow_id}:p{self._status.period}:{purpose}"

    # -------------------------------------------------------------- side effects
    async def _file(self, kind: str, template: str, title: str, context: dict[str, Any], version: int = 1,
                    purpose: str | None = None) -> int:
        s = self._status
        ref = await act.file_document(
            FileDocumentRequest(customer_id=s.customer_id, period=s.period, kind=kind,  # type: ignore[arg-type]
                                title=title, template=template, version=version,
                                context={"customer_name": s.customer_name, **context},
                                idempotency_key=self._key(f"doc:{purpose or kind}:v{version}")),
            summary=f"File '{title}' in the workspace",
        )
        return ref.document_id

    async def _mail(self, to: list[str], template: str, purpose: str, context: dict[str, Any],
                    cc: list[str] | None = None, attach_document_id: int | None = None) -> None:
        s = self._status
        try:
            await act.send_mail(
                MailRequest(idempotency_key=self._key(f"mail:{purpose}"), to=to, cc=cc or [], template=template,
                            customer_id=s.customer_id, attach_document_id=attach_document_id,
                            context={"customer_name": s.customer_name, "customer_id": s.customer_id,
                                     "portal_url": self._input.policy.portal_url, **context}),
                summary=f"Mail '{template}' to {', '.join(to)}",
            )
        except ActivityError as err:
            # SMTP refused the message for good (5xx): keep it visible, never fail the programme.
            s.mail_failures.append(f"{template} to {', '.join(to)}: {err.cause or err}")
            self._dirty = True

    async def _mail_contacts(self, template: str, purpose: str, context: dict[str, Any],
                             cc: list[str] | None = None, attach_document_id: int | None = None) -> None:
        to = [c.email for c in self._status.contacts] or [self._input.policy.ops_mailbox]
        await self._mail(to, template, purpose, context, cc=cc, attach_document_id=attach_document_id)

    async def _mail_tl_assignment(self, purpose: str) -> None:
        s = self._status
        assert s.plan is not None
        await self._mail([s.technical_lead.email], "tl_assignment", purpose, {
            "technical_lead": s.technical_lead.model_dump(mode="json"),
            "period_start": _iso(s.plan.period_start), "period_end": _iso(s.plan.period_end),
            "open_steps": [{"title": st.title, "due_on": _iso(st.due_on)}
                           for st in s.steps if st.status in (StepStatus.open, StepStatus.waiting)],
        })

    async def _save(self) -> None:
        self._dirty = False
        audit, self._audit = self._audit, []
        self._publish()
        await act.save_projection(ProjectionUpdate(status=self._status, audit=audit),
                                  summary=f"Save programme state ({self._status.phase.value})")

    def _publish(self) -> None:
        """Search attributes and current details: what admins see in the Temporal UI."""
        s = self._status
        updates: list[SearchAttributeUpdate[Any]] = [
            SA_CUSTOMER_ID.value_set(s.customer_id),
            SA_TECHNICAL_LEAD.value_set(s.technical_lead.id),
            SA_PROGRAM_PHASE.value_set(s.phase.value),
            SA_OPEN_STEPS.value_set([st.step for st in s.open_steps()]),
        ]
        if s.plan is not None:
            updates.append(SA_PERIOD_END.value_set(s.plan.period_end_at))
            updates.append(SA_NON_RENEWAL_DEADLINE.value_set(s.plan.non_renewal_deadline_end_at))
        workflow.upsert_search_attributes(updates)
        lines = [f"**{s.customer_name}** ({s.customer_id}), period {s.period}, phase **{s.phase.value}**",
                 f"TL: {s.technical_lead.name} ({s.technical_lead.id})"]
        if s.plan:
            lines.append(f"Period {s.plan.period_start} to {s.plan.period_end}; "
                         f"non-renewal deadline {s.plan.non_renewal_deadline}")
        for st in s.steps:
            mark = {"done": "x", "open": " ", "waiting": "-", "missed": "!"}[st.status.value]
            lines.append(f"- [{mark}] {st.title} (due {st.due_on})")
        done = sum(1 for c in s.cycles if c.status == "done")
        lines.append(f"Monthly cycles done: {done}/{len(s.cycles)}")
        if s.renewal and s.renewal.non_renewal:
            lines.append(f"Non-renewal notice from {s.renewal.non_renewal.party} on "
                         f"{s.renewal.non_renewal.received_on}")
        workflow.set_current_details("\n".join(lines))

    # ================================================================== Updates
    @workflow.query
    def get_status(self) -> ProgramStatus:
        return self._status

    @workflow.update
    async def schedule_kickoff(self, inp: ScheduleKickoff) -> ProgramStatus:
        async with self._lock:
            s = self._status
            self._complete(StepName.schedule_kickoff, inp.by, inp.via)
            await self._mail_contacts("kickoff_scheduled", "kickoff-scheduled", {
                "meeting_at": _iso(inp.meeting_at), "attendance": inp.attendance, "location": inp.location,
                "technical_lead": s.technical_lead.model_dump(mode="json"),
            }, cc=[s.technical_lead.email])
            return s

    @schedule_kickoff.validator
    def _validate_schedule_kickoff(self, inp: ScheduleKickoff) -> None:
        self._check_open(StepName.schedule_kickoff)
        if inp.meeting_at.tzinfo is None:
            raise ValueError("meeting_at needs a time zone offset (e.g. 2027-01-12T10:00:00+01:00)")

    @workflow.update
    async def complete_kickoff(self, inp: CompleteKickoff) -> ProgramStatus:
        async with self._lock:
            s = self._status
            self._complete(StepName.complete_kickoff, inp.by, inp.via)
            # rule A2: the meeting "may cover" the agenda; what it left out is flagged, in the minutes too.
            s.kickoff_agenda_not_covered = agenda_not_covered(inp.agenda_covered)
            await self._file("kickoff_minutes", "kickoff_minutes", "Planning and review meeting minutes",
                             inp.model_dump(mode="json") | {"agenda_not_covered": s.kickoff_agenda_not_covered})
            # rule D4/A2: the minutes fix the agreed dates of the other steps.
            agreed = inp.agreed_dates
            items = [DeadlineItem(key=k.value, due_on=d) for k, d in (
                (StepName.deliver_communication_plan, agreed.communication_plan),
                (StepName.submit_site_inventory, agreed.site_inventory),
                (StepName.add_findings, agreed.configuration_analysis),
                (StepName.present_configuration_analysis, agreed.configuration_analysis),
            ) if d is not None]
            if items:
                await self._apply_deadlines(items, "Agreed dates from the kickoff minutes (A2)")
            return s

    @complete_kickoff.validator
    def _validate_complete_kickoff(self, inp: CompleteKickoff) -> None:
        self._check_open(StepName.complete_kickoff)
        s = self._status
        assert s.plan is not None
        for name, d in inp.agreed_dates.model_dump().items():
            if d is not None and not (inp.held_on <= d <= s.plan.period_end):
                raise ValueError(f"agreed date for {name} ({d}) must fall between the meeting ({inp.held_on}) "
                                 f"and the period end ({s.plan.period_end})")
        self._rule_checks(inp)

    @workflow.update
    async def deliver_communication_plan(self, inp: DeliverCommunicationPlan) -> ProgramStatus:
        async with self._lock:
            s = self._status
            self._complete(StepName.deliver_communication_plan, inp.by, inp.via)
            ctx = inp.model_dump(mode="json") | {
                "technical_lead": s.technical_lead.model_dump(mode="json"),
                "contacts": [c.model_dump(mode="json") for c in s.contacts]}
            doc = await self._file("communication_plan", "communication_plan", "Communication plan", ctx)
            await self._mail_contacts("document_filed", "doc:communication-plan",
                                      {"document_title": "Communication plan", "kind": "communication_plan"},
                                      attach_document_id=doc)
            return s

    @deliver_communication_plan.validator
    def _validate_deliver_communication_plan(self, inp: DeliverCommunicationPlan) -> None:
        self._check_open(StepName.deliver_communication_plan)

    @workflow.update
    async def submit_site_inventory(self, inp: SubmitSiteInventory) -> ProgramStatus:
        async with self._lock:
            self._complete(StepName.submit_site_inventory, inp.by, inp.via)
            await self._store_inventory(inp)
            return self._status

    @submit_site_inventory.validator
    def _validate_submit_site_inventory(self, inp: SubmitSiteInventory) -> None:
        self._check_open(StepName.submit_site_inventory)
        self._rule_checks(inp)

    @workflow.update
    async def update_site_inventory(self, inp: SubmitSiteInventory) -> ProgramStatus:
        """D8: the inventory is updatable all period, each version filed."""
        async with self._lock:
            await self._store_inventory(inp)
            self._record("update_site_inventory", inp.by, {"version": self._status.inventory_version},
                         interface=inp.via)
            return self._status

    @update_site_inventory.validator
    def _validate_update_site_inventory(self, inp: SubmitSiteInventory) -> None:
        self._check_live()
        st = self._status.step(StepName.submit_site_inventory.value)
        if st is None or st.status != StepStatus.done:
            raise ValueError("update_site_inventory refused: submit the site inventory first "
                             "(step submit_site_inventory)")
        self._rule_checks(inp)

    def _rule_checks(self, inp: CompleteKickoff | SubmitSiteInventory | RecordBillableExtra) -> None:
        """Rules A2 (agenda items), A7 and C11 (site inventory), C3 (an extra's agreement) on a payload."""
        if self._rule_checks_off:
            return
        e = self._input.enrolment
        violations: list[RuleViolation]
        if isinstance(inp, CompleteKickoff):
            violations = check_kickoff_agenda(inp.agenda_covered)
        elif isinstance(inp, SubmitSiteInventory):
            violations = check_site_inventory(inp.inventory, e.primary_system, e.additional_systems)
        else:
            violations = check_billable_extra(inp.kind, inp.agreement_ref)
        if violations:
            raise ValueError("; ".join(str(v) for v in violations))

    async def _store_inventory(self, inp: SubmitSiteInventory) -> None:
        s = self._status
        s.inventory = inp.inventory
        s.inventory_version += 1
        v = s.inventory_version
        await self._file("site_inventory", "site_inventory", f"Site inventory v{v}",
                         {"inventory": inp.inventory.model_dump(mode="json"), "version": v,
                          "missing_items": inp.inventory.missing_items()}, version=v)
        assert s.plan is not None
        # rule A8: rule-based findings, computed in an activity so changing the rules
        # never breaks the replay of running programmes.
        result = await act.analyse_configuration(
            AnalysisRequest(customer_id=s.customer_id, period=s.period, inventory=inp.inventory,
                            as_of=workflow.now().date()),
            summary=f"Configuration analysis rules on inventory v{v} (A8)",
        )
        human = [f for f in s.findings if f.source != "rules"]
        s.findings = result.findings + human
        await self._file("configuration_findings", "configuration_findings", f"Configuration findings v{v}",
                         {"findings": [f.model_dump(mode="json") for f in s.findings], "inventory_version": v},
                         version=v, purpose=f"findings-inv{v}")

    @workflow.update
    async def add_findings(self, inp: AddFindings) -> ProgramStatus:
        async with self._lock:
            s = self._status
            for f in inp.findings:
                s.findings.append(f.model_copy(update={"source": inp.role, "author": inp.by}))
            self._complete(StepName.add_findings, inp.by, inp.via)
            await self._file("configuration_findings", "configuration_findings", "Configuration findings (reviewed)",
                             {"findings": [f.model_dump(mode="json") for f in s.findings],
                              "inventory_version": s.inventory_version}, purpose="findings-reviewed")
            return s

    @add_findings.validator
    def _validate_add_findings(self, inp: AddFindings) -> None:
        self._check_open(StepName.add_findings)

    @workflow.update
    async def present_configuration_analysis(self, inp: PresentConfigurationAnalysis) -> ProgramStatus:
        async with self._lock:
            s = self._status
            self._complete(StepName.present_configuration_analysis, inp.by, inp.via)
            doc = await self._file("analysis_presentation", "analysis_presentation",
                                   "Configuration analysis presentation",
                                   inp.model_dump(mode="json") | {
                                       "findings": [f.model_dump(mode="json") for f in s.findings]})
            await self._mail_contacts("document_filed", "doc:analysis-presentation",
                                      {"document_title": "Configuration analysis", "kind": "analysis_presentation"},
                                      attach_document_id=doc)
            return s

    @present_configuration_analysis.validator
    def _validate_present_configuration_analysis(self, inp: PresentConfigurationAnalysis) -> None:
        self._check_open(StepName.present_configuration_analysis)

    @workflow.update
    async def reassign_technical_lead(self, inp: ReassignTechnicalLead) -> ProgramStatus:
        """Rule C7: OT may assign a different TL; history keeps who did what; contacts are told."""
        async with self._lock:
            s = self._status
            previous = s.technical_lead
            s.technical_lead = inp.technical_lead
            s.technical_lead_history.append(inp.technical_lead.id)
            self._record("reassign_technical_lead", inp.by, {"from": previous.id, "to": inp.technical_lead.id,
                                                              "reason": inp.reason}, interface=inp.via)
            n = len(s.technical_lead_history)
            await self._mail_contacts("tl_reassigned", f"tl-reassigned-{n}", {
                "previous_technical_lead": previous.model_dump(mode="json"),
                "technical_lead": inp.technical_lead.model_dump(mode="json"), "reason": inp.reason,
            }, cc=[previous.email, inp.technical_lead.email])
            await self._mail_tl_assignment(f"tl-assignment-{n}")
            return s

    @reassign_technical_lead.validator
    def _validate_reassign_technical_lead(self, inp: ReassignTechnicalLead) -> None:
        self._check_live()
        if inp.technical_lead.id == self._status.technical_lead.id:
            raise ValueError(f"{inp.technical_lead.id} is already the Technical Lead")

    @workflow.update
    async def add_contact(self, inp: AddContact) -> ProgramStatus:
        async with self._lock:
            s = self._status
            s.contacts.append(inp.contact)
            self._record("add_contact", inp.by, {"email": inp.contact.email}, interface=inp.via)
            if self._total_contacts() > self._input.policy.max_total_contacts:
                await self._add_extra(RecordBillableExtra(
                    by=inp.by, kind=BillableExtraKind.extra_contacts, agreement_ref=inp.agreement_ref or "",
                    description=f"Contact {inp.contact.email} beyond {self._input.policy.max_total_contacts} "
                                f"(C4, SMPH section 6)"))
            await self._mail([inp.contact.email], "contact_added", f"contact-added:{inp.contact.email}",
                             {"contact": inp.contact.model_dump(mode="json")}, cc=[s.technical_lead.email])
            return s

    def _total_contacts(self) -> int:
        return self._subscription_contacts + len(self._status.contacts)

    @add_contact.validator
    def _validate_add_contact(self, inp: AddContact) -> None:
        self._check_live()
        if any(c.email.lower() == inp.contact.email.lower() for c in self._status.contacts):
            raise ValueError(f"{inp.contact.email} is already a contact")
        total = self._total_contacts() + 1
        limit = self._input.policy.max_total_contacts
        if total > limit and not (inp.accept_extra_contact_fee and inp.agreement_ref):
            raise ValueError(f"rule C4: {total} contacts in all would exceed {limit}; accept the extra fee "
                             f"(accept_extra_contact_fee) with an agreement reference (rule C3)")

    @workflow.update
    async def record_billable_extra(self, inp: RecordBillableExtra) -> ProgramStatus:
        async with self._lock:
            await self._add_extra(inp)
            return self._status

    @record_billable_extra.validator
    def _validate_record_billable_extra(self, inp: RecordBillableExtra) -> None:
        self._check_live()
        self._rule_checks(inp)

    async def _add_extra(self, inp: RecordBillableExtra) -> None:
        s = self._status
        extra = BillableExtra(kind=inp.kind, rule=EXTRA_RULES[inp.kind], description=inp.description,
                              agreement_ref=inp.agreement_ref, amount=inp.amount, recorded_at=workflow.now(),
                              recorded_by=inp.by)
        s.extras.append(extra)
        self._record("record_billable_extra", inp.by, {"kind": inp.kind.value, "rule": extra.rule,
                                                        "agreement_ref": inp.agreement_ref}, interface=inp.via)
        await act.record_billable_extra(
            ExtraRecord(customer_id=s.customer_id, period=s.period, extra=extra,
                        idempotency_key=self._key(f"extra:{len(s.extras)}")),
            summary=f"Billable extra {inp.kind.value} ({extra.rule})",
        )

    @workflow.update
    async def propose_renewal_price(self, inp: ProposeRenewalPrice) -> ProgramStatus:
        async with self._lock:
            assert self._status.renewal is not None
            self._status.renewal.next_price = inp.price
            self._record("propose_renewal_price", inp.by, {"price": str(inp.price)}, interface=inp.via)
            return self._status

    @propose_renewal_price.validator
    def _validate_propose_renewal_price(self, inp: ProposeRenewalPrice) -> None:
        self._check_live()
        r = self._status.renewal
        if r is None or r.notice_sent:
            raise ValueError(f"the renewal notice date ({r.notice_on if r else '?'}) has passed; "
                             f"the next period's price is fixed (C14)")
        try:
            check_renewal_price(self._status.annual_fee, inp.price, self._input.policy.max_price_increase_percent)
        except RuleRefused as err:
            raise ValueError(str(err)) from None

    @workflow.update
    async def give_non_renewal_notice(self, inp: GiveNonRenewalNotice) -> ProgramStatus:
        """Rule C16: accepted up to and including the deadline day; later is refused as late."""
        async with self._lock:
            s = self._status
            assert s.renewal is not None and s.plan is not None
            s.renewal.non_renewal = NonRenewal(party=inp.party, received_on=inp.received_on,
                                               reference=inp.reference, recorded_by=inp.by,
                                               recorded_at=workflow.now())
            s.phase = Phase.closing
            self._record("give_non_renewal_notice", inp.by, inp.model_dump(mode="json", exclude={"via"}),
                         interface=inp.via)
            ctx = {"party": inp.party, "received_on": _iso(inp.received_on), "reference": inp.reference,
                   "period_end": _iso(s.plan.period_end)}
            doc = await self._file("non_renewal_notice", "non_renewal_notice", "Non-renewal notice", ctx)
            await self._mail_contacts("non_renewal_accepted", "non-renewal-accepted", ctx,
                                      cc=[s.technical_lead.email, self._input.policy.ops_mailbox],
                                      attach_document_id=doc)
            return s

    @give_non_renewal_notice.validator
    def _validate_give_non_renewal_notice(self, inp: GiveNonRenewalNotice) -> None:
        self._check_live()
        r = self._status.renewal
        assert r is not None
        if r.non_renewal is not None:
            raise ValueError(f"a non-renewal notice was already recorded ({r.non_renewal.reference})")
        if inp.received_on > r.non_renewal_deadline:
            raise ValueError(f"rule C16: non-renewal notice received on {inp.received_on} is late; the deadline "
                             f"was {r.non_renewal_deadline} (90 days before the period end); the programme renews")
        # A notice cannot be dated in the future of the programme's clock (one day of
        # slack covers time zones east of UTC).
        if inp.received_on > (workflow.now() + timedelta(days=1)).date():
            raise ValueError(f"received_on {inp.received_on} is in the future")

    @workflow.update
    async def record_renewal_invoice_paid(self, inp: RecordInvoicePaid) -> ProgramStatus:
        async with self._lock:
            assert self._status.renewal is not None
            self._status.renewal.invoice_ref = inp.invoice_ref
            self._status.renewal.invoice_paid_on = inp.paid_on
            self._record("record_renewal_invoice_paid", inp.by, inp.model_dump(mode="json", exclude={"via"}),
                         interface=inp.via)
            return self._status

    @record_renewal_invoice_paid.validator
    def _validate_record_renewal_invoice_paid(self, inp: RecordInvoicePaid) -> None:
        self._check_live()
        r = self._status.renewal
        if r is None or not r.notice_sent:
            raise ValueError("no renewal invoice yet: the renewal notice has not been sent (C14)")

    # ================================================================== Signals
    @workflow.signal
    async def cycle_completed(self, done: CycleCompleted) -> None:
        s = self._status
        if done.period != s.period:
            self._previous_period_cycles.append(done)
            return
        for c in s.cycles:
            if c.month == done.month:
                c.status = "done"
                c.call_held_on = done.call_held_on
                c.report_document_id = done.report_document_id
        self._record("cycle_completed", "system", {"month": done.month, "extra_calls": done.extra_calls})

    @workflow.signal
    async def complete_step(self, sig: CompleteStepSignal) -> None:
        """The signal route: same models and checks as the Updates; refusals are kept, never raised."""
        # Update methods called directly: same body, same lock, same state as the Update route.
        handlers: StepHandlers = {
            "schedule_kickoff": (ScheduleKickoff, self._validate_schedule_kickoff, self.schedule_kickoff),
            "complete_kickoff": (CompleteKickoff, self._validate_complete_kickoff, self.complete_kickoff),
            "deliver_communication_plan": (DeliverCommunicationPlan, self._validate_deliver_communication_plan,
                                           self.deliver_communication_plan),
            "submit_site_inventory": (SubmitSiteInventory, self._validate_submit_site_inventory,
                                      self.submit_site_inventory),
            "update_site_inventory": (SubmitSiteInventory, self._validate_update_site_inventory,
                                      self.update_site_inventory),
            "add_findings": (AddFindings, self._validate_add_findings, self.add_findings),
            "present_configuration_analysis": (PresentConfigurationAnalysis,
                                               self._validate_present_configuration_analysis,
                                               self.present_configuration_analysis),
            "give_non_renewal_notice": (GiveNonRenewalNotice, self._validate_give_non_renewal_notice,
                                        self.give_non_renewal_notice),
            "record_billable_extra": (RecordBillableExtra, self._validate_record_billable_extra,
                                      self.record_billable_extra),
        }
        # Validators run here on replay too: a signal of a run started before the rule checks replays
        # without them (Update validators, never run on replay, always check).
        if sig.step in RULE_CHECKED_STEPS and not self._signal_rule_checks():
            model, validate, body = handlers[sig.step]
            handlers[sig.step] = (model, self._without_rule_checks(validate), body)
        refusal = await run_step(handlers, sig.step, sig.by, sig.payload)
        if refusal is not None:
            await self._reject(sig, refusal)

    def _signal_rule_checks(self) -> bool:
        return workflow.patched(PATCH_STEP_RULE_CHECKS)

    def _without_rule_checks(self, validate: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(inp: Any) -> None:
            self._rule_checks_off = True
            try:
                validate(inp)
            finally:
                self._rule_checks_off = False
        return run

    async def _reject(self, sig: CompleteStepSignal, reason: str) -> None:
        s = self._status
        s.rejections.append(Rejection(at=workflow.now(), step=sig.step, by=sig.by, reason=reason))
        self._record("signal_rejected", sig.by, {"step": sig.step, "reason": reason}, interface="signal")
        to = [rejection_recipient(sig.by, s.technical_lead, self._input.policy)]
        await self._mail(to, "step_rejected", f"rejected:{len(s.rejections)}",
                         {"step": sig.step, "reason": reason, "by": sig.by})
