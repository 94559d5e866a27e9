"""What every part of SupportRequestWorkflow shares: its state, the audit log, the first-response
clock (C12) and the dispatch deadlines (A4), and the side effects (status changes, SLA events, mails,
saving the state, publishing it to the Temporal UI and the TL inbox).

SupportRequestWorkflow (workflows/support_request.py) is assembled from this base and two parts:
the request's answer and resolution (request_resolution.py) and on-site dispatch (request_dispatch.py).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        AuditEntry,
        DispatchRecord,
        ExtraRecord,
        MailRequest,
        MessageRecord,
        RequestProjection,
        SlaEventRecord,
        StatusChangeRecord,
    )
    from domain.local_time import first_response_promise, format_local, local_date
    from domain.naming import SA_CUSTOMER_ID, SA_REQUEST_STATE, SA_SLA_BREACHED, SA_TECHNICAL_LEAD
    from domain.program import BillableExtra
    from domain.request import (
        THREAD_IN_STATE,
        AttachmentRef,
        AuthorRole,
        DispatchState,
        Message,
        RequestInput,
        RequestState,
        RequestStatus,
        SlaEvent,
        SlaEventKind,
        StatusChange,
        thread_preview,
    )
    from domain.rules_request import approval_expired
    from workflows import activity_calls as act

from workflows.search_attributes import upsert_changed
from workflows.updatable_sleep import UpdatableSleep
from workflows.update_sequence import UpdateSequence

# OT's answers (respond, pend, propose) and the customer's rejection go into the thread and mail the
# other side (A4). Requests that answered before this change replay without those messages.
PATCH_ACTIONS_IN_THREAD = "request-actions-post-to-the-thread"
# Issue 16: the request's opening row is written by a local activity (workflows/support_request.py), and
# `_publish` upserts only the search attributes whose value changes (the starter sets all four at the start;
# most steps change none: each upsert is a billable Action and a history event). A request opened before
# replays with its activity and its every upsert. docs/local-activities.md.
PATCH_OPEN_LOCALLY = "request-opens-locally-upserts-only-changes"


class RequestBase:
    _input: RequestInput
    _status: RequestStatus
    # Every Update waits until the request is recorded, re-checks under the lock, saves, wakes the loop.
    _updates: UpdateSequence
    _sleep: UpdatableSleep
    _ready: bool  # set once the request is recorded and its clock computed
    _warning_done: bool
    # People's actions since the last save, for the audit log (written by save_request, once each).
    _audit: list[AuditEntry]

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
                d.refusal = approval_expired(n, party, due, self._tz)
                await self._record_dispatch(n)
                await self._mail([i.technical_lead.email], "dispatch_refused", f"dispatch-{n}-refused",
                                 {"dispatch": self._dispatch_context(n), "refusal": d.refusal})
        if changed:
            await self._save()

    # ------------------------------------------------------------ helpers
    def _key(self, purpose: str) -> str:
        # Stable across retries, replays and worker crashes: unique keys in the database.
        return f"{self._status.workflow_id}:{purpose}"

    async def _record_extra(self, extra: BillableExtra, purpose: str, summary: str) -> None:
        """A billable extra of this request's customer and period (A4 dispatches, C13 customisations)."""
        await act.record_billable_extra(
            ExtraRecord(customer_id=self._status.customer_id, period=self._input.period, extra=extra,
                        idempotency_key=self._key(purpose)), summary=summary)

    def _record(self, action: str, by: str, via: str, detail: dict[str, Any] | None = None,
                at: datetime | None = None) -> None:
        """A person's action on the request, for the audit log; `via` is the interface it came from.

        Written by the next save (save_request, or record_request_opened): no new command in
        history, so running requests replay unchanged. The key of each entry is its digest
        (activities.db.audit_key), so a retried save stores it once.
        """
        s = self._status
        self._audit.append(AuditEntry(at=at or workflow.now(), actor=by, action=action, customer_id=s.customer_id,
                                      interface=via, detail={"tracking_number": s.tracking_number, **(detail or {})}))

    def _record_opening(self) -> None:
        r = self._input.request
        # The channel says how the customer reached OT; as an interface only "portal" and "cli" are known.
        via = r.channel.value if r.channel.value in ("portal", "cli") else "temporal"
        # At the run's start: the opening is written by a local activity, which runs again when the first workflow
        # task is retried (a worker died), and the same instant keeps the entry's key (activities.db.audit_key).
        self._record("open_request", r.filed_by, via, at=workflow.info().workflow_start_time, detail={
            "kind": r.kind.value, "priority": r.priority.value, "channel": r.channel.value, "summary": r.summary[:200]})

    def _drain_audit(self) -> list[AuditEntry]:
        audit, self._audit = self._audit, []
        return audit

    @property
    def _tz(self) -> str:
        return self._input.calendar.timezone

    def _local(self, at: datetime | None) -> str:
        """An instant as people of the programme read it: local time, named time zone."""
        return format_local(at, self._input.calendar.timezone)

    def _local_date(self, at: datetime) -> date:
        return local_date(at, self._input.calendar.timezone)

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
            # Rule C12 as it truly runs (business hours of this calendar, or 24x7), and the zone the
            # templates' time filter shows every other instant in.
            "first_response_promise": first_response_promise(i.calendar, i.policy.first_response_minutes,
                                                             whose="the programme's"),
            "timezone": i.calendar.timezone,
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

    # ------------------------------------------------------------- the conversation
    async def _post_message(self, by: str, role: AuthorRole, via: str, text: str,
                            attachments: list[AttachmentRef] | None = None) -> Message:
        """Rule A4: a message into the thread, stored once, and the other side mailed once."""
        s = self._status
        s.message_count += 1
        message = Message(seq=s.message_count, at=workflow.now(), by=by, role=role, via=via, text=text,
                          attachments=attachments or [])
        s.messages = [*s.messages, thread_preview(message)][-THREAD_IN_STATE:]
        await act.record_message(MessageRecord(tracking_number=s.tracking_number, message=message),
                                 summary=f"Message {message.seq} from {by} ({role.value})")
        i = self._input
        context = {"message": message.model_dump(mode="json")}
        if role == AuthorRole.customer:
            await self._mail([i.technical_lead.email], "request_message", f"message-{message.seq}", context,
                             cc=[i.policy.support_desk_mailbox])
        else:
            await self._mail([str(c.email) for c in i.contacts], "request_message", f"message-{message.seq}",
                             context, cc=[i.technical_lead.email])
        return message

    async def _into_thread(self, by: str, via: str, text: str, customer: bool = False) -> None:
        """An action's text (the first response, a pend's question, measures, a rejection) in the thread."""
        if workflow.patched(PATCH_ACTIONS_IN_THREAD):
            role = AuthorRole.customer if customer else (
                AuthorRole.technical_lead if by == self._input.technical_lead.id else AuthorRole.staff)
            await self._post_message(by, role, via, text)

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
        upsert_changed(updates, PATCH_OPEN_LOCALLY)
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

