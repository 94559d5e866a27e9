"""Activities of SupportRequestWorkflow: the request's rows in the database, and the
on-site dispatch booking (rules A4, A6, C3, C12, C13).

Every write is idempotent. Status changes and SLA events carry keys derived from the
workflow ID and their place in the request's story; the request and dispatch rows are
upserts guarded by the workflow time of the state they hold, so a retried or late
activity never writes twice nor rolls a row back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from temporalio import activity

from activities.db import append_audit_entries, audit_note, record_once
from activities.faults import REQUEST_OPENED_AFTER_COMMIT, maybe_crash
from domain.activities import (
    Ack,
    DispatchBooking,
    DispatchBookingRequest,
    DispatchRecord,
    MessageRecord,
    OpenRequests,
    OpenRequestsQuery,
    RequestOpened,
    RequestProjection,
    SlaEventRecord,
    StatusChangeRecord,
)
from domain.request import DispatchState
from storage.db import SessionFactory
from storage.repositories.customers import ensure_customer
from storage.repositories.requests import (
    append_message,
    append_sla_event,
    append_status_change,
    get_dispatch,
    list_requests,
    upsert_dispatch,
    upsert_request,
)


@dataclass(frozen=True)
class FieldEngineer:
    name: str
    email: str


# The field-service roster this service books from. A real deployment swaps this for
# its dispatch system's API behind the same activity.
DEFAULT_FIELD_ENGINEERS: tuple[FieldEngineer, ...] = (
    FieldEngineer("Field Engineer Dana Levy", "dana.levy@field.support.example"),
    FieldEngineer("Field Engineer Omar Haddad", "omar.haddad@field.support.example"),
    FieldEngineer("Field Engineer Ines Moreau", "ines.moreau@field.support.example"),
)


def booking_reference(idempotency_key: str) -> str:
    """Same key, same booking reference: a retried booking finds the visit it booked."""
    return "BK-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:10].upper()


class RequestActivities:
    def __init__(self, session_factory: SessionFactory,
                 engineers: Sequence[FieldEngineer] = DEFAULT_FIELD_ENGINEERS) -> None:
        if not engineers:
            raise ValueError("at least one field engineer is needed to book dispatches")
        self._session_factory = session_factory
        self._engineers = tuple(engineers)

    @activity.defn
    async def record_request_opened(self, opened: RequestOpened) -> Ack:
        """Rule A4: the request's row, under its unique tracking number (C13 refusals included), with its
        opening status change (A4) and the start of its first-response clock (C12) when the workflow sends
        them: one transaction, each row once per idempotency key, so a retry adds nothing."""
        status = opened.status
        async with self._session_factory() as session, session.begin():
            await ensure_customer(session, status.customer_id, opened.customer_name)
            await upsert_request(session, request=opened.request, period=opened.period, status=status, now=opened.at)
            for change in opened.changes:
                await append_status_change(session, tracking_number=change.tracking_number, change=change.change,
                                           idempotency_key=change.idempotency_key)
            for event in opened.sla_events:
                await append_sla_event(session, tracking_number=event.tracking_number, event=event.event,
                                       idempotency_key=event.idempotency_key)
            await append_audit_entries(session, status.workflow_id, opened.audit)
        maybe_crash(REQUEST_OPENED_AFTER_COMMIT)  # crash tests: committed, the first workflow task never completes
        return Ack(detail=f"request {status.tracking_number} recorded")

    @activity.defn
    async def save_request(self, projection: RequestProjection) -> Ack:
        """Projection of the workflow's RequestStatus into `support_requests` (read by reports, A6)."""
        async with self._session_factory() as session, session.begin():
            await upsert_request(session, request=projection.request, period=projection.period,
                                 status=projection.status, now=projection.at)
            added = await append_audit_entries(session, projection.status.workflow_id, projection.audit)
        status = projection.status
        return Ack(detail=f"request {status.tracking_number} saved ({status.state.value}), {audit_note(added)}")

    @activity.defn
    async def list_open_requests(self, query: OpenRequestsQuery) -> OpenRequests:
        """Rule C7: the requests a reassigned TL hands over (open or pending), oldest first."""
        async with self._session_factory() as session:
            found = await list_requests(session, customer_id=query.customer_id)
        return OpenRequests(tracking_numbers=[r.tracking_number for r in found if r.state != "closed"])

    @activity.defn
    async def record_status_change(self, record: StatusChangeRecord) -> Ack:
        """Rule A4: every status change, with who and when."""
        return await record_once(
            self._session_factory,
            lambda session: append_status_change(session, tracking_number=record.tracking_number,
                                                 change=record.change, idempotency_key=record.idempotency_key),
            lambda row: f"status change {row.id}")

    @activity.defn
    async def record_message(self, record: MessageRecord) -> Ack:
        """Rule A4: every message of the request's thread is stored, once."""
        return await record_once(
            self._session_factory,
            lambda session: append_message(session, tracking_number=record.tracking_number, message=record.message),
            lambda row: f"message {row.seq} of {row.tracking_number}")

    @activity.defn
    async def record_sla_event(self, record: SlaEventRecord) -> Ack:
        """Rule C12: every SLA event is stored (breaches show in the monthly report)."""
        return await record_once(
            self._session_factory,
            lambda session: append_sla_event(session, tracking_number=record.tracking_number,
                                             event=record.event, idempotency_key=record.idempotency_key),
            lambda _row: f"SLA event {record.event.kind}")

    @activity.defn
    async def record_dispatch(self, record: DispatchRecord) -> Ack:
        """Rule A4: the dispatch's approvals, refusal, booking and visit."""
        async with self._session_factory() as session, session.begin():
            row = await upsert_dispatch(session, tracking_number=record.tracking_number,
                                        customer_id=record.customer_id, seq=record.seq,
                                        dispatch=record.dispatch, now=record.at)
        return Ack(detail=f"dispatch {record.tracking_number}#{record.seq} {row.state}")

    @activity.defn
    async def book_dispatch(self, request: DispatchBookingRequest) -> DispatchBooking:
        """Rule A4: book the on-site visit of an approved dispatch and store the booking.

        The engineer and the booking reference follow from the idempotency key, so a
        retry (or a worker killed mid-booking) books the same visit, never a second one.
        A booking already stored for the dispatch wins.
        """
        digest = int(hashlib.sha256(request.idempotency_key.encode("utf-8")).hexdigest(), 16)
        engineer = self._engineers[digest % len(self._engineers)]
        async with self._session_factory() as session, session.begin():
            existing = await get_dispatch(session, request.tracking_number, request.seq)
            if existing is not None and existing.booking_ref:
                known = next((e for e in self._engineers if e.name == existing.engineer), engineer)
                return DispatchBooking(engineer=known.name, engineer_email=known.email,
                                       booking_ref=existing.booking_ref)
            booking_ref = booking_reference(request.idempotency_key)
            booked = request.dispatch.model_copy(update={
                "state": DispatchState.booked, "engineer": engineer.name, "engineer_email": engineer.email,
                "booking_ref": booking_ref})
            await upsert_dispatch(session, tracking_number=request.tracking_number,
                                  customer_id=request.customer_id, seq=request.seq, dispatch=booked, now=request.at)
        activity.logger.info("dispatch %s#%s booked: %s with %s", request.tracking_number, request.seq,
                             booking_ref, engineer.name)
        return DispatchBooking(engineer=engineer.name, engineer_email=engineer.email, booking_ref=booking_ref)
