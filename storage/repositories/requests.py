"""Support requests (rules A4, A6, C12, C13): tracking numbers, the request projection, its status
changes and SLA events, and its on-site dispatches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.request import Dispatch, Message, NewRequest, RequestStatus, SlaEvent, StatusChange, tracking_number
from storage.repositories.clock import as_utc, at_or_now, utc_or_none
from storage.repositories.common import (
    Inserted,
    conflict_insert,
    fresh,
    insert_ignore,
    one_by,
    rows,
    upsert,
    where_given,
)
from storage.tables import (
    DispatchRow,
    RequestMessageRow,
    RequestStatusChangeRow,
    SlaEventRow,
    SupportRequestRow,
    TrackingCounterRow,
)


async def allocate_tracking_number(session: AsyncSession, customer_id: str, year: int) -> str:
    """Rule A4: the next tracking number of `customer_id` in `year`, e.g. `TC-ACME-2027-0001`.

    One atomic statement (`INSERT ... ON CONFLICT DO UPDATE SET last = last + 1 RETURNING
    last`): on PostgreSQL the row lock makes a concurrent allocator wait for this
    transaction; on SQLite the statement takes the database write lock. Either way two
    allocations never see the same number. The caller commits (a number allocated in a
    rolled-back transaction is handed out again, never twice).
    """
    ins = conflict_insert(session, TrackingCounterRow, "tracking numbers")
    last = ins.table.c["last"]
    stmt = (ins.values(customer_id=customer_id, year=year, last=1)
            .on_conflict_do_update(index_elements=["customer_id", "year"], set_={"last": last + 1})
            .returning(last))
    sequence = int((await session.execute(stmt)).scalar_one())
    return tracking_number(customer_id, year, sequence)


async def upsert_request(
    session: AsyncSession, *, request: NewRequest, period: int, status: RequestStatus,
    now: datetime | None = None,
) -> None:
    """Write the projection of a request's `status` (SupportRequestWorkflow's state).

    The filing details come from `request`. A write carrying an older `now` than the
    stored row is ignored, so a late retry never rolls the projection back.
    """
    values: dict[str, Any] = {
        "tracking_number": status.tracking_number,
        "customer_id": status.customer_id,
        "period": period,
        "kind": str(status.kind),  # A6
        "priority": str(status.priority),  # A4
        "summary": status.summary,
        "description": request.description,
        "channel": str(request.channel),
        "filed_by": request.filed_by,
        "customisation": request.customisation,  # C13
        "agreement_ref": request.agreement_ref,  # C13
        "state": str(status.state),
        "pending_reason": status.pending_reason,
        "opened_at": as_utc(status.opened_at),
        "first_response_deadline": utc_or_none(status.first_response_deadline),  # C12
        "first_response_at": utc_or_none(status.first_response_at),
        "sla_breached": status.sla_breached,  # C12
        "closed_at": utc_or_none(status.closed_at),
        "closure": status.closure if status.closure is not None else status.refusal,
        "updated_at": at_or_now(now),
    }
    mutable = ["priority", "summary", "description", "state", "pending_reason", "first_response_deadline",
               "first_response_at", "sla_breached", "closed_at", "closure", "agreement_ref", "updated_at"]
    await upsert(session, SupportRequestRow, values, ["tracking_number"], mutable, newer_by="updated_at")


async def get_request(session: AsyncSession, tracking_number: str) -> SupportRequestRow | None:
    return await session.get(SupportRequestRow, tracking_number, populate_existing=True)


async def list_requests(
    session: AsyncSession, *, customer_id: str | None = None, state: str | None = None, kind: str | None = None,
    period: int | None = None, opened_before: datetime | None = None,
) -> list[SupportRequestRow]:
    """Requests, oldest first; the filters serve the CLI, the portal and the A6 report."""
    r = SupportRequestRow
    stmt = where_given(fresh(select(r).order_by(r.opened_at, r.tracking_number)),
                       (r.customer_id, customer_id), (r.state, state), (r.kind, kind), (r.period, period))
    if opened_before is not None:
        stmt = stmt.where(r.opened_at < as_utc(opened_before))
    return await rows(session, stmt)


# ---- status changes and SLA events (A4, C12) ----------------------------------------------


async def append_status_change(
    session: AsyncSession, *, tracking_number: str, change: StatusChange, idempotency_key: str,
) -> Inserted[RequestStatusChangeRow]:
    """Rule A4: every status change with who and when; a retried write finds its row."""
    created = await insert_ignore(session, RequestStatusChangeRow, {
        "tracking_number": tracking_number, "at": as_utc(change.at),
        "from_state": str(change.from_state) if change.from_state is not None else None,
        "to_state": str(change.to_state), "by": change.by, "note": change.note,
        "idempotency_key": idempotency_key,
    }, ["idempotency_key"])
    row = await one_by(session, RequestStatusChangeRow, RequestStatusChangeRow.idempotency_key, idempotency_key)
    return Inserted(row, created)


async def list_status_changes(session: AsyncSession, tracking_number: str) -> list[RequestStatusChangeRow]:
    stmt = fresh(select(RequestStatusChangeRow).where(RequestStatusChangeRow.tracking_number == tracking_number)
                 .order_by(RequestStatusChangeRow.at, RequestStatusChangeRow.id))
    return await rows(session, stmt)


async def append_message(session: AsyncSession, *, tracking_number: str,
                         message: Message) -> Inserted[RequestMessageRow]:
    """One message of the request's thread, once: a retried write finds its row (tracking number, seq)."""
    created = await insert_ignore(session, RequestMessageRow, {
        "tracking_number": tracking_number, "seq": message.seq, "at": as_utc(message.at), "by": message.by,
        "role": str(message.role), "via": message.via, "text": message.text,
        "attachments": [a.model_dump(mode="json") for a in message.attachments],
    }, ["tracking_number", "seq"])
    stmt = select(RequestMessageRow).where(RequestMessageRow.tracking_number == tracking_number,
                                           RequestMessageRow.seq == message.seq)
    row = (await session.execute(stmt)).scalar_one()
    return Inserted(row, created)


async def list_messages(session: AsyncSession, tracking_number: str) -> list[RequestMessageRow]:
    stmt = fresh(select(RequestMessageRow).where(RequestMessageRow.tracking_number == tracking_number)
                 .order_by(RequestMessageRow.seq))
    return await rows(session, stmt)


async def append_sla_event(
    session: AsyncSession, *, tracking_number: str, event: SlaEvent, idempotency_key: str,
) -> Inserted[SlaEventRow]:
    """Rule C12: every SLA event (started, warned, met, breached, responded_late), once."""
    created = await insert_ignore(session, SlaEventRow, {
        "tracking_number": tracking_number, "kind": str(event.kind), "at": as_utc(event.at),
        "deadline": as_utc(event.deadline), "note": event.note, "idempotency_key": idempotency_key,
    }, ["idempotency_key"])
    return Inserted(await one_by(session, SlaEventRow, SlaEventRow.idempotency_key, idempotency_key), created)


async def list_sla_events(
    session: AsyncSession, *, tracking_number: str | None = None, customer_id: str | None = None,
    kind: str | None = None,
) -> list[SlaEventRow]:
    stmt = where_given(fresh(select(SlaEventRow).order_by(SlaEventRow.at, SlaEventRow.id)),
                       (SlaEventRow.tracking_number, tracking_number))
    if customer_id is not None:
        stmt = stmt.join(SupportRequestRow, SupportRequestRow.tracking_number == SlaEventRow.tracking_number
                         ).where(SupportRequestRow.customer_id == customer_id)
    return await rows(session, stmt, (SlaEventRow.kind, kind))


# ---- on-site dispatches (A4) ----------------------------------------------------------------


def _dispatch(tracking_number: str, seq: int) -> Select[DispatchRow]:
    return fresh(select(DispatchRow).where(DispatchRow.tracking_number == tracking_number, DispatchRow.seq == seq))


async def upsert_dispatch(
    session: AsyncSession, *, tracking_number: str, customer_id: str, seq: int, dispatch: Dispatch,
    now: datetime | None = None,
) -> DispatchRow:
    """Rule A4: an on-site dispatch by (request, sequence number); later writes update its state.

    A booking reference or engineer already stored is kept when the new write has none.
    """
    values: dict[str, Any] = {
        "tracking_number": tracking_number, "customer_id": customer_id, "seq": seq, "reason": dispatch.reason,
        "estimated_cost": dispatch.estimated_cost.amount, "currency": dispatch.estimated_cost.currency,
        "agreement_ref": dispatch.agreement_ref,  # rule C3
        "state": str(dispatch.state), "requested_by": dispatch.requested_by,
        "requested_at": as_utc(dispatch.requested_at),
        "customer_approved_by": dispatch.customer_approved_by,
        "customer_approved_at": utc_or_none(dispatch.customer_approved_at),
        "manager_approved_by": dispatch.manager_approved_by,
        "manager_approved_at": utc_or_none(dispatch.manager_approved_at),
        "refusal": dispatch.refusal, "engineer": dispatch.engineer, "booking_ref": dispatch.booking_ref,
        "visit_on": dispatch.visit_on, "visit_notes": dispatch.visit_notes,
        "updated_at": at_or_now(now),
    }
    mutable = ["state", "customer_approved_by", "customer_approved_at", "manager_approved_by",
               "manager_approved_at", "refusal", "engineer", "booking_ref", "visit_on", "visit_notes", "updated_at"]
    await upsert(session, DispatchRow, values, ["tracking_number", "seq"], mutable,
                 coalesce_columns=["engineer", "booking_ref"])
    return (await session.execute(_dispatch(tracking_number, seq))).scalar_one()


async def get_dispatch(session: AsyncSession, tracking_number: str, seq: int) -> DispatchRow | None:
    return (await session.execute(_dispatch(tracking_number, seq))).scalar_one_or_none()


async def list_dispatches(
    session: AsyncSession, *, tracking_number: str | None = None, customer_id: str | None = None,
) -> list[DispatchRow]:
    stmt = fresh(select(DispatchRow).order_by(DispatchRow.requested_at, DispatchRow.id))
    return await rows(session, stmt, (DispatchRow.tracking_number, tracking_number),
                      (DispatchRow.customer_id, customer_id))
