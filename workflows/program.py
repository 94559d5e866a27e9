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

This module tells the run from start to period end; the class is assembled from program_base.py
(state, side effects), program_timing.py (timed events, due dates), program_steps.py (onboarding
steps) and program_changes.py (changes to a running programme). Rules: domain/rules_program.py;
steps: domain/steps.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

# Passed through, the mixins and helpers too: shared by every run instead of copied into each cached run
# (they hold no module state; tests/test_architecture.py checks their sources for non-determinism).
with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        AuditEntry,
        CloseWorkspace,
        EnrolmentCheckRequest,
        EnrolmentPreparation,
        FileDocumentRequest,
        FinalReportRequest,
        MailRequest,
        PlanPeriodRequest,
        PreparedEnrolment,
        RegisterProgramme,
        Welcome,
    )
    from domain.cycle import CycleCallHeld, CycleCompleted
    from domain.enrolment_extras import enrolment_extras
    from domain.local_time import format_local
    from domain.program import Phase, ProgramInput, ProgramResult, ProgramStatus, RenewalState
    from domain.rules_cycle import plan_cycles
    from domain.step_inputs import BillableExtraKind, CompleteStepSignal, RecordBillableExtra, StepState
    from domain.steps import Workflow, tracked_steps
    from workflows import activity_calls as act
    from workflows.program_base import PATCH_UPSERT_CHANGES, iso
    from workflows.program_changes import ProgramChanges
    from workflows.program_steps import ProgramSteps
    from workflows.signal_route import check_registry, keep_and_mail_rejection, run_step, step_handlers
    from workflows.updatable_sleep import UpdatableSleep
    from workflows.update_sequence import UpdateSequence


# Versioned changes of the command sequence (`workflow.patched`): a run started before the change
# replays on the old path. Remove a patch (workflow.deprecate_patch, then nothing) only once no run
# started before it is open or in the replay histories (tests/test_patching.py).
PATCH_SAVE_BEFORE_WELCOME = "save-state-before-welcome-mail"
# Rule C1: each additional system agreed at enrolment is recorded as a billable extra of the period.
PATCH_BILL_ADDITIONAL_SYSTEMS = "bill-additional-systems-at-enrolment"
# Rules C4, C5, C9: the extras agreed in the enrolment file (contacts beyond fifteen, out-of-hours cover, a TL
# for another region, products at extra cost) are billed at each period's start, priced from OT's list (C3).
PATCH_BILL_ENROLMENT_EXTRAS = "bill-enrolment-extras-c4-c5-c9"
# Rules A2, A7, C11, C3 checked on a step's payload (`_payload_rules`). Update validators never run on
# replay; the `complete_step` signal route runs them in its handler, so it checks only when patched.
PATCH_STEP_RULE_CHECKS = "step-rule-checks-a2-a7-c11-c3"
# Rule C3: an extra's amount that overrides OT's price list needs its reason, by signal too.
PATCH_OVERRIDE_NEEDS_REASON = "extra-override-needs-its-reason"
RULE_CHECKED_STEPS = {"complete_kickoff", "submit_site_inventory", "update_site_inventory", "record_billable_extra"}
# Rules A9, D10 at the close: the final report is attached to the closing mail, and the contacts keep reading
# the archived workspace for the policy's days (`close_workspace` inputs). A close recorded before replays as
# it ran: report not attached, access revoked at once.
PATCH_CLOSE_KEEPS_WORKSPACE_READABLE = "close-attaches-final-report-keeps-workspace-readable"
# Issue 16: the enrolment's check (a read), its calendar maths (plan, default due dates) and the workspace's
# registration (one idempotent transaction) run as local activities, all in the run's first workflow task;
# the last save runs only when something changed since the one before the welcome mail. A run enrolled
# before replays them as activities. Which calls are local, and why each stays safe: docs/local-activities.md.
PATCH_ENROL_LOCALLY = "enrolment-local-activities"
# Issue 16: the registration also writes the start's audit entry (so no save is left to do before the mails),
# and the welcome document, the welcome mail and the TL's mail are scheduled at once instead of one after the
# other: the enrolment is two workflow tasks where it was five. A run enrolled before replays them in turn.
PATCH_ENROL_MAILS_AT_ONCE = "enrolment-mails-at-once"
# Issue 16: the enrolment's check, its plan and its default due dates are one local activity (`prepare_enrolment`),
# so their one result wakes the run once, not three times. A run enrolled before replays the three calls.
PATCH_PREPARE_IN_ONE_CALL = "enrolment-prepared-in-one-call"
# Issue 16: the welcome document and both enrolment mails are one activity (`send_welcome`), so the enrolment is
# one activity task and one workflow task for its result, where three activities woke the run up to three times.
# Each mail keeps its outbox row and key. A run enrolled before replays the three activities.
PATCH_WELCOME_IN_ONE_ACTIVITY = "welcome-in-one-activity"

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


def deliverables(call_frequency_months: int) -> list[dict[str, str]]:
    """The deliverables as the welcome document lists them: calls and reports at the frequency agreed (C10)."""
    if call_frequency_months == 1:
        return DELIVERABLES
    every = f"every {call_frequency_months} months, as agreed (C10)"
    return [{**d, "frequency": every} if d["id"] in ("D6", "D7") else d for d in DELIVERABLES]



@workflow.defn
class ProgramWorkflow(ProgramSteps, ProgramChanges):
    @workflow.init
    def __init__(self, input: ProgramInput) -> None:
        e = input.enrolment
        self._input = input
        self._sleep = UpdatableSleep()
        # The main loop saves when `_dirty`, and so does an Update before it returns (PATCH_SAVE_IN_UPDATE);
        # no wake-up in the sequence: `_record` wakes the loop.
        self._updates = UpdateSequence(save=self._save_in_update)
        self._dirty = False
        self._save_lock = asyncio.Lock()
        self._audit: list[AuditEntry] = []
        self._subscription_contacts = 0
        self._period_over = False
        self._rule_checks_off = False  # only while a pre-patch `complete_step` signal's validator replays
        self._override_check_off = False
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
        local = workflow.patched(PATCH_ENROL_LOCALLY)
        # Asked here too (answered the same in `_publish`): its marker shares the enrolment's task (one Action).
        workflow.patched(PATCH_UPSERT_CHANGES)
        plan_request = PlanPeriodRequest(calendar=e.calendar, period=input.period, period_start=e.period_start,
                                         term_months=e.term_months, policy=policy)
        check_request = EnrolmentCheckRequest(enrolment=e, policy=policy, period=input.period)
        prepared: PreparedEnrolment | None = None
        if local and workflow.patched(PATCH_PREPARE_IN_ONE_CALL):
            prepared = await act.prepare_enrolment_local(
                EnrolmentPreparation(check=check_request, plan=plan_request,
                                     reminder_business_days=policy.step_reminder_business_days),
                summary=f"Enrolment check, plan and default due dates, period {input.period} (E1, C2, C4, C5, "
                        f"C14, C16)")
            check = prepared.check
        else:
            check = await (act.check_enrolment_local if local else act.check_enrolment)(
                check_request, summary=f"Enrolment check, period {input.period} (E1, C2, C4)")
        if check.violations:
            # A refused enrolment is a person's mistake, not a crash: the run completes
            # with outcome "refused" and the rule messages, readable in the UI.
            s.phase = Phase.refused
            s.refusal = check.violations
            s.outcome = "refused: " + "; ".join(str(v) for v in check.violations)
            self._publish()
            return ProgramResult(customer_id=s.customer_id, period=s.period, outcome="refused",
                                 refusal=check.violations)
        # rule C4: every subscription of the customer counts (the named one's only, in results recorded before).
        self._subscription_contacts = check.registry_contacts if check.registry_contacts is not None else (
            check.subscription.contact_count if check.subscription else 0)
        # rule E2: buying or using the services means accepting the handbook.
        s.handbook_accepted_at = workflow.now()

        if prepared is not None:
            assert prepared.plan is not None, "an accepted enrolment comes with its plan"
            plan = prepared.plan
        else:
            plan = await (act.plan_period_local if local else act.plan_period)(
                plan_request, summary="Plan the period on the programme calendar (C5, C14, C16)")
        s.plan = plan
        s.renewal = RenewalState(
            notice_on=plan.renewal_notice_on,
            non_renewal_deadline=plan.non_renewal_deadline,
            non_renewal_deadline_end_at=plan.non_renewal_deadline_end_at,
            reminder_on=plan.non_renewal_reminder_on,
        )
        # rule C10: one cycle a month, or one every `call_frequency_months` months as agreed at enrolment.
        s.call_frequency_months = e.call_frequency_months
        s.call_frequency_agreement_ref = e.call_frequency_agreement_ref
        s.cycles = plan_cycles(s.customer_id, s.period, plan, s.call_frequency_months)
        s.call_day_of_month = input.call_day_of_month  # rule D6/A2: the call day agreed at an earlier kickoff
        s.steps = [
            StepState(step=st.name, title=st.title, rule=st.rule, workflow_id=s.workflow_id)
            for st in tracked_steps(Workflow.program)
        ]
        if input.inventory is not None:
            # The inventory is "updatable all period" (D8) and carries into the next one;
            # the new period still asks for a reviewed submission.
            s.inventory = input.inventory
        s.extras = list(input.extras_carried)
        s.period_invoice = input.period_invoice  # rule C14: tracked until paid, across periods
        if prepared is not None:
            assert prepared.default_deadlines is not None, "an accepted enrolment comes with its due dates"
            self._apply_schedule(prepared.default_deadlines)
        else:
            await self._schedule_default_deadlines(local=local)
        self._open_ready_steps()
        s.phase = Phase.onboarding

        at_once = local and workflow.patched(PATCH_ENROL_MAILS_AT_ONCE)
        if at_once:
            # Written with the registration, in its transaction: the start is in the system of record before
            # any mail, with no save of its own. At the run's start, not workflow.now(): a local activity runs
            # again when its workflow task is retried (a worker died), and the same instant keeps it one entry.
            self._record("programme_started", input.started_by, {"period": s.period},
                         at=workflow.info().workflow_start_time)
            ws = await self._register()
        else:
            ws = await (act.register_programme_local if local else act.register_programme)(
                RegisterProgramme(status=s, enrolment=e), summary="Register programme and provision workspace (D10, A9)"
            )
        s.workspace_id = ws.workspace_id
        if not at_once:
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
        agreed_extras = enrolment_extras(e, self._total_contacts(), policy, s.period, input.started_by)
        if agreed_extras and workflow.patched(PATCH_BILL_ENROLMENT_EXTRAS):
            for extra in agreed_extras:
                await self._add_extra(extra)
        if at_once:
            if self._dirty:
                # Billed extras (C1, C4, C5, C9) reach the system of record before any mail, as the start did.
                await self._save_between_updates()
            if workflow.patched(PATCH_WELCOME_IN_ONE_ACTIVITY):
                await self._send_welcome()
            else:
                # Neither mail names the welcome document: one workflow task schedules all three.
                await asyncio.gather(self._file_welcome(), self._mail_welcome(),
                                     self._mail_tl_assignment("tl_assignment"))
            if self._dirty:  # a mail refused for good, an Update meanwhile
                await self._save_between_updates()
        else:
            await self._enrolment_mails_in_turn(local)

        while True:
            # Reset before the work, not after it: an Update or signal that lands while
            # `_save` awaits its activity (outside the lock) sets it again and is not lost.
            self._sleep.clear()
            async with self._updates.lock:
                await self._process_due_events()
            if self._dirty:
                await self._save_between_updates()
            now = workflow.now()
            if now >= plan.period_end_at:
                # From here on validators refuse: an Update accepted while the run ends
                # (continue-as-new or close) would be dropped with it.
                self._period_over = True
                break
            next_at = self._next_event_at()
            await self._sleep.sleep_until(next_at, f"Next programme event at {next_at.isoformat()}")

        # Let in-flight Updates finish before the run ends (Temporal would warn and drop them).
        await workflow.wait_condition(workflow.all_handlers_finished)
        return await self._end_of_period()

    async def _enrolment_mails_in_turn(self, local: bool) -> None:
        """The enrolment's end before PATCH_ENROL_MAILS_AT_ONCE: a save, the welcome document, then each mail."""
        if workflow.patched(PATCH_SAVE_BEFORE_WELCOME):
            # The start (workspace id, audit entry) reaches the system of record before any mail:
            # an SMTP outage then delays only the mails, not what the portal and support staff see.
            await self._save_between_updates()
        await self._file_welcome()
        await self._mail_welcome()
        await self._mail_tl_assignment("tl_assignment")
        if not (local and workflow.patched(PATCH_SAVE_BEFORE_WELCOME)) or self._dirty:
            # Since PATCH_ENROL_LOCALLY only when the welcome document and mails changed something (a mail
            # refused for good, an Update meanwhile): otherwise it would write what the save above wrote.
            await self._save_between_updates()

    def _welcome_document(self) -> FileDocumentRequest:
        s, e = self._status, self._input.enrolment
        assert s.plan is not None
        return self._document_request(
            "welcome", "welcome", f"Welcome to TechConnect, period {s.period}",
            {"period_start": iso(s.plan.period_start), "period_end": iso(s.plan.period_end),
             "technical_lead": s.technical_lead.model_dump(mode="json"),
             "contacts": [c.model_dump(mode="json") for c in s.contacts],
             "products": [p.model_dump(mode="json") for p in e.products],
             "handbook_version": s.handbook_version, "deliverables": deliverables(s.call_frequency_months)},
        )

    def _welcome_mail(self) -> MailRequest:
        s = self._status
        assert s.plan is not None
        return self._contacts_mail("welcome", "welcome", {
            "period_start": iso(s.plan.period_start), "period_end": iso(s.plan.period_end),
            "technical_lead": s.technical_lead.model_dump(mode="json"), "handbook_version": s.handbook_version,
            "workspace_url": f"{self._input.policy.portal_url}/workspace/{s.customer_id}",
            "deliverables": deliverables(s.call_frequency_months),
        })

    async def _file_welcome(self) -> None:
        await self._file_document(self._welcome_document())

    async def _mail_welcome(self) -> None:
        await self._send_mail(self._welcome_mail())

    async def _send_welcome(self) -> None:
        """The welcome document and the enrolment's two mails in one activity (PATCH_WELCOME_IN_ONE_ACTIVITY);
        a mail refused for good is recorded as a `send_mail` of its own would have it."""
        welcome = Welcome(document=self._welcome_document(),
                          mails=[self._welcome_mail(), self._tl_assignment_mail("tl_assignment")])
        sent = await act.send_welcome(welcome, summary=f"Welcome: file '{welcome.document.title}', mail the "
                                                       f"contacts and the TL")
        for mail, outcome in zip(welcome.mails, sent.mails, strict=True):
            if outcome.refused is not None:
                self._mail_refused(mail, outcome.refused)

    # -------------------------------------------------------- period end / renewal
    async def _end_of_period(self) -> ProgramResult:
        s = self._status
        assert s.plan is not None and s.renewal is not None
        if s.renewal.non_renewal is not None:
            nr = s.renewal.non_renewal
            return await self._close(f"non-renewal notice from {nr.party} received on {nr.received_on} (C16)")
        invoice = s.renewal.invoice
        if invoice is not None and not invoice.paid and not self._input.policy.next_period_starts_unpaid:
            return await self._close(f"renewal invoice {invoice.number} unpaid at the period end, and the next "
                                     f"period does not start unpaid (C14)")
        next_enrolment = self._next_enrolment()
        next_fee = next_enrolment.annual_fee
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
            inventory=s.inventory, inventory_version=s.inventory_version, period_invoice=invoice,
            call_day_of_month=s.call_day_of_month,
        ))

    async def _close(self, reason: str) -> ProgramResult:
        s = self._status
        assert s.plan is not None
        s.phase = Phase.closing
        self._publish()
        report = await act.generate_final_report(
            FinalReportRequest(status=s, idempotency_key=self._key("final-report")),
            summary="Generate the final report",
        )
        context: dict[str, Any] = {"period_end": iso(s.plan.period_end), "reason": reason}
        close = CloseWorkspace(customer_id=s.customer_id, period=s.period, reason=reason)
        attach: int | None = None
        if workflow.patched(PATCH_CLOSE_KEEPS_WORKSPACE_READABLE):
            days, closed_at = self._input.policy.workspace_readable_days_after_close, workflow.now()
            close = close.model_copy(update={"readable_days": days, "closed_at": closed_at})
            attach = report.document_id
            context.update(readable_days=days, readable_until=format_local(closed_at + timedelta(days=days),
                                                                           s.calendar.timezone))
        await self._mail_contacts("programme_closed", "closed", context, attach_document_id=attach)
        await act.close_workspace(close, summary="Archive the workspace; contacts read it for "
                                                 f"{close.readable_days} day(s), then lose access (D10, A9)")
        s.phase = Phase.closed
        s.outcome = f"closed: {reason}"
        self._record("programme_closed", "system", {"reason": reason})
        await self._save()
        return ProgramResult(customer_id=s.customer_id, period=s.period, outcome=s.outcome)

    @workflow.query
    def get_status(self) -> ProgramStatus:
        return self._status

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
        self._record("cycle_completed", "system", {"month": done.month, "extra_calls": done.extra_calls,
                                                    "extra_reports": done.extra_reports})

    @workflow.signal
    async def cycle_call_held(self, held: CycleCallHeld) -> None:
        """Rule D6, from a cycle with month-end reports: its call is held (the cycle completes after its month,
        the last one after the period, so the final report learns of the call here)."""
        if held.period != self._status.period:
            return
        for c in self._status.cycles:
            if c.month == held.month:
                c.call_held_on = held.held_on
                self._dirty = True

    @workflow.signal
    async def complete_step(self, sig: CompleteStepSignal) -> None:
        """The signal route: same models and checks as the Updates; refusals are kept, never raised."""
        # Update methods called directly: same body, same lock, same state as the Update route.
        handlers = step_handlers(self, Workflow.program)
        # Validators run here on replay too: a signal of a run started before the rule checks replays
        # without them (Update validators, never run on replay, always check).
        if sig.step in RULE_CHECKED_STEPS and not self._signal_rule_checks():
            model, validate, body = handlers[sig.step]
            handlers[sig.step] = (model, self._without_rule_checks(validate), body)
        # An amount without its reason was accepted by signal before the C3 override check: such a signal
        # replays without it (Update validators never replay).
        self._override_check_off = sig.step == "record_billable_extra" and not workflow.patched(
            PATCH_OVERRIDE_NEEDS_REASON)
        try:
            refusal = await run_step(handlers, sig.step, sig.by, sig.payload)
        finally:
            self._override_check_off = False
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
        self._record("signal_rejected", sig.by, {"step": sig.step, "reason": reason}, interface="signal")
        s = self._status
        await keep_and_mail_rejection(s.rejections, sig, reason, s.technical_lead, self._input.policy, self._mail)


check_registry(ProgramWorkflow, Workflow.program)
