"""The support desk's queue (C12) read from the database projection, on SQLite and PostgreSQL: the
requests not closed across customers, late first, then the clocks that run out soonest, then the
answered ones; filters by customer, priority, state and TL; a TL's queue is the programmes they lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.queries import desk_queue
from storage.db import SessionFactory
from storage.tables import CustomerRow, ProgrammeRow, SupportRequestRow

NOW = datetime(2025, 3, 17, 10, 0, tzinfo=UTC)  # a fixed instant: every clock below is relative to it


def request(number: str, customer: str, *, priority: str = "high", state: str = "open", deadline_in: int | None = 30,
            responded: bool = False, breached: bool = False) -> SupportRequestRow:
    opened = NOW - timedelta(minutes=60 - (deadline_in or 0))
    return SupportRequestRow(
        tracking_number=number, customer_id=customer, period=1, kind="support", priority=priority, summary=number,
        channel="portal", filed_by="carol", state=state, opened_at=opened,
        first_response_deadline=NOW + timedelta(minutes=deadline_in) if deadline_in is not None else None,
        first_response_at=opened + timedelta(minutes=5) if responded else None, sla_breached=breached,
        updated_at=NOW)


async def seed(sessions: SessionFactory) -> None:
    async with sessions() as s, s.begin():
        for cid, tl in (("acme", "tl-alice"), ("beta", "tl-bob")):
            s.add(CustomerRow(id=cid, name=f"{cid.title()} Corp", maintenance_subscription_id=f"SMP-{cid}",
                              created_at=NOW))
            s.add(ProgrammeRow(customer_id=cid, workflow_id=f"program-{cid}", period=1, phase="running",
                               technical_lead_id=tl, enrolment={}, status={}, updated_at=NOW))
        await s.flush()
        s.add_all([
            request("TC-ACME-2025-0001", "acme", deadline_in=30),  # waiting, 30 min left
            request("TC-ACME-2025-0002", "acme", deadline_in=-5),  # deadline passed, no response: late
            request("TC-BETA-2025-0001", "beta", deadline_in=10, priority="low"),  # waiting, 10 min left
            request("TC-BETA-2025-0002", "beta", responded=True, state="pending"),  # answered
            request("TC-ACME-2025-0003", "acme", responded=True, breached=True),  # answered late: late
            request("TC-ACME-2025-0004", "acme", state="closed", responded=True),  # not on the desk
        ])


async def numbers(sessions: SessionFactory, ids: list[str] | None = None, **filters: str) -> list[str]:
    async with sessions() as s:
        return [d.row.tracking_number for d in (await desk_queue(s, ids, now=NOW, **filters)).rows]


@pytest.mark.rule("C12")
async def test_late_first_then_the_soonest_clocks_then_the_answered_ones(sessions: SessionFactory) -> None:
    await seed(sessions)
    assert await numbers(sessions) == ["TC-ACME-2025-0002",  # late, still unanswered
                                       "TC-BETA-2025-0001", "TC-ACME-2025-0001",  # 10 then 30 min left
                                       "TC-ACME-2025-0003", "TC-BETA-2025-0002"]  # answered (late, in time)
    async with sessions() as s:
        rows = {d.row.tracking_number: d for d in (await desk_queue(s, None, now=NOW)).rows}
    assert rows["TC-ACME-2025-0002"].late and rows["TC-ACME-2025-0002"].sla == ("breached", "bad")
    assert rows["TC-ACME-2025-0003"].late and rows["TC-ACME-2025-0003"].sla == ("responded late", "bad")
    assert rows["TC-BETA-2025-0001"].sla == ("running, 10 min left", "warn")
    assert rows["TC-ACME-2025-0001"].technical_lead_id == "tl-alice" and rows["TC-ACME-2025-0001"].customer_name \
        == "Acme Corp"


async def test_filters_and_a_tls_reach(sessions: SessionFactory) -> None:
    await seed(sessions)
    assert await numbers(sessions, tl="tl-bob") == ["TC-BETA-2025-0001", "TC-BETA-2025-0002"]
    assert await numbers(sessions, priority="low") == ["TC-BETA-2025-0001"]
    assert await numbers(sessions, state="pending") == ["TC-BETA-2025-0002"]
    assert await numbers(sessions, customer="acme", state="open") == [
        "TC-ACME-2025-0002", "TC-ACME-2025-0001", "TC-ACME-2025-0003"]
    assert await numbers(sessions, state="closed") == await numbers(sessions)  # not a desk state: both shown
    assert await numbers(sessions, ["beta"]) == ["TC-BETA-2025-0001", "TC-BETA-2025-0002"]
    assert await numbers(sessions, []) == []
    assert await numbers(sessions, led_by="tl-bob") == await numbers(sessions, ["beta"])  # the portal's TL reach


async def test_a_page_of_the_queue_with_the_whole_queues_counts(sessions: SessionFactory) -> None:
    """Issue 16: the page is cut in SQL, in the queue's order; the total and the late count are the whole queue's."""
    await seed(sessions)
    everything = await numbers(sessions)
    async with sessions() as s:
        pages = [await desk_queue(s, None, now=NOW, offset=offset, limit=2) for offset in (0, 2, 4)]
    assert [d.row.tracking_number for p in pages for d in p.rows] == everything
    assert [len(p.rows) for p in pages] == [2, 2, 1]
    assert {(p.total, p.late) for p in pages} == {(5, 2)}
