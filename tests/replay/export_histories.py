"""Record the workflow histories that tests/test_replay.py replays.

    python -m tests.replay.export_histories

Runs the main paths against the real worker, SQLite and an SMTP sink, and saves each
workflow's history (`WorkflowHandle.fetch_history().to_json()`, the format the Temporal
CLI and UI use) as tests/replay/histories/<workflow id>.json: the file name is the
workflow ID the replayer needs.

On the dev server (`temporal server start-dev`, real time, nothing can be skipped):
- program-replay-refused: a subscription ending inside the period, refused (E1).
- program-replay-lapsed: a period that ended before the programme was started; the
  workflow marks everything missed without mail, reaches the period end at once, finds
  no maintenance for the next period (E1) and closes (final report, workspace archived).

On the time-skipping server (a period end cannot be reached on the dev server: a
non-renewal notice must come in before the deadline, 90 days before the end; nor a month's end,
after which its report is drafted, D7):
- program-replay-onboarding: every onboarding step by Update, then month 1's cycle
  (call scheduled, held, report drafted after the month and approved); the programme is still
  running when saved.
- program-replay-onboarding-p1-m01: that monthly cycle, completed.
- program-replay-closed: a non-renewal notice (C16), then the period end: closed.
- program-replay-renewed: the first run of a programme that renews by continue-as-new.
- request-TC-RQSLA-*: a support request filed on a Friday afternoon, warned and escalated on
  Monday morning (C12), answered late, resolved and closed (A4).
- request-TC-RQDSP-*: a request with an on-site dispatch approved by both parties, booked,
  visited and billed (A4, C3), then resolved and closed.
- request-TC-RQREF-*: a customisation request without an agreement, refused and closed (C13).

`--only requests` (or `programmes`) records one group and leaves the other files as they are.

`--only local` records the first histories of the `enrolment-local-activities` and
`request-opens-locally-upserts-only-changes` patches (issue 16, docs/local-activities.md) into
tests/replay/local-activities/, pinned there: a programme enrolled a month ahead (its enrolment's
local activities, waiting on its timer) and the three request paths above.

Re-run it after a deliberate, versioned change of workflow code, and commit the files.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain.calendar import add_months
from domain.naming import SA_CUSTOMER_ID, request_workflow_id
from domain.program import ProgramStatus
from domain.request import RequestInput
from tests.calendar_positions import next_plain_friday
from tests.harness import Stack, add_subscription, enrolment, stack_on_server, start_time_skipping
from tests.request_fixtures import at_local, file, live_programme, new_request, update
from tests.test_program_lifecycle import complete_onboarding, run_cycle
from tests.test_program_refusals import history_len

HISTORIES = Path(__file__).resolve().parent / "histories"
LOCAL = Path(__file__).resolve().parent / "local-activities"
PARIS = ZoneInfo("Europe/Paris")


async def save(handle: WorkflowHandle[Any, Any], directory: Path = HISTORIES) -> Path:
    await history_len(handle)  # idle: its own activities finished
    history = await handle.fetch_history()
    path = directory / f"{handle.id}.json"
    path.write_text(history.to_json() + "\n")
    print(f"{path}: {len(history.events)} events")
    return path


async def local_today(st: Stack) -> date:
    return (await st.now()).astimezone(PARIS).date()


async def onboarding_and_cycle(st: Stack) -> None:
    # Started yesterday so that month 1 (from 09:00 Paris on the start day) is already running,
    # whatever the hour the script runs; one day back is not "long gone" (stale_after_days=2).
    start = await local_today(st) - timedelta(days=1)
    await add_subscription(st.sessions, "replay-onboarding", start - timedelta(days=1), start + timedelta(days=800))
    handle = await st.start(enrolment("replay-onboarding", start))
    await st.wait_enrolled("replay-onboarding")
    s = await complete_onboarding(st, "replay-onboarding", start)
    assert all(x.status == "done" for x in s.steps), s.steps
    for _ in range(200):
        s = await st.status("replay-onboarding")
        if s.cycles[0].status == "running":
            break
        await asyncio.sleep(0.05)
    cycle = await run_cycle(st, s.cycles[0].workflow_id, s.cycles[0].starts_on)
    assert cycle.done
    cycle_handle = st.client.get_workflow_handle(s.cycles[0].workflow_id)
    await cycle_handle.result()
    for _ in range(200):
        if (await st.status("replay-onboarding")).cycles[0].status == "done":
            break
        await asyncio.sleep(0.05)
    await save(cycle_handle)
    await save(handle)


async def refused(st: Stack) -> None:
    start = await local_today(st)
    await add_subscription(st.sessions, "replay-refused", start - timedelta(days=1), start + timedelta(days=100))
    handle = await st.start(enrolment("replay-refused", start))
    result = await handle.result()
    assert result["outcome"] == "refused", result
    await save(handle)


async def lapsed(st: Stack) -> None:
    today = await local_today(st)
    start = add_months(today, -13)
    end = add_months(start, 12) - timedelta(days=1)
    # rule E1: the subscription covers that period and stops there.
    await add_subscription(st.sessions, "replay-lapsed", start - timedelta(days=1), end)
    handle = await st.start(enrolment("replay-lapsed", start))
    result = await handle.result()
    assert result["outcome"].startswith("closed: not renewed"), result
    await save(handle)


async def dev_server_paths(tmp: Path) -> None:
    async with stack_on_server(tmp / "dev", f"sqlite+aiosqlite:///{tmp / 'dev.db'}") as st:
        await refused(st)
        await lapsed(st)


async def time_skipping_paths(tmp: Path) -> None:
    async with stack_on_server(tmp / "ts-onboarding", f"sqlite+aiosqlite:///{tmp / 'ts-onboarding.db'}",
                               server=start_time_skipping) as st:
        await onboarding_and_cycle(st)
    async with stack_on_server(tmp / "ts", f"sqlite+aiosqlite:///{tmp / 'ts.db'}", server=start_time_skipping) as st:
        today = await local_today(st)
        for customer in ("replay-closed", "replay-renewed"):
            await add_subscription(st.sessions, customer, today - timedelta(days=1), today + timedelta(days=800))
        closed = await st.start(enrolment("replay-closed", today))
        renewed = await st.start(enrolment("replay-renewed", today))
        s = await st.wait_enrolled("replay-closed")
        await st.wait_enrolled("replay-renewed")
        first_run = (await renewed.describe()).run_id
        assert s.plan is not None
        notice = await closed.execute_update("give_non_renewal_notice", {
            "by": "ops-olga", "party": "customer", "received_on": today.isoformat(), "reference": "LTR-REPLAY"},
            result_type=ProgramStatus)
        assert notice.renewal is not None and notice.renewal.non_renewal is not None
        await st.sleep_until(datetime.combine(s.plan.period_end + timedelta(days=1), time(12), PARIS))
        result = await closed.result()
        assert result["outcome"].startswith("closed"), result
        await save(closed)
        for _ in range(200):
            if (await renewed.describe()).run_id != first_run:
                break
            await asyncio.sleep(0.05)
        await save(st.client.get_workflow_handle(renewed.id, run_id=first_run))


async def request_paths(tmp: Path, directory: Path = HISTORIES) -> None:
    """SupportRequestWorkflow's main paths, on the time-skipping server (the SLA clock needs days)."""
    async with stack_on_server(tmp / "rq", f"sqlite+aiosqlite:///{tmp / 'rq.db'}", server=start_time_skipping) as st:
        for customer in ("rqsla", "rqdsp", "rqref"):
            await live_programme(st, customer)
        # C12: Friday 16:30 Paris, due Monday 09:30; warned, escalated, answered late; A4: closed.
        friday = next_plain_friday(await st.now(), PARIS, "FR")
        _, sla = await file(st, "rqsla", at=at_local(friday, 16, 30))
        await st.sleep_until(at_local(friday + timedelta(days=3), 9, 31))
        await st.sink.wait_for(lambda m: "SLA breached" in str(m["Subject"]))
        await update(sla, "respond", by="rep-sam", message="Looking at it now")
        await update(sla, "pend", by="tl-alice", reason="waiting for the customer's logs")
        await update(sla, "resume", by="carol", note="logs attached")
        await update(sla, "propose_resolution", by="tl-alice", measures="Index rebuilt")
        closed = await update(sla, "accept_resolution", by="carol")
        assert closed.state == "closed", closed.state
        await sla.result()
        await save(sla, directory)
        # A4: a dispatch approved by both parties, booked, visited and billed (C3).
        _, dsp = await file(st, "rqdsp")
        await update(dsp, "respond", by="rep-sam", message="Hardware fault suspected")
        await update(dsp, "request_dispatch", by="tl-alice", reason="replace the disk controller",
                     estimated_cost={"amount": "1800.00", "currency": "EUR"}, agreement_ref="AGR-DISP-7")
        await update(dsp, "approve_dispatch", by="carol", party="customer")
        await update(dsp, "approve_dispatch", by="mgr-mia", party="manager")
        visit_on = (await st.now()).astimezone(PARIS).date() + timedelta(days=2)
        await update(dsp, "record_visit", by="tl-alice", visit_on=visit_on.isoformat(), notes="replaced",
                     actual_cost={"amount": "1650.00", "currency": "EUR"})
        await update(dsp, "propose_resolution", by="tl-alice", measures="Controller replaced on site")
        await update(dsp, "accept_resolution", by="carol")
        await dsp.result()
        await save(dsp, directory)
        # C13: a customisation without its agreement, started without the CLI's precheck.
        prog = await st.status("rqref")
        number = f"TC-RQREF-{(await st.now()).year}-0001"
        ref = await st.client.start_workflow(
            "SupportRequestWorkflow",
            RequestInput(tracking_number=number, request=new_request("rqref", customisation=True),
                         customer_name=prog.customer_name, period=1, calendar=prog.calendar,
                         technical_lead=prog.technical_lead, contacts=prog.contacts, policy=st.policy,
                         opened_at=await st.now()),
            id=request_workflow_id(number), task_queue=st.task_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CUSTOMER_ID, "rqref")]))
        await ref.result()
        await save(ref, directory)


async def local_enrolment(tmp: Path) -> None:
    """A programme enrolled a month ahead: nothing falls due, its history ends on its timer."""
    async with stack_on_server(tmp / "le", f"sqlite+aiosqlite:///{tmp / 'le.db'}", server=start_time_skipping) as st:
        start = await local_today(st) + timedelta(days=30)
        await add_subscription(st.sessions, "replay-local", start - timedelta(days=1), start + timedelta(days=800))
        handle = await st.start(enrolment("replay-local", start))
        await st.wait_enrolled("replay-local")
        await save(handle, LOCAL)


async def main() -> None:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    HISTORIES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if only in (None, "programmes"):
            await dev_server_paths(Path(tmp))
            await time_skipping_paths(Path(tmp))
        if only in (None, "requests"):
            await request_paths(Path(tmp))
        if only == "local":
            LOCAL.mkdir(parents=True, exist_ok=True)
            await local_enrolment(Path(tmp))
            await request_paths(Path(tmp), LOCAL)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
