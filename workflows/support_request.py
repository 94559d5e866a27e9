"""SupportRequestWorkflow: one support request, id `request-<tracking_number>`.

Rules A1, A4, A6, C3, C12, C13 (docs/rules.md). The request is filed with a unique
tracking number (A4); a customisation without an agreement reference is refused
(C13). The Technical Lead is told at once (A1, A4). The first-response clock runs 60
minutes on the programme's business calendar, round the clock with an out-of-hours
agreement (C12): the support desk is warned before the deadline, the support manager
is alerted at the breach, and every SLA event is stored. States are open, pending
(waiting for the customer) and closed; a request closes only when the customer
accepts measures OT proposed, or ops record the customer's written acceptance (A4).
On-site dispatch (A4): requested with reason, estimated cost and agreement (C3),
approved by the customer and by an OT support manager, each within its deadline in
business days; then booked (activity) and the visit recorded as a billable extra.

Every human step is an Update with a validator (a refused step leaves no event in
history); the handler re-checks under the lock and refuses with a non-retryable
ApplicationError, which fails only that Update.
"""

from __future__ import annotations

from temporalio import workflow

# Passed through, the mixins and helpers too: shared by every run instead of copied into each cached run
# (they hold no module state; tests/test_architecture.py checks their sources for non-determinism).
with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        AuditEntry,
        BusinessDeadlineRequest,
        RequestOpened,
        SlaEventRecord,
        StatusChangeRecord,
    )
    from domain.program import BillableExtra
    from domain.refusal import refusal_text
    from domain.request import (
        RequestInput,
        RequestResult,
        RequestState,
        RequestStatus,
        SlaEvent,
        SlaEventKind,
        StatusChange,
    )
    from domain.rules_request import check_customisation
    from domain.step_inputs import EXTRA_RULES, BillableExtraKind, CompleteStepSignal, TechnicalLeadChanged
    from domain.steps import Workflow
    from workflows import activity_calls as act
    from workflows.request_base import PATCH_OPEN_LOCALLY
    from workflows.request_conversation import RequestConversation
    from workflows.request_dispatch import RequestDispatchSteps
    from workflows.request_resolution import RequestResolution
    from workflows.signal_route import check_registry, keep_and_mail_rejection, run_step, step_handlers
    from workflows.updatable_sleep import UpdatableSleep
    from workflows.update_sequence import UpdateSequence


# Versioned changes of the command sequence (`workflow.patched`), as in workflows/program.py: a request
# opened before the change replays on the old path (tests/replay/pre-patch/ keeps one such history).
PATCH_OPEN_IN_ONE_WRITE = "open-request-in-one-write"
# Rule C13 (with C3): a customisation accepted under its agreement is a billable extra, priced from the list.
PATCH_BILL_CUSTOMISATION = "bill-customisation-under-agreement"


@workflow.defn
class SupportRequestWorkflow(RequestResolution, RequestConversation, RequestDispatchSteps):
    @workflow.init
    def __init__(self, input: RequestInput) -> None:
        r = input.request
        self._input = input
        self._ready = False
        self._sleep = UpdatableSleep()
        self._updates = UpdateSequence(ready=lambda: self._ready, save=self._save, wake=self._sleep.wake)
        self._warning_done = False
        self._audit: list[AuditEntry] = []
        self._status = RequestStatus(
            tracking_number=input.tracking_number,
            workflow_id=workflow.info().workflow_id,
            customer_id=r.customer_id,
            kind=r.kind,
            priority=r.priority,
            summary=r.summary,
            opened_at=input.opened_at,
        )

    # ------------------------------------------------------------------ main run
    @workflow.run
    async def run(self, input: RequestInput) -> RequestResult:
        s = self._status
        async with self._updates.lock:
            violations = check_customisation(input.request)
            if violations:
                await self._refuse(refusal_text(violations))
            else:
                await self._open()
                if input.request.customisation and workflow.patched(PATCH_BILL_CUSTOMISATION):
                    await self._bill_customisation()
            self._ready = True

        while not self._closed():
            # Reset before the work: an Update landing while an activity runs sets it again.
            self._sleep.clear()
            async with self._updates.lock:
                await self._process_due_events()
            if self._closed():
                break
            nxt = self._next_event()
            at, label = nxt if nxt else (None, "")
            await self._sleep.sleep_until(at, f"{label} at {self._local(at)}")

        # Let in-flight Updates finish before the run ends (Temporal would warn and drop them).
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RequestResult(tracking_number=s.tracking_number, state=s.state, sla_breached=s.sla_breached,
                             closure=s.closure, refusal=s.refusal)

    def _closed(self) -> bool:
        return self._status.state == RequestState.closed

    async def _refuse(self, refusal: str) -> None:
        """Rule C13: the request is recorded, refused and closed; the run completes (it does not fail)."""
        s = self._status
        i = self._input
        local = workflow.patched(PATCH_OPEN_LOCALLY)
        s.refusal = refusal
        s.state = RequestState.closed
        s.closed_at = workflow.now()
        self._publish()
        self._record_opening()
        if local:
            # One local write: the request's row with its only status change (A4), as the opening does.
            change = StatusChange(at=s.closed_at, from_state=None, to_state=RequestState.closed, by="system",
                                  note=refusal)
            s.history.append(change)
            await act.record_request_opened_local(
                RequestOpened(customer_name=i.customer_name, period=i.period, request=i.request, status=s,
                              at=s.closed_at, audit=self._drain_audit(),
                              changes=[StatusChangeRecord(tracking_number=s.tracking_number, change=change,
                                                          idempotency_key=self._key(f"status:{len(s.history)}"))]),
                summary=f"Record refused request {s.tracking_number}, closed (C13, A4)",
            )
            return
        await act.record_request_opened(
            RequestOpened(customer_name=i.customer_name, period=i.period, request=i.request, status=s,
                          at=workflow.now(), audit=self._drain_audit()),
            summary=f"Record refused request {s.tracking_number} (C13)",
        )
        await self._record_change(None, RequestState.closed, "system", refusal)

    async def _open(self) -> None:
        if workflow.patched(PATCH_OPEN_IN_ONE_WRITE):
            await self._open_in_one_write()
            return
        s = self._status
        i = self._input
        p = i.policy
        r = i.request
        self._record_opening()
        await act.record_request_opened(
            RequestOpened(customer_name=i.customer_name, period=i.period, request=r, status=s, at=workflow.now(),
                          audit=self._drain_audit()),
            summary=f"Record request {s.tracking_number}: {r.kind.value}, {r.priority.value} (A4)",
        )
        await self._record_change(None, RequestState.open, r.filed_by, f"filed by {r.filed_by} via {r.channel.value}")
        deadline, clock = self._deadline_request()
        d = await act.business_deadline(
            deadline, summary=f"First-response deadline: {p.first_response_minutes} min, {clock} (C12)")
        s.first_response_deadline, s.first_response_warning_at = d.deadline, d.warning_at
        await self._sla(SlaEventKind.started, f"{p.first_response_minutes} minutes, {clock}")
        # rules A1, A4: the TL is told at once whenever the customer files a request.
        await self._mail([i.technical_lead.email], "request_opened", "opened", {})
        await self._save()

    def _deadline_request(self) -> tuple[BusinessDeadlineRequest, str]:
        """Rule C12: one hour on the programme calendar; 24x7 with an out-of-hours agreement. And the clock's name."""
        i = self._input
        p = i.policy
        round_the_clock = bool(i.calendar.out_of_hours_agreement_ref)
        clock = "24x7 (out-of-hours agreement)" if round_the_clock else "business hours"
        return BusinessDeadlineRequest(calendar=i.calendar, start=self._status.opened_at,
                                       minutes=p.first_response_minutes,
                                       warning_minutes=p.first_response_warning_minutes,
                                       round_the_clock=round_the_clock), clock

    async def _open_in_one_write(self) -> None:
        """The opening since PATCH_OPEN_IN_ONE_WRITE: the C12 deadline first (a local activity), then the
        request's row, its opening status change (A4) and the clock's start (C12) in one transaction,
        then the TL's mail. Three steps instead of six, the same rows and the same mail. Since PATCH_OPEN_LOCALLY
        the write is a local activity too: the whole opening is the run's first workflow task, then the mail."""
        s = self._status
        i = self._input
        p = i.policy
        r = i.request
        local = workflow.patched(PATCH_OPEN_LOCALLY)
        deadline, clock = self._deadline_request()
        d = await act.business_deadline_local(
            deadline, summary=f"First-response deadline: {p.first_response_minutes} min, {clock} (C12)")
        s.first_response_deadline, s.first_response_warning_at = d.deadline, d.warning_at
        now = workflow.now()
        # rule A4: the first status change, with who and when (same key as the separate write had).
        change = StatusChange(at=now, from_state=None, to_state=RequestState.open, by=r.filed_by,
                              note=f"filed by {r.filed_by} via {r.channel.value}")
        s.history.append(change)
        started = SlaEvent(kind=SlaEventKind.started, at=now, deadline=d.deadline,
                           note=f"{p.first_response_minutes} minutes, {clock}")
        s.sla_events.append(started)
        self._record_opening()
        self._publish()
        await (act.record_request_opened_local if local else act.record_request_opened)(
            RequestOpened(customer_name=i.customer_name, period=i.period, request=r, status=s, at=now,
                          audit=self._drain_audit(),
                          changes=[StatusChangeRecord(tracking_number=s.tracking_number, change=change,
                                                      idempotency_key=self._key(f"status:{len(s.history)}"))],
                          sla_events=[SlaEventRecord(tracking_number=s.tracking_number, event=started,
                                                     idempotency_key=self._key(f"sla:{SlaEventKind.started}"))]),
            summary=f"Record request {s.tracking_number}: {r.kind.value}, {r.priority.value}, clock started (A4, C12)",
        )
        # rules A1, A4: the TL is told at once whenever the customer files a request.
        await self._mail([i.technical_lead.email], "request_opened", "opened", {})

    async def _bill_customisation(self) -> None:
        """Rule C13: not covered by the programme; accepted only under its agreement, and billed once."""
        s, r = self._status, self._input.request
        extra = BillableExtra(kind=BillableExtraKind.customisation, rule=EXTRA_RULES[BillableExtraKind.customisation],
                              description=f"Customisation, request {s.tracking_number}: {r.summary}",
                              agreement_ref=r.agreement_ref or "", recorded_at=workflow.now(), recorded_by=r.filed_by)
        await self._record_extra(extra, "customisation:extra",
                                 f"Billable extra: customisation under {r.agreement_ref} (C13, C3)")

    # ================================================================== Query
    @workflow.query
    def get_status(self) -> RequestStatus:
        return self._status

    # ------------------------------------------------------------- the programme's new TL
    @workflow.signal
    async def technical_lead_changed(self, change: TechnicalLeadChanged) -> None:
        """Rule C7, sent by the programme: the new TL takes this request over (inbox, SLA warnings, mails)."""
        await self._updates.until_ready()
        async with self._updates.lock:
            previous = self._input.technical_lead
            if self._closed() or previous.id == change.technical_lead.id:
                return
            self._input.technical_lead = change.technical_lead
            self._status.technical_lead_changes.append(change.record(previous.id, workflow.now()))
            self._record("technical_lead_changed", change.by, change.via,
                         {"from": previous.id, "to": change.technical_lead.id, "reason": change.reason[:200]})
            await self._save()  # publishes the TechnicalLead search attribute

    # ------------------------------------------------------------- the signal route
    @workflow.signal
    async def complete_step(self, sig: CompleteStepSignal) -> None:
        """For tools that can only signal: the same models, validators and bodies as the Updates;
        a refusal is kept in the state (`get_status().rejections`) and mailed, never raised."""
        handlers = step_handlers(self, Workflow.request)
        await self._updates.until_ready()
        refusal = await run_step(handlers, sig.step, sig.by, sig.payload)
        if refusal is None:
            return
        async with self._updates.lock:
            self._record("signal_rejected", sig.by, "signal", {"step": sig.step, "reason": refusal})
            i = self._input
            await keep_and_mail_rejection(self._status.rejections, sig, refusal, i.technical_lead, i.policy,
                                          self._mail)
            await self._save()


check_registry(SupportRequestWorkflow, Workflow.request)
