"""The inbox's page from the `open_steps` projection (issue 16), on SQLite and PostgreSQL: overdue first, then by
due date (none last); a TL's own steps; a TL's reach (the programmes they lead now); a page of the list with the
whole list's total and overdue count; a workflow's rows replaced whole; the programme list's page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from domain.inbox import OpenStep
from storage.db import SessionFactory
from storage.repositories.open_steps import open_steps_page, programmes_page, replace_open_steps
from storage.tables import CustomerRow, ProgrammeRow

NOW = datetime(2025, 3, 17, 10, 0, tzinfo=UTC)  # a fixed instant: every date below is relative to it
DAY = NOW.date()


def step(wid: str, name: str, customer: str, tl: str, due: date | None, overdue: bool = False,
         month: int | None = None) -> OpenStep:
    return OpenStep(workflow_id=wid, step=name, customer_id=customer, technical_lead_id=tl, period=1, month=month,
                    title=name.replace("_", " "), rule="D3", status="open", due_on=due, overdue=overdue)


async def seed(sessions: SessionFactory) -> None:
    async with sessions() as s, s.begin():
        for cid, tl, phase in (("acme", "tl-alice", "onboarding"), ("beta", "tl-bob", "running"),
                               ("gone", "tl-alice", "closed")):
            s.add(CustomerRow(id=cid, name=f"{cid.title()} Corp", maintenance_subscription_id=f"SMP-{cid}",
                              created_at=NOW))
            s.add(ProgrammeRow(customer_id=cid, workflow_id=f"program-{cid}", period=1, phase=phase,
                               technical_lead_id=tl, enrolment={}, status={}, updated_at=NOW))
        await s.flush()
        await replace_open_steps(s, "program-acme", [
            step("program-acme", "schedule_kickoff", "acme", "tl-alice", DAY - timedelta(days=2), overdue=True),
            step("program-acme", "site_inventory", "acme", "tl-alice", None)])
        await replace_open_steps(s, "program-acme-p1-m01", [
            step("program-acme-p1-m01", "schedule_call", "acme", "tl-alice", DAY + timedelta(days=5), month=1)])
        # A cycle of beta still reminding Alice (its reassignment not written yet): not in Alice's reach.
        await replace_open_steps(s, "program-beta-p1-m01", [
            step("program-beta-p1-m01", "approve_report", "beta", "tl-alice", DAY + timedelta(days=1), month=1)])
        await replace_open_steps(s, "program-beta", [
            step("program-beta", "configuration_analysis", "beta", "tl-bob", DAY + timedelta(days=9))])


async def steps(sessions: SessionFactory, **filters: str) -> list[tuple[str, str]]:
    async with sessions() as s:
        page = await open_steps_page(s, **filters)  # type: ignore[arg-type]
    return [(e.step.workflow_id, e.step.step) for e in page.items]


async def test_the_inbox_overdue_first_then_by_due_date_with_a_tls_reach(sessions: SessionFactory) -> None:
    await seed(sessions)
    assert await steps(sessions) == [
        ("program-acme", "schedule_kickoff"),  # overdue
        ("program-beta-p1-m01", "approve_report"), ("program-acme-p1-m01", "schedule_call"),
        ("program-beta", "configuration_analysis"),
        ("program-acme", "site_inventory")]  # no due date: last
    assert await steps(sessions, technical_lead_id="tl-bob") == [("program-beta", "configuration_analysis")]
    assert await steps(sessions, technical_lead_id="tl-alice", customers_led_by="tl-alice") == [
        ("program-acme", "schedule_kickoff"), ("program-acme-p1-m01", "schedule_call"),
        ("program-acme", "site_inventory")]
    async with sessions() as s:
        page = await open_steps_page(s, offset=1, limit=2)
    assert [e.step.step for e in page.items] == ["approve_report", "schedule_call"]
    assert (page.total, page.overdue) == (5, 1)
    assert page.items[0].customer_name == "Beta Corp" and page.items[0].step.month == 1


async def test_a_workflows_rows_are_replaced_whole(sessions: SessionFactory) -> None:
    await seed(sessions)
    async with sessions() as s, s.begin():
        await replace_open_steps(s, "program-acme", [
            step("program-acme", "complete_kickoff", "acme", "tl-alice", DAY + timedelta(days=3))])
    assert [x for x in await steps(sessions) if x[0] == "program-acme"] == [("program-acme", "complete_kickoff")]
    async with sessions() as s, s.begin():
        await replace_open_steps(s, "program-acme", [])
    assert [x for x in await steps(sessions) if x[0] == "program-acme"] == []


async def test_the_programme_list_leaves_out_ended_programmes_and_pages(sessions: SessionFactory) -> None:
    await seed(sessions)
    async with sessions() as s:
        every = await programmes_page(s)
        alice = await programmes_page(s, technical_lead_id="tl-alice")
        second = await programmes_page(s, offset=1, limit=1)
    assert [(p.customer_id, p.open_steps) for p in every.items] == [
        ("acme", ["schedule_kickoff", "site_inventory"]), ("beta", ["configuration_analysis"])]
    assert every.total == 2 and [p.customer_id for p in alice.items] == ["acme"]
    assert [p.customer_id for p in second.items] == ["beta"] and second.total == 2
