"""The inbox from the database (issue 16) equals the inbox built by asking every workflow, on the time-skipping
server with the real worker: a closed programme whose last cycles still wait for their report, a programme with
overdue steps, and one whose TL was reassigned (rule C7). A step completed by Update has left the projection when
the Update returns; `check_projection` finds a lost write and repairs it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from domain.inbox import OpenStep
from domain.naming import program_workflow_id
from starter.projection import check_projection
from starter.visibility import open_steps_by_query
from storage.repositories.open_steps import open_steps_page, replace_open_steps
from tests.harness import Stack
from tests.test_program_close import close_by_non_renewal
from tests.test_program_lifecycle import started_today
from tests.test_program_timing import settle
from tests.test_reassignment import BOB
from tests.test_rules_programme import upd

EVERYTHING = 10_000


async def projected(st: Stack, tl: str | None = None) -> list[OpenStep]:
    async with st.sessions() as session:
        page = await open_steps_page(session, technical_lead_id=tl, limit=EVERYTHING)
    return [e.step for e in page.items]


async def workflow_ids(st: Stack, customers: list[str]) -> list[str]:
    """Every programme and cycle of these customers that is still running."""
    ids: list[str] = []
    for customer in customers:
        handle = st.client.get_workflow_handle(program_workflow_id(customer))
        ids.append(handle.id)
        ids += [c.workflow_id for c in (await st.status(customer)).cycles]
    running = []
    for wid in ids:
        try:
            desc = await st.client.get_workflow_handle(wid).describe()
        except RPCError:
            continue  # a cycle still to come
        if desc.status == WorkflowExecutionStatus.RUNNING:
            running.append(wid)
    return running


async def test_the_projection_inbox_equals_the_inbox_built_by_asking_every_workflow(st: Stack) -> None:
    # A programme given notice closes at its period end; its last cycles go on, waiting for their report (D7).
    gamma, g = await started_today(st, "gamma")
    result = await close_by_non_renewal(st, gamma, g)
    assert result.outcome.startswith("closed")
    # Two programmes started a year later: one whose kickoff is left overdue, one handed to another TL.
    acme, a = await started_today(st, "acme")
    beta, _ = await started_today(st, "beta")
    kickoff = a.step("schedule_kickoff")
    assert kickoff is not None and kickoff.due_at is not None
    await st.sleep_until(kickoff.due_at + timedelta(hours=1))
    await upd(beta, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": BOB, "reason": "rota"})
    for handle in (gamma, acme, beta):
        await settle(st, handle)
    ids = await workflow_ids(st, ["gamma", "acme", "beta"])
    for wid in ids:
        await settle(st, st.client.get_workflow_handle(wid))

    everything = await projected(st)
    assert everything == await open_steps_by_query(st.client, ids)
    for tl in ("tl-alice", "tl-bob"):
        assert await projected(st, tl) == await open_steps_by_query(st.client, ids, tl), tl
    # The scenario has what it claims: overdue steps, Bob's steps, the closed programme's cycles and none of its own.
    assert "schedule_kickoff" in [s.step for s in everything if s.overdue and s.customer_id == "acme"], everything
    assert {s.customer_id for s in await projected(st, "tl-bob")} == {"beta"}
    assert "beta" not in {s.customer_id for s in await projected(st, "tl-alice")}
    gamma_rows = [s for s in everything if s.customer_id == "gamma"]
    assert gamma_rows and all(s.month is not None for s in gamma_rows), gamma_rows
    assert (await check_projection(st.client, st.sessions, workflow_ids=ids)).differences == []


async def test_a_step_completed_by_update_has_left_the_inbox_when_the_update_returns(st: Stack) -> None:
    handle, _ = await started_today(st, "acme")
    await settle(st, handle)
    assert "schedule_kickoff" in [s.step for s in await projected(st, "tl-alice")]
    meeting = (await st.now()) + timedelta(days=3)
    await upd(handle, "schedule_kickoff", {"meeting_at": meeting.isoformat()})
    steps = [s.step for s in await projected(st, "tl-alice") if s.customer_id == "acme"]
    assert "schedule_kickoff" not in steps and "complete_kickoff" in steps, steps


async def test_projection_check_reports_a_lost_write_and_fix_repairs_it(st: Stack) -> None:
    handle, _ = await started_today(st, "acme")
    await settle(st, handle)
    ids = [handle.id]

    async def programme_rows() -> list[OpenStep]:
        return [s for s in await projected(st) if s.workflow_id == handle.id]

    assert [s.step for s in await programme_rows()] == ["schedule_kickoff"]
    async with st.sessions() as session, session.begin():
        await replace_open_steps(session, handle.id, [])  # the day a projection write is lost
    report = await check_projection(st.client, st.sessions, workflow_ids=ids)
    assert [(d.workflow_id, d.missing) for d in report.differences] == [(handle.id, ["schedule_kickoff"])]
    assert report.fixed == 0 and await programme_rows() == []

    fixed = await check_projection(st.client, st.sessions, workflow_ids=ids, fix=True)
    assert fixed.fixed == 1
    assert await programme_rows() == await open_steps_by_query(st.client, ids)
    assert (await check_projection(st.client, st.sessions, workflow_ids=ids)).differences == []
