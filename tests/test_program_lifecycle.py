"""A whole programme period on the time-skipping server: every step by Update, 12 monthly
cycles whose reports arrive over real SMTP, the renewal notice on its date with a
capped price (C14, C15), and the second period by continue-as-new (E1 re-checked)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.cycle import CycleStatus
from domain.naming import monthly_cycle_workflow_id, program_workflow_id
from domain.program import Phase, ProgramResult, ProgramStatus
from domain.step_inputs import A2_AGENDA
from starter.projection import check_projection
from storage.repositories.open_steps import open_steps_page
from tests.clock import settled
from tests.cycles import drafted
from tests.harness import Stack, add_subscription, enrolment, stack
from tests.test_program_refusals import assert_no_trace

PARIS = ZoneInfo("Europe/Paris")


def inventory() -> dict[str, object]:
    return {"inventory": {
        "servers": [{"hostname": "cs-fe-01", "role": "front-end", "memory_gb": 8, "os_name": "Windows Server",
                     "os_version": "2012 R2"}],
        "ot_product": {"name": "Content Server", "version": "16.2", "patch_level": "2019-01",
                       "patch_date": "2019-01-15"},
        "database_servers": [{"engine": "SQL Server", "version": "2014", "hostname": "db-01"}],
        "external_file_stores": ["nas01"], "network_protocols": ["HTTP"], "web_server": "Tomcat 8.5",
        "security": {"tls_min_version": "1.0", "http_enabled": True},
    }}


async def complete_onboarding(st: Stack, customer_id: str, today: date) -> ProgramStatus:
    h = st.client.get_workflow_handle(program_workflow_id(customer_id))
    by = {"by": "tl-alice"}

    async def upd(name: str, payload: dict[str, object]) -> ProgramStatus:
        result: ProgramStatus = await h.execute_update(name, {**payload, **by}, result_type=ProgramStatus)
        return result

    meeting = datetime.combine(today + timedelta(days=3), datetime.min.time(), PARIS).replace(hour=10)
    await upd("schedule_kickoff", {"meeting_at": meeting.isoformat(), "attendance": "remote"})
    await upd("complete_kickoff", {
        "held_on": (today + timedelta(days=3)).isoformat(), "attendees": ["Alice", "Carol"],
        "minutes": "Agreed the plan.", "agenda_covered": list(A2_AGENDA),  # a kickoff that covered every A2 item
        "agreed_dates": {"communication_plan": (today + timedelta(days=30)).isoformat(),
                         "site_inventory": (today + timedelta(days=40)).isoformat(),
                         "configuration_analysis": (today + timedelta(days=70)).isoformat()}})
    await upd("deliver_communication_plan", {
        "communication_policies": "English, e-mail first", "escalation_process": "TL then manager",
        "reporting_process": "monthly report", "procedures": "portal requests"})
    s = await upd("submit_site_inventory", inventory())
    assert len({f.check_id for f in s.findings}) >= 5, "rule A8: rule-based findings computed from the inventory"
    await upd("add_findings", {"role": "gts", "findings": [{
        "check_id": "HUMAN", "title": "Search index on the system disk", "severity": "medium",
        "detail": "index on C:", "recommendation": "move it"}]})
    return await upd("present_configuration_analysis", {"held_on": (today + timedelta(days=70)).isoformat(),
                                                        "attendees": ["Alice", "Carol", "GTS"]})


async def started_today(st: Stack, customer_id: str) -> tuple[WorkflowHandle[Any, Any], ProgramStatus]:
    """A programme starting today (Paris) on a subscription from yesterday, past its enrolment check."""
    today = (await st.now()).astimezone(PARIS).date()
    await add_subscription(st.sessions, customer_id, today - timedelta(days=1), today + timedelta(days=800))
    handle = await st.start(enrolment(customer_id, today))
    return handle, await st.wait_enrolled(customer_id)


async def run_cycle(st: Stack, wid: str, month_start: date) -> CycleStatus:
    h = st.client.get_workflow_handle(wid)
    call_at = datetime.combine(month_start + timedelta(days=7), datetime.min.time(), PARIS).replace(hour=14)
    await h.execute_update("schedule_call", {"by": "tl-alice", "call_at": call_at.isoformat()},
                           result_type=CycleStatus)
    await h.execute_update("hold_call", {"by": "tl-alice", "held_on": (month_start + timedelta(days=7)).isoformat(),
                                         "attendees": ["Alice", "Carol"], "notes": "All open issues reviewed."},
                           result_type=CycleStatus)
    await drafted(st, h)  # rule D7: the report is drafted after the month ends
    result: CycleStatus = await h.execute_update("approve_report", {"by": "tl-alice"}, result_type=CycleStatus)
    return result


@pytest.mark.rule("C14", "C15", "D6", "D7")
async def test_full_period_then_renewal_by_continue_as_new(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str, report_figure: Callable[[str, object], None]
) -> None:
    wall = time.monotonic()
    async with stack(env, sqlite_url, tmp_path) as st:
        today = (await st.now()).astimezone(PARIS).date()
        # rule E1: the subscription covers this period and the next one.
        await add_subscription(st.sessions, "acme", today - timedelta(days=30), today + timedelta(days=800))
        e = enrolment("acme", today, renewal_price_increase_percent=4.0)
        handle = await st.start(e)
        await st.wait_enrolled("acme")
        first_run_id = (await handle.describe()).run_id
        s = await complete_onboarding(st, "acme", today)
        assert all(x.status == "done" for x in s.steps), s.steps
        assert s.phase in (Phase.running, Phase.renewal)
        assert st.mails("Welcome"), "welcome mail to the contacts"

        s = await st.status("acme")
        assert s.plan is not None and s.renewal is not None
        plan = s.plan
        # rule C14: renewal notice 100 days (setting) before the end; C16 deadline 90 days before.
        assert s.renewal.notice_on == plan.period_end - timedelta(days=100)
        assert s.renewal.non_renewal_deadline == plan.period_end - timedelta(days=90)

        for m, (start, start_at) in enumerate(zip(plan.month_starts, plan.month_start_ats, strict=True), 1):
            if start_at > plan.renewal_notice_at and not (await st.status("acme")).renewal.notice_sent:  # type: ignore[union-attr]
                await st.sleep_until(plan.renewal_notice_at - timedelta(hours=1))
                assert not (await st.status("acme")).renewal.notice_sent  # type: ignore[union-attr]
                await st.sleep_until(plan.renewal_notice_at + timedelta(hours=1))
                r = (await st.status("acme")).renewal
                assert r is not None and r.notice_sent
                # rule C15: next price = +4 %, within the 10 % cap.
                assert r.next_price is not None and r.next_price.amount == Decimal("49920.00")
                notice = await st.sink.wait_for(lambda msg: "renews" in str(msg["Subject"]), timeout=10)
                assert notice
            await st.sleep_until(start_at + timedelta(hours=2))
            s = await st.status("acme")
            cycle = s.cycles[m - 1]
            assert cycle.status == "running", (m, cycle)
            done = await run_cycle(st, cycle.workflow_id, start)
            assert done.done and done.report_document_id

        # 12 monthly reports arrive through the SMTP server on loopback (D7).
        reports = await st.sink.wait_for(lambda msg: "follow-up report" in str(msg["Subject"]), count=12,
                                         timeout=30)
        assert len(reports) == 12
        assert len({str(r["Subject"]) for r in reports}) == 12

        await st.sleep_until(plan.period_end_at + timedelta(hours=1))
        s2 = await st.status("acme")
        assert s2.period == 2, "continue-as-new into the second period"
        assert s2.plan is not None and s2.plan.period_start == plan.period_end + timedelta(days=1)
        assert s2.annual_fee.amount == Decimal("49920.00")
        assert (await handle.describe()).run_id != first_run_id

        # History of the first period stays small (docs/design.md: under 2,000 events).
        first = st.client.get_workflow_handle(program_workflow_id("acme"), run_id=first_run_id)
        events = [ev async for ev in first.fetch_history_events()]
        assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        report_figure("events_per_period (one full programme period, time-skipping server)", len(events))
        cycles = [len([ev async for ev in st.client.get_workflow_handle(
            monthly_cycle_workflow_id("acme", 1, m)).fetch_history_events()]) for m in range(1, 13)]
        report_figure("events_per_cycle (history of each of the 12 monthly cycles)", ",".join(map(str, cycles)))
        report_figure("full_period_seconds (wall time of this test's period)", f"{time.monotonic() - wall:.2f}")
        assert len(events) < 2000

        # Issue 16: after the whole period, the inbox projection agrees with the programme (now in period 2)
        # and each of its cycles; the new period's first steps are in it.
        ids = [program_workflow_id("acme"), monthly_cycle_workflow_id("acme", 2, 1)] + [
            monthly_cycle_workflow_id("acme", 1, m) for m in range(1, 13)]
        await settled(handle, st.env)
        assert (await check_projection(st.client, st.sessions, workflow_ids=ids)).differences == []
        async with st.sessions() as session:
            rows = (await open_steps_page(session, technical_lead_id="tl-alice")).items
        assert {(e.step.workflow_id, e.step.period) for e in rows} >= {(program_workflow_id("acme"), 2)}, rows


@pytest.mark.rule("C16", "D10")
async def test_non_renewal_on_deadline_day_closes(env: WorkflowEnvironment, tmp_path: Path,
                                                   sqlite_url: str) -> None:
    """Rule C16: a notice on the deadline day is accepted; the programme closes at the end."""
    async with stack(env, sqlite_url, tmp_path) as st:
        handle, s = await started_today(st, "initech")
        assert s.renewal is not None and s.plan is not None
        deadline = s.renewal.non_renewal_deadline
        await st.sleep_until(datetime.combine(deadline, datetime.min.time(), PARIS).replace(hour=15))
        s = await handle.execute_update("give_non_renewal_notice", {
            "by": "ops-olga", "party": "customer", "received_on": deadline.isoformat(), "reference": "LTR-7"},
            result_type=ProgramStatus)
        assert s.renewal is not None and s.renewal.non_renewal is not None
        await st.sleep_until(s.plan.period_end_at + timedelta(hours=1))  # type: ignore[union-attr]
        result = ProgramResult.model_validate(await handle.result())
        assert result.outcome.startswith("closed")
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        # Workspace archived; the contacts read it for the policy's 30 days, then lose access (D10, A9:
        # tests/test_program_close.py shows both sides of that date).
        from storage.repositories import as_utc, get_workspace, list_contacts

        async with st.sessions() as session:
            ws = await get_workspace(session, "initech")
            contacts = await list_contacts(session, "initech")
        assert ws is not None and ws.status == "archived"
        assert ws.archived_at is not None and ws.access_ends_at is not None
        assert as_utc(ws.access_ends_at) - as_utc(ws.archived_at) == timedelta(
            days=st.policy.workspace_readable_days_after_close) == timedelta(days=30)
        assert contacts and all(c.active for c in contacts)
        assert st.mails("closed") or st.mails("ended"), [str(m["Subject"]) for m in st.sink.messages]


@pytest.mark.rule("C16")
async def test_non_renewal_a_day_late_is_refused_and_programme_renews(
    env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str
) -> None:
    """Rule C16: one day after the deadline the notice is refused as late, and the programme renews."""
    async with stack(env, sqlite_url, tmp_path) as st:
        handle, s = await started_today(st, "umbrella")
        assert s.renewal is not None and s.plan is not None
        late = s.renewal.non_renewal_deadline + timedelta(days=1)
        await st.sleep_until(datetime.combine(late, datetime.min.time(), PARIS).replace(hour=10))
        before = (await settled(handle, st.env)).events
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("give_non_renewal_notice", {
                "by": "ops-olga", "party": "customer", "received_on": late.isoformat(), "reference": "LTR-8"},
                result_type=ProgramStatus)
        assert "C16" in str(refused.value.cause) and "late" in str(refused.value.cause)
        await assert_no_trace(handle, before)
        await st.sleep_until(s.plan.period_end_at + timedelta(hours=1))
        s2 = await st.status("umbrella")
        assert s2.period == 2 and s2.phase != Phase.closed
