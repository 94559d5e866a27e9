"""Support-request repositories and activities on SQLite and PostgreSQL (`database_url`):
race-safe tracking numbers (A4), idempotent status changes and SLA events (A4, C12),
a projection that never rolls back, dispatch rows and an idempotent booking (A4, C3)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from activities.requests import RequestActivities, booking_reference
from domain.activities import (
    DispatchBookingRequest,
    RequestOpened,
    RequestProjection,
    SlaEventRecord,
    StatusChangeRecord,
)
from domain.money import Money
from domain.request import (
    TRACKING_RE,
    Dispatch,
    DispatchState,
    NewRequest,
    RequestState,
    RequestStatus,
    SlaEvent,
    SlaEventKind,
    StatusChange,
)
from storage import repositories as repo
from storage.db import SessionFactory

NOW = datetime(2027, 3, 26, 15, 30, tzinfo=UTC)


@pytest.fixture
async def sessions(sessions: SessionFactory) -> SessionFactory:
    """The migrated database of conftest.py, with customer acme."""
    async with sessions() as s, s.begin():
        await repo.upsert_customer(s, "acme", "ACME Corp", "SMP-1", now=NOW)
    return sessions


def new() -> NewRequest:
    return NewRequest(customer_id="acme", kind="support", priority="high",  # type: ignore[arg-type]
                      summary="Search is down", filed_by="carol")


def status(number: str = "TC-ACME-2027-0001", **kw: object) -> RequestStatus:
    data: dict[str, object] = {"tracking_number": number, "workflow_id": f"request-{number}", "customer_id": "acme",
                               "kind": "support", "priority": "high", "summary": "Search is down", "opened_at": NOW,
                               "first_response_deadline": NOW + timedelta(hours=66)}
    data.update(kw)
    return RequestStatus.model_validate(data)


@pytest.mark.rule("A4")
async def test_a4_concurrent_tracking_number_allocations_are_all_distinct(sessions: SessionFactory) -> None:
    async def allocate(customer: str, year: int) -> str:
        async with sessions() as s, s.begin():
            return await repo.allocate_tracking_number(s, customer, year)

    numbers = await asyncio.gather(*(allocate("acme", 2027) for _ in range(20)))
    assert len(set(numbers)) == 20
    assert sorted(numbers) == [f"TC-ACME-2027-{i:04d}" for i in range(1, 21)]
    assert all(TRACKING_RE.match(n) for n in numbers)
    # Numbered per customer and per year.
    assert await allocate("globex", 2027) == "TC-GLOBEX-2027-0001"
    assert await allocate("acme", 2028) == "TC-ACME-2028-0001"


@pytest.mark.rule("A4")
async def test_a4_allocation_in_a_rolled_back_transaction_is_not_consumed(sessions: SessionFactory) -> None:
    async with sessions() as s:
        assert await repo.allocate_tracking_number(s, "acme", 2027) == "TC-ACME-2027-0001"
        await s.rollback()
    async with sessions() as s, s.begin():
        assert await repo.allocate_tracking_number(s, "acme", 2027) == "TC-ACME-2027-0001"


@pytest.mark.rule("A4", "C12")
async def test_a4_c12_status_changes_and_sla_events_are_idempotent(sessions: SessionFactory) -> None:
    acts = RequestActivities(sessions)
    await acts.record_request_opened(RequestOpened(customer_name="ACME Corp", period=1, request=new(),
                                                   status=status(), at=NOW))
    change = StatusChange(at=NOW, from_state=None, to_state=RequestState.open, by="carol", note="filed")
    for _ in range(2):  # a retried activity
        await acts.record_status_change(StatusChangeRecord(tracking_number="TC-ACME-2027-0001", change=change,
                                                           idempotency_key="request-TC-ACME-2027-0001:status:1"))
        async with sessions() as s, s.begin():
            await repo.append_sla_event(s, tracking_number="TC-ACME-2027-0001", idempotency_key="k:sla:started",
                                        event=SlaEvent(kind=SlaEventKind.started, at=NOW, deadline=NOW))
    async with sessions() as s:
        changes = await repo.list_status_changes(s, "TC-ACME-2027-0001")
        events = await repo.list_sla_events(s, customer_id="acme")
    assert [(c.from_state, c.to_state, c.by, repo.as_utc(c.at)) for c in changes] == [(None, "open", "carol", NOW)]
    assert [e.kind for e in events] == ["started"]


@pytest.mark.rule("A4")
async def test_a4_c12_the_opening_write_is_one_transaction_a_retry_adds_nothing(sessions: SessionFactory) -> None:
    """Since the `open-request-in-one-write` patch: the request, its opening status change and the clock's
    start (C12) in one activity; retried (a worker killed after the commit), no row appears twice."""
    acts = RequestActivities(sessions)
    number = "TC-ACME-2027-0002"
    change = StatusChange(at=NOW, from_state=None, to_state=RequestState.open, by="carol", note="filed")
    started = SlaEvent(kind=SlaEventKind.started, at=NOW, deadline=NOW + timedelta(hours=1), note="60 minutes")
    opened = RequestOpened(
        customer_name="ACME Corp", period=1, request=new(), status=status(number), at=NOW,
        changes=[StatusChangeRecord(tracking_number=number, change=change,
                                    idempotency_key=f"request-{number}:status:1")],
        sla_events=[SlaEventRecord(tracking_number=number, event=started,
                                   idempotency_key=f"request-{number}:sla:started")])
    for _ in range(2):
        await acts.record_request_opened(opened)
    async with sessions() as s:
        row = await repo.get_request(s, number)
        changes = await repo.list_status_changes(s, number)
        events = await repo.list_sla_events(s, tracking_number=number)
    assert row is not None and row.state == "open"
    assert [(c.from_state, c.to_state, c.by) for c in changes] == [(None, "open", "carol")]
    assert [(e.kind, repo.as_utc(e.deadline)) for e in events] == [("started", NOW + timedelta(hours=1))]


async def test_a6_request_projection_never_rolls_back(sessions: SessionFactory) -> None:
    acts = RequestActivities(sessions)
    later = NOW + timedelta(hours=1)
    await acts.save_request(RequestProjection(period=1, request=new(), at=later, status=status(
        state=RequestState.pending, pending_reason="waiting for logs")))
    # A late retry of an older projection changes nothing.
    await acts.save_request(RequestProjection(period=1, request=new(), at=NOW, status=status()))
    async with sessions() as s:
        row = await repo.get_request(s, "TC-ACME-2027-0001")
        assert row is not None and (row.state, row.pending_reason) == ("pending", "waiting for logs")
        assert [r.tracking_number for r in await repo.list_requests(s, customer_id="acme", state="pending")] == [
            "TC-ACME-2027-0001"]
        assert await repo.list_requests(s, customer_id="acme", kind="training") == []


@pytest.mark.rule("A4")
async def test_a4_c3_dispatch_booking_is_idempotent(sessions: SessionFactory) -> None:
    acts = RequestActivities(sessions)
    await acts.record_request_opened(RequestOpened(customer_name="ACME Corp", period=1, request=new(),
                                                   status=status(), at=NOW))
    d = Dispatch(reason="disk controller", estimated_cost=Money(amount=Decimal("1800.00")), agreement_ref="AGR-9",
                 requested_by="tl-alice", requested_at=NOW, customer_approval_due_at=NOW + timedelta(days=3),
                 manager_approval_due_at=NOW + timedelta(days=2), state=DispatchState.approved,
                 customer_approved_by="carol", customer_approved_at=NOW, manager_approved_by="mgr",
                 manager_approved_at=NOW)
    req = DispatchBookingRequest(tracking_number="TC-ACME-2027-0001", customer_id="acme", customer_name="ACME Corp",
                                 seq=1, dispatch=d, idempotency_key="request-TC-ACME-2027-0001:dispatch-1:booking",
                                 at=NOW)
    first = await acts.book_dispatch(req)
    again = await acts.book_dispatch(req)
    assert first == again and first.booking_ref == booking_reference(req.idempotency_key)
    async with sessions() as s:
        (row,) = await repo.list_dispatches(s, customer_id="acme")
    assert (row.state, row.booking_ref, row.engineer, row.agreement_ref) == (
        "booked", first.booking_ref, first.engineer, "AGR-9")
    assert row.estimated_cost == Decimal("1800.00") and row.customer_approved_by == "carol"
