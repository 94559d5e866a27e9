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

import asyncio
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        AuditEntry,
        BusinessDeadlineRequest,
        DeadlineItem,
        DeadlineRequest,
        DispatchBookingRequest,
        DispatchRecord,
        ExtraRecord,
        MailRequest,
        RequestOpened,
        RequestProjection,
        SlaEventRecord,
        StatusChangeRecord,
    )
    from domain.local_time import format_local, local_date
    from domain.naming import SA_CUSTOMER_ID, SA_REQUEST_STATE, SA_SLA_BREACHED, SA_TECHNICAL_LEAD
    from domain.program import EXTRA_RULES, BillableExtra, BillableExtraKind, CompleteStepSignal, Rejection
    from domain.request import (
        AcceptResolution,
        ApproveDispatch,
        Dispatch,
        DispatchState,
        Pend,
        Proposal,
        ProposeResolution,
        RecordVisit,
        RecordWrittenAcceptance,
        RejectResolution,
        RequestDispatch,
        RequestInput,
        RequestResult,
        RequestState,
        RequestStatus,
        Respond,
        Resume,
        SlaEvent,
        SlaEventKind,
        StatusChange,
    )
    from workflows import activity_calls as act
    from workflows.signal_route import StepHandlers, rejection_recipient, run_step

# Versioned changes of the command sequence (`workflow.patched`), as in workflows/program.py: a request
# opened before the change replays on the old path (tests/replay/pre-patch/ keeps one such history).
PATCH_OPEN_IN_ONE_WRITE = "open-request-in-one-write"

# Dispatches that still hold the request's on-site support: one at a time.
_ACTIVE_DISPATCH = (DispatchState.requested, DispatchState.approved, DispatchState.booked)


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value else None


@workflow.defn
class SupportRequestWorkflow:
    @workflow.init
    def __init__(self, input: RequestInput) -> None:
        r = input.request
        self._input = input
        self._lock = asyncio.Lock()
        self._wakeup = False
        self._ready = False  # set once the request is recorded and its clock computed
        self._warning_done = False
        # People's actions since the last save, for the audit log (written by save_request, once each).
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
        async with self._lock:
            refusal = self._c13_refusal()
            if refusal is not None:
                await self._refuse(refusal)
            else:
                await self._open()
            self._ready = True

        while not self._closed():
            # Reset before the work: an Update landing while an activity runs sets it again.
            self._wakeup = False
            async with self._lock:
                await self._process_due_events()
            if self._closed():
                break
            nxt = self._next_event()
            try:
                if nxt is None:
                    await workflow.wait_condition(lambda: self._wakeup)
                else:
                    at, label = nxt
                    await workflow.wait_condition(
                        lambda: self._wakeup, timeout=max(at - workflow.now(), timedelta(seconds=1)),
                        timeout_summary=f"{label} at {self._local(at)}",
                    )
            except TimeoutError:
                pass

        # Let in-flight Updates finish before the run ends (Temporal would warn and drop them).
        await workflow.wait_condition(workflow.all_handlers_finished)
        return RequestResult(tracking_number=s.tracking_number, state=s.state, sla_breached=s.sla_breached,
                             closure=s.closure, refusal=s.refusal)

    def _closed(self) -> bool:
        return self._status.state == RequestState.closed

    def _c13_refusal(self) -> str | None:
        r = self._input.request
        if r.customisation and not (r.agreement_ref or "").strip():
            return ("rule C13: customisations of OT products are not covered; a request marked as customisation "
                    "needs the reference of a separate agreement (agreement_ref)")
        return None

    async def _refuse(self, refusal: str) -> None:
        """Rule C13: the request is recorded, refused and closed; the run completes (it does not fail)."""
        s = self._status
        i = self._input
        s.refusal = refusal
        s.state = RequestState.closed
        s.closed_at = workflow.now()
        self._publish()
        self._record_opening()
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
        then the TL's mail. Three steps instead of six, the same rows and the same mail."""
        s = self._status
        i = self._input
        p = i.policy
        r = i.request
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
        await act.record_request_opened(
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

    # ------------------------------------------------------------- timed events
    def _next_event(self) -> tuple[datetime, str] | None:
        s = self._status
        candidates: list[tuple[datetime, str]] = []
        if self._clock_running():
            assert s.first_response_deadline is not None
            if s.first_response_warning_at is not None and not self._warning_done:
                candidates.append((s.first_response_warning_at, "First-response warning (C12)"))
            if not s.sla_breached:
                candidates.append((s.first_response_deadline, "First-response deadline (C12)"))
        for n, d in enumerate(s.dispatches, 1):
            if d.state == DispatchState.requested:
                if d.customer_approved_at is None:
                    candidates.append((d.customer_approval_due_at, f"Customer approval of dispatch #{n} due (A4)"))
                if d.manager_approved_at is None:
                    candidates.append((d.manager_approval_due_at, f"Manager approval of dispatch #{n} due (A4)"))
        return min(candidates, key=lambda c: c[0]) if candidates else None

    def _clock_running(self) -> bool:
        s = self._status
        return (s.state != RequestState.closed and s.first_response_at is None
                and s.first_response_deadline is not None)

    async def _process_due_events(self) -> None:
        s = self._status
        i = self._input
        now = workflow.now()
        changed = False
        if self._clock_running():
            deadline = s.first_response_deadline
            assert deadline is not None
            warning_at = s.first_response_warning_at
            if warning_at is not None and not self._warning_done and now >= warning_at:
                self._warning_done = True
                if now < deadline:  # past the deadline already, the escalation says it all
                    changed = True
                    await self._sla(SlaEventKind.warned, f"no first response yet; deadline {self._local(deadline)}")
                    # rule C12: warning before the deadline, to the support desk and the TL.
                    await self._mail([i.policy.support_desk_mailbox], "request_sla_warning", "sla-warning",
                                     {"minutes_left": max(0, int((deadline - now).total_seconds() // 60))},
                                     cc=[i.technical_lead.email])
            if not s.sla_breached and now >= deadline:
                changed = True
                s.sla_breached = True
                self._publish()
                await self._sla(SlaEventKind.breached, f"no first response by {self._local(deadline)}")
                # rule C12: escalation at the breach, to the support manager and the TL.
                await self._mail([i.policy.support_manager_mailbox], "request_sla_breached", "sla-breached", {},
                                 cc=[i.technical_lead.email])
        for n, d in enumerate(s.dispatches, 1):
            if d.state != DispatchState.requested:
                continue
            late = [(party, due) for party, due, approved in (
                ("customer", d.customer_approval_due_at, d.customer_approved_at),
                ("manager", d.manager_approval_due_at, d.manager_approved_at),
            ) if approved is None and now >= due]
            if late:
                party, due = late[0]
                changed = True
                # rule A4: without both approvals in time nobody goes on site and nothing is billed.
                d.state = DispatchState.refused
                d.refusal = (f"rule A4: dispatch #{n} refused: the {self._party(party)} approval was not given by "
                             f"its deadline {self._local(due)}; nothing is billed")
                await self._record_dispatch(n)
                await self._mail([i.technical_lead.email], "dispatch_refused", f"dispatch-{n}-refused",
                                 {"dispatch": self._dispatch_context(n), "refusal": d.refusal})
        if changed:
            await self._save()

    # ------------------------------------------------------------ helpers
    def _key(self, purpose: str) -> str:
        # Stable across retries, replays and worker crashes: unique keys in the database.
        return f"{self._status.workflow_id}:{purpose}"

    def _record(self, action: str, by: str, via: str, detail: dict[str, Any] | None = None) -> None:
        """A person's action on the request, for the audit log; `via` is the interface it came from.

        Written by the next save (save_request, or record_request_opened): no new command in
        history, so running requests replay unchanged. The key of each entry is its digest
        (activities.db.audit_key), so a retried save stores it once.
        """
        s = self._status
        self._audit.append(AuditEntry(at=workflow.now(), actor=by, action=action, customer_id=s.customer_id,
                                      interface=via, detail={"tracking_number": s.tracking_number, **(detail or {})}))

    def _record_opening(self) -> None:
        r = self._input.request
        # The channel says how the customer reached OT; as an interface only "portal" and "cli" are known.
        via = r.channel.value if r.channel.value in ("portal", "cli") else "temporal"
        self._record("open_request", r.filed_by, via, {"kind": r.kind.value, "priority": r.priority.value,
                                                      "channel": r.channel.value, "summary": r.summary[:200]})

    def _drain_audit(self) -> list[AuditEntry]:
        audit, self._audit = self._audit, []
        return audit

    def _local(self, at: datetime | None) -> str:
        """An instant as people of the programme read it: local time, named time zone."""
        return format_local(at, self._input.calendar.timezone)

    def _local_date(self, at: datetime) -> date:
        return local_date(at, self._input.calendar.timezone)

    @staticmethod
    def _party(party: str) -> str:
        return "customer's" if party == "customer" else "OT support manager's"

    async def _record_change(self, from_state: RequestState | None, to_state: RequestState, by: str,
                             note: str) -> None:
        """Rule A4: every status change stored, with who and when."""
        s = self._status
        change = StatusChange(at=workflow.now(), from_state=from_state, to_state=to_state, by=by, note=note)
        s.history.append(change)
        await act.record_status_change(
            StatusChangeRecord(tracking_number=s.tracking_number, change=change,
                               idempotency_key=self._key(f"status:{len(s.history)}")),
            summary=f"Status {from_state.value if from_state else 'new'} -> {to_state.value} by {by} (A4)",
        )

    async def _set_state(self, to_state: RequestState, by: str, note: str) -> None:
        s = self._status
        from_state = s.state
        s.state = to_state
        await self._record_change(from_state, to_state, by, note)

    async def _sla(self, kind: SlaEventKind, note: str) -> None:
        """Rule C12: every SLA event is stored."""
        s = self._status
        assert s.first_response_deadline is not None
        event = SlaEvent(kind=kind, at=workflow.now(), deadline=s.first_response_deadline, note=note)
        s.sla_events.append(event)
        await act.record_sla_event(
            SlaEventRecord(tracking_number=s.tracking_number, event=event, idempotency_key=self._key(f"sla:{kind}")),
            summary=f"SLA event {kind.value} (C12)",
        )

    async def _first_response(self, by: str, how: str) -> None:
        """Rule C12: the first response stops the clock, met or late."""
        s = self._status
        if s.first_response_at is not None or s.first_response_deadline is None:
            return
        now = workflow.now()
        s.first_response_at, s.first_response_by = now, by
        if now <= s.first_response_deadline:
            await self._sla(SlaEventKind.met, f"{how} by {by}")
        else:
            late = int((now - s.first_response_deadline).total_seconds() // 60)
            await self._sla(SlaEventKind.responded_late, f"{how} by {by}, {late} min after the deadline")

    def _request_context(self) -> dict[str, Any]:
        s = self._status
        i = self._input
        r = i.request
        return {
            "tracking_number": s.tracking_number, "kind": s.kind.value, "priority": s.priority.value,
            "summary": s.summary, "description": r.description, "filed_by": r.filed_by, "channel": r.channel.value,
            "state": s.state.value, "opened_at_local": self._local(s.opened_at),
            "deadline_local": self._local(s.first_response_deadline),
            "warning_local": self._local(s.first_response_warning_at),
            "round_the_clock": bool(i.calendar.out_of_hours_agreement_ref),
            "first_response_minutes": i.policy.first_response_minutes,
            "technical_lead": i.technical_lead.model_dump(mode="json"),
        }

    def _dispatch_context(self, n: int) -> dict[str, Any]:
        d = self._status.dispatches[n - 1]
        return {
            "number": n, "reason": d.reason, "estimated_cost": d.estimated_cost.model_dump(mode="json"),
            "agreement_ref": d.agreement_ref, "requested_by": d.requested_by,
            "customer_due_local": self._local(d.customer_approval_due_at),
            "manager_due_local": self._local(d.manager_approval_due_at),
            "engineer": d.engineer, "engineer_email": d.engineer_email, "booking_ref": d.booking_ref,
        }

    async def _mail(self, to: list[str], template: str, purpose: str, context: dict[str, Any],
                    cc: list[str] | None = None) -> None:
        i = self._input
        s = self._status
        try:
            await act.send_mail(
                MailRequest(idempotency_key=self._key(f"mail:{purpose}"), to=to, cc=cc or [], template=template,
                            customer_id=s.customer_id,
                            context={"customer_name": i.customer_name, "customer_id": s.customer_id,
                                     "portal_url": i.policy.portal_url, **self._request_context(), **context}),
                summary=f"Mail '{template}' to {', '.join(to)}",
            )
        except ActivityError as err:
            # SMTP refused the message for good (5xx): log it, never fail the request.
            workflow.logger.warning("mail %s to %s refused for good: %s", template, to, err.cause or err)

    async def _record_dispatch(self, n: int) -> None:
        s = self._status
        d = s.dispatches[n - 1]
        await act.record_dispatch(
            DispatchRecord(tracking_number=s.tracking_number, customer_id=s.customer_id, seq=n, dispatch=d,
                           at=workflow.now()),
            summary=f"Dispatch #{n}: {d.state.value} (A4)",
        )

    async def _save(self) -> None:
        i = self._input
        self._publish()
        await act.save_request(
            RequestProjection(period=i.period, request=i.request, status=self._status, at=workflow.now(),
                              audit=self._drain_audit()),
            summary=f"Save request state ({self._status.state.value})",
        )

    def _publish(self) -> None:
        """Search attributes and current details: what admins and the TL inbox see."""
        s = self._status
        i = self._input
        updates: list[SearchAttributeUpdate[Any]] = [
            SA_CUSTOMER_ID.value_set(s.customer_id),
            SA_TECHNICAL_LEAD.value_set(i.technical_lead.id),
            SA_REQUEST_STATE.value_set(s.state.value),
            SA_SLA_BREACHED.value_set(s.sla_breached),
        ]
        workflow.upsert_search_attributes(updates)
        lines = [f"**{s.tracking_number}** {s.kind.value} request of {i.customer_name} ({s.customer_id}), "
                 f"priority {s.priority.value}, state **{s.state.value}**",
                 f"Summary: {s.summary}",
                 f"TL: {i.technical_lead.name} ({i.technical_lead.id})"]
        if s.refusal:
            lines.append(f"Refused: {s.refusal}")
        if s.first_response_at is not None:
            lines.append(f"First response by {s.first_response_by} at {self._local(s.first_response_at)} "
                         f"(deadline {self._local(s.first_response_deadline)})")
        elif s.first_response_deadline is not None:
            lines.append(f"First response due by {self._local(s.first_response_deadline)} (C12)")
        if s.sla_breached:
            lines.append("SLA breached (C12)")
        if s.state == RequestState.pending:
            lines.append(f"Pending: {s.pending_reason}")
        if s.proposal is not None:
            lines.append(f"Measures proposed by {s.proposal.proposed_by}: {s.proposal.measures}")
        for n, d in enumerate(s.dispatches, 1):
            lines.append(f"Dispatch #{n}: {d.state.value} ({d.estimated_cost}, agreement {d.agreement_ref})"
                         + (f", booking {d.booking_ref}" if d.booking_ref else ""))
        if s.closure:
            lines.append(f"Closed: {s.closure}")
        workflow.set_current_details("\n".join(lines))

    # ------------------------------------------------------------ checks
    def _check_live(self, action: str) -> None:
        s = self._status
        if s.state == RequestState.closed:
            raise ValueError(f"{action} refused: request {s.tracking_number} is closed"
                             + (f" ({s.closure or s.refusal})" if (s.closure or s.refusal) else ""))

    def _current_dispatch(self, action: str) -> tuple[int, Dispatch]:
        s = self._status
        if not s.dispatches:
            raise ValueError(f"{action} refused: no on-site dispatch was requested for {s.tracking_number}")
        return len(s.dispatches), s.dispatches[-1]

    def _check_no_open_visit(self, action: str) -> None:
        for n, d in enumerate(self._status.dispatches, 1):
            if d.state in (DispatchState.approved, DispatchState.booked):
                raise ValueError(f"{action} refused: on-site dispatch #{n} is {d.state.value}"
                                 + (f" (booking {d.booking_ref})" if d.booking_ref else "")
                                 + "; record its visit (record_visit) first so its cost is billed (rule A4, C3)")

    def _recheck(self, check: Callable[[Any], None], inp: Any) -> None:
        # Two Updates may both pass their validators before either runs: checked again
        # under the lock. ApplicationError fails only the Update, never the workflow.
        try:
            check(inp)
        except ValueError as err:
            raise ApplicationError(str(err), type="StepRefused", non_retryable=True) from None

    async def _until_ready(self) -> None:
        # An Update sent right after the start waits until the request is recorded.
        await workflow.wait_condition(lambda: self._ready)

    async def _close(self, by: str, closure: str) -> None:
        """Rule A4: closed only on accepted measures or the customer's written acceptance."""
        s = self._status
        # Closing answers the customer: a clock still running stops here.
        await self._first_response(by, "closed")
        for n, d in enumerate(s.dispatches, 1):
            if d.state == DispatchState.requested:
                d.state = DispatchState.refused
                d.refusal = f"request closed before dispatch #{n} was approved; nothing is billed"
                await self._record_dispatch(n)
        s.closed_at = workflow.now()
        s.closure = closure
        s.pending_reason = None
        await self._set_state(RequestState.closed, by, closure)

    # ================================================================== Query
    @workflow.query
    def get_status(self) -> RequestStatus:
        return self._status

    # ================================================================== Updates
    @workflow.update
    async def respond(self, inp: Respond) -> RequestStatus:
        """Rule C12: the support rep's first response stops the clock (met or responded late)."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_respond, inp)
            # A deadline passed but not yet processed is recorded first, so events stay in order.
            await self._process_due_events()
            await self._first_response(inp.by, f"answered: {inp.message[:200]}")
            self._record("respond", inp.by, inp.via, {"message": inp.message[:200]})
            await self._save()
            self._wakeup = True
            return self._status

    @respond.validator
    def _validate_respond(self, inp: Respond) -> None:
        self._check_respond(inp)

    def _check_respond(self, inp: Respond) -> None:
        self._check_live("respond")
        s = self._status
        if s.first_response_at is not None:
            raise ValueError(f"request {s.tracking_number} was answered already by {s.first_response_by} at "
                             f"{self._local(s.first_response_at)}; the first-response clock (C12) has stopped")

    @workflow.update
    async def pend(self, inp: Pend) -> RequestStatus:
        """Waiting for the customer (A6 'pending'), with the reason kept."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_pend, inp)
            s = self._status
            s.pending_reason = inp.reason
            await self._set_state(RequestState.pending, inp.by, inp.reason)
            self._record("pend", inp.by, inp.via, {"reason": inp.reason[:200]})
            await self._save()
            self._wakeup = True
            return s

    @pend.validator
    def _validate_pend(self, inp: Pend) -> None:
        self._check_pend(inp)

    def _check_pend(self, inp: Pend) -> None:
        self._check_live("pend")
        s = self._status
        if s.state == RequestState.pending:
            raise ValueError(f"request {s.tracking_number} is already pending: {s.pending_reason}")

    @workflow.update
    async def resume(self, inp: Resume) -> RequestStatus:
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_resume, inp)
            s = self._status
            reason = s.pending_reason
            s.pending_reason = None
            await self._set_state(RequestState.open, inp.by, inp.note or f"resumed (was pending: {reason})")
            self._record("resume", inp.by, inp.via, {"note": inp.note[:200]})
            await self._save()
            self._wakeup = True
            return s

    @resume.validator
    def _validate_resume(self, inp: Resume) -> None:
        self._check_resume(inp)

    def _check_resume(self, inp: Resume) -> None:
        self._check_live("resume")
        s = self._status
        if s.state != RequestState.pending:
            raise ValueError(f"request {s.tracking_number} is {s.state.value}, not pending: nothing to resume")
        if s.proposal is not None:
            raise ValueError(f"the measures proposed by {s.proposal.proposed_by} await the customer's answer: "
                             f"accept_resolution or reject_resolution")

    @workflow.update
    async def propose_resolution(self, inp: ProposeResolution) -> RequestStatus:
        """Rule A4: OT proposes measures; the request waits for the customer's answer (pending)."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_propose, inp)
            s = self._status
            await self._process_due_events()
            # Proposed measures answer the customer: a clock still running stops here (C12).
            await self._first_response(inp.by, "measures proposed")
            s.proposal = Proposal(measures=inp.measures, proposed_by=inp.by, proposed_at=workflow.now())
            s.pending_reason = "waiting for the customer to accept the proposed measures (A4)"
            await self._set_state(RequestState.pending, inp.by, f"measures proposed: {inp.measures}")
            self._record("propose_resolution", inp.by, inp.via, {"measures": inp.measures[:200]})
            await self._save()
            self._wakeup = True
            return s

    @propose_resolution.validator
    def _validate_propose(self, inp: ProposeResolution) -> None:
        self._check_propose(inp)

    def _check_propose(self, inp: ProposeResolution) -> None:
        self._check_live("propose_resolution")
        s = self._status
        if s.proposal is not None:
            raise ValueError(f"measures proposed by {s.proposal.proposed_by} at "
                             f"{self._local(s.proposal.proposed_at)} already await the customer's answer")

    @workflow.update
    async def accept_resolution(self, inp: AcceptResolution) -> RequestStatus:
        """Rule A4: the customer accepts the measures OT proposed; the request closes."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_accept, inp)
            s = self._status
            assert s.proposal is not None
            await self._close(inp.by, f"measures accepted by the customer ({inp.by}): {s.proposal.measures}")
            self._record("accept_resolution", inp.by, inp.via)
            await self._save()
            self._wakeup = True
            return s

    @accept_resolution.validator
    def _validate_accept(self, inp: AcceptResolution) -> None:
        self._check_accept(inp)

    def _check_accept(self, inp: AcceptResolution) -> None:
        self._check_live("accept_resolution")
        s = self._status
        if s.proposal is None:
            raise ValueError(f"rule A4: request {s.tracking_number} has no proposed measures to accept; it closes "
                             f"only when OT proposes measures (propose_resolution) and the customer accepts them, "
                             f"or ops record the customer's written acceptance")
        self._check_no_open_visit("accept_resolution")

    @workflow.update
    async def reject_resolution(self, inp: RejectResolution) -> RequestStatus:
        """The customer does not agree with the measures: back to open (A4)."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_reject, inp)
            s = self._status
            s.proposal = None
            s.pending_reason = None
            await self._set_state(RequestState.open, inp.by, f"proposed measures rejected: {inp.reason}")
            self._record("reject_resolution", inp.by, inp.via, {"reason": inp.reason[:200]})
            await self._save()
            self._wakeup = True
            return s

    @reject_resolution.validator
    def _validate_reject(self, inp: RejectResolution) -> None:
        self._check_reject(inp)

    def _check_reject(self, inp: RejectResolution) -> None:
        self._check_live("reject_resolution")
        if self._status.proposal is None:
            raise ValueError(f"request {self._status.tracking_number} has no proposed measures to reject")

    @workflow.update
    async def record_written_acceptance(self, inp: RecordWrittenAcceptance) -> RequestStatus:
        """Rule A4: ops record the customer's written acceptance; the request closes."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_written_acceptance, inp)
            await self._close(inp.by, f"customer's written acceptance {inp.reference}, recorded by {inp.by}")
            self._record("record_written_acceptance", inp.by, inp.via, {"reference": inp.reference})
            await self._save()
            self._wakeup = True
            return self._status

    @record_written_acceptance.validator
    def _validate_written_acceptance(self, inp: RecordWrittenAcceptance) -> None:
        self._check_written_acceptance(inp)

    def _check_written_acceptance(self, inp: RecordWrittenAcceptance) -> None:
        self._check_live("record_written_acceptance")
        self._check_no_open_visit("record_written_acceptance")

    # ------------------------------------------------------------ on-site dispatch (A4)
    @workflow.update
    async def request_dispatch(self, inp: RequestDispatch) -> RequestStatus:
        """Rule A4: on-site support at extra cost, with an agreement (C3); both parties approve in time."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_request_dispatch, inp)
            s = self._status
            i = self._input
            p = i.policy
            now = workflow.now()
            n = len(s.dispatches) + 1
            today = self._local_date(now)
            sched = await act.schedule_deadlines(
                DeadlineRequest(calendar=i.calendar, reminder_business_days=0, items=[
                    DeadlineItem(key="customer", business_days_from=today,
                                 business_days=p.dispatch_customer_approval_business_days),
                    DeadlineItem(key="manager", business_days_from=today,
                                 business_days=p.dispatch_manager_approval_business_days),
                ]),
                summary=f"Approval deadlines of dispatch #{n} (A4, business days)",
            )
            due = {d.key: d.due_at for d in sched.items}
            s.dispatches.append(Dispatch(
                reason=inp.reason, estimated_cost=inp.estimated_cost, agreement_ref=inp.agreement_ref,
                requested_by=inp.by, requested_at=now, customer_approval_due_at=due["customer"],
                manager_approval_due_at=due["manager"]))
            await self._record_dispatch(n)
            await self._mail([c.email for c in i.contacts] or [i.policy.ops_mailbox], "dispatch_requested",
                             f"dispatch-{n}-requested", {"dispatch": self._dispatch_context(n)},
                             cc=[i.policy.support_manager_mailbox, i.technical_lead.email])
            self._record("request_dispatch", inp.by, inp.via, {
                "dispatch": n, "reason": inp.reason[:200], "agreement_ref": inp.agreement_ref,
                "estimated_cost": inp.estimated_cost.model_dump(mode="json")})
            await self._save()
            self._wakeup = True
            return s

    @request_dispatch.validator
    def _validate_request_dispatch(self, inp: RequestDispatch) -> None:
        self._check_request_dispatch(inp)

    def _check_request_dispatch(self, inp: RequestDispatch) -> None:
        self._check_live("request_dispatch")
        for n, d in enumerate(self._status.dispatches, 1):
            if d.state in _ACTIVE_DISPATCH:
                raise ValueError(f"request_dispatch refused: dispatch #{n} is still {d.state.value}")

    @workflow.update
    async def approve_dispatch(self, inp: ApproveDispatch) -> RequestStatus:
        """Rule A4: the customer (accepts the extra cost) and an OT support manager approve."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_approve, inp)
            s = self._status
            i = self._input
            n, d = self._current_dispatch("approve_dispatch")
            now = workflow.now()
            if inp.party == "customer":
                d.customer_approved_by, d.customer_approved_at = inp.by, now
            else:
                d.manager_approved_by, d.manager_approved_at = inp.by, now
            if d.customer_approved_at is not None and d.manager_approved_at is not None:
                d.state = DispatchState.approved
                await self._record_dispatch(n)
                booking = await act.book_dispatch(
                    DispatchBookingRequest(tracking_number=s.tracking_number, customer_id=s.customer_id,
                                           customer_name=i.customer_name, seq=n, dispatch=d,
                                           idempotency_key=self._key(f"dispatch-{n}:booking"), at=now),
                    summary=f"Book the on-site visit of dispatch #{n} (A4)",
                )
                d.engineer, d.engineer_email, d.booking_ref = (booking.engineer, booking.engineer_email,
                                                               booking.booking_ref)
                d.state = DispatchState.booked
                await self._record_dispatch(n)
                ctx = {"dispatch": self._dispatch_context(n)}
                await self._mail([booking.engineer_email], "dispatch_booked", f"dispatch-{n}-booked-engineer",
                                 {**ctx, "audience": "engineer"}, cc=[i.technical_lead.email])
                await self._mail([c.email for c in i.contacts] or [i.policy.ops_mailbox], "dispatch_booked",
                                 f"dispatch-{n}-booked-contacts", {**ctx, "audience": "contacts"},
                                 cc=[i.technical_lead.email])
            else:
                await self._record_dispatch(n)
            self._record("approve_dispatch", inp.by, inp.via, {"dispatch": n, "party": inp.party})
            await self._save()
            self._wakeup = True
            return s

    @approve_dispatch.validator
    def _validate_approve(self, inp: ApproveDispatch) -> None:
        self._check_approve(inp)

    def _check_approve(self, inp: ApproveDispatch) -> None:
        self._check_live("approve_dispatch")
        n, d = self._current_dispatch("approve_dispatch")
        if d.state == DispatchState.refused:
            raise ValueError(d.refusal or f"rule A4: dispatch #{n} was refused")
        if d.state != DispatchState.requested:
            raise ValueError(f"dispatch #{n} is {d.state.value} already; no approval is pending")
        approved_by, due = ((d.customer_approved_by, d.customer_approval_due_at) if inp.party == "customer"
                            else (d.manager_approved_by, d.manager_approval_due_at))
        if approved_by is not None:
            raise ValueError(f"the {self._party(inp.party)} approval of dispatch #{n} was given by {approved_by}")
        if workflow.now() >= due:
            raise ValueError(f"rule A4: the {self._party(inp.party)} approval of dispatch #{n} is late: its "
                             f"deadline was {self._local(due)}; the dispatch is refused and nothing is billed")

    @workflow.update
    async def record_visit(self, inp: RecordVisit) -> RequestStatus:
        """Rule A4: the visit took place; its cost becomes a billable extra with its agreement (C3)."""
        await self._until_ready()
        async with self._lock:
            self._recheck(self._check_visit, inp)
            s = self._status
            i = self._input
            n, d = self._current_dispatch("record_visit")
            d.visit_on, d.visit_notes, d.state = inp.visit_on, inp.notes, DispatchState.visited
            kind = BillableExtraKind.on_site_dispatch
            extra = BillableExtra(
                kind=kind, rule=EXTRA_RULES[kind],
                description=(f"On-site dispatch #{n} for request {s.tracking_number} on {inp.visit_on} "
                             f"({d.engineer or 'engineer'}, booking {d.booking_ref}): {d.reason}"),
                agreement_ref=d.agreement_ref, amount=inp.actual_cost or d.estimated_cost,
                recorded_at=workflow.now(), recorded_by=inp.by)
            await act.record_billable_extra(
                ExtraRecord(customer_id=s.customer_id, period=i.period, extra=extra,
                            idempotency_key=self._key(f"dispatch-{n}:extra")),
                summary=f"Billable extra: on-site dispatch #{n}, {extra.amount} (A4, C3)",
            )
            await self._record_dispatch(n)
            self._record("record_visit", inp.by, inp.via, {"dispatch": n, "visit_on": inp.visit_on.isoformat(),
                                                           "amount": extra.amount.model_dump(mode="json")
                                                           if extra.amount else None})
            await self._save()
            self._wakeup = True
            return s

    @record_visit.validator
    def _validate_visit(self, inp: RecordVisit) -> None:
        self._check_visit(inp)

    def _check_visit(self, inp: RecordVisit) -> None:
        self._check_live("record_visit")
        n, d = self._current_dispatch("record_visit")
        if d.state != DispatchState.booked:
            raise ValueError(f"record_visit refused: dispatch #{n} is {d.state.value}; only a booked visit "
                             f"(both approvals in) can be recorded")
        requested_on = self._local_date(d.requested_at)
        if inp.visit_on < requested_on:
            raise ValueError(f"visit_on {inp.visit_on} is before dispatch #{n} was requested ({requested_on})")
        if inp.actual_cost is not None and inp.actual_cost.currency != d.estimated_cost.currency:
            raise ValueError(f"actual_cost is in {inp.actual_cost.currency}; the agreed estimate is in "
                             f"{d.estimated_cost.currency}")

    # ------------------------------------------------------------- the signal route
    @workflow.signal
    async def complete_step(self, sig: CompleteStepSignal) -> None:
        """For tools that can only signal: the same models, validators and bodies as the Updates;
        a refusal is kept in the state (`get_status().rejections`) and mailed, never raised."""
        handlers: StepHandlers = {
            "respond": (Respond, self._validate_respond, self.respond),
            "pend": (Pend, self._validate_pend, self.pend),
            "resume": (Resume, self._validate_resume, self.resume),
            "propose_resolution": (ProposeResolution, self._validate_propose, self.propose_resolution),
            "accept_resolution": (AcceptResolution, self._validate_accept, self.accept_resolution),
            "reject_resolution": (RejectResolution, self._validate_reject, self.reject_resolution),
            "record_written_acceptance": (RecordWrittenAcceptance, self._validate_written_acceptance,
                                          self.record_written_acceptance),
            "request_dispatch": (RequestDispatch, self._validate_request_dispatch, self.request_dispatch),
            "approve_dispatch": (ApproveDispatch, self._validate_approve, self.approve_dispatch),
            "record_visit": (RecordVisit, self._validate_visit, self.record_visit),
        }
        await self._until_ready()
        refusal = await run_step(handlers, sig.step, sig.by, sig.payload)
        if refusal is None:
            return
        async with self._lock:
            s = self._status
            s.rejections.append(Rejection(at=workflow.now(), step=sig.step, by=sig.by, reason=refusal))
            self._record("signal_rejected", sig.by, "signal", {"step": sig.step, "reason": refusal})
            i = self._input
            to = [rejection_recipient(sig.by, i.technical_lead, i.policy)]
            await self._mail(to, "step_rejected", f"rejected:{len(s.rejections)}",
                             {"step": sig.step, "reason": refusal, "by": sig.by})
            await self._save()
