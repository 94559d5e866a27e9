"""Record the workflow histories that tests/test_replay.py replays.

    python -m tests.replay.export_histories

Runs the main paths against the real worker, SQLite and an SMTP sink, and saves each
workflow's history (`WorkflowHandle.fetch_history().to_json()`, the format the Temporal
CLI and UI use) as tests/replay/histories/<workflow id>.json: the file name is the
workflow ID the replayer needs.

On the dev server (`temporal server start-dev`, real time, nothing can be skipped):
- program-replay-onboarding: every onboarding step by Update, then month 1's cycle
  (call scheduled, held, report approved); the programme is still running when saved.
- program-replay-onboarding-p1-m01: that monthly cycle, completed.
- program-replay-refused: a subscription ending inside the period, refused (E1).
- program-replay-lapsed: a period that ended before the programme was started; the
  workflow marks everything missed without mail, reaches the period end at once, finds
  no maintenance for the next period (E1) and closes (final report, workspace archived).

On the time-skipping server (a period end cannot be reached on the dev server: a
non-renewal notice must come in before the deadline, 90 days before the end):
- program-replay-closed: a non-renewal notice (C16), then the period end: closed.
- program-replay-renewed: the first run of a programme that renews by continue-as-new.

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

from domain.calendar import add_months
from domain.program import ProgramStatus
from tests.harness import Stack, add_subscription, enrolment, stack, start_dev_server, start_time_skipping
from tests.test_program_lifecycle import complete_onboarding, run_cycle
from tests.test_program_refusals import history_len

HISTORIES = Path(__file__).resolve().parent / "histories"
PARIS = ZoneInfo("Europe/Paris")


async def save(handle: WorkflowHandle[Any, Any]) -> Path:
    await history_len(handle)  # idle: its own activities finished
    history = await handle.fetch_history()
    path = HISTORIES / f"{handle.id}.json"
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
    env = await start_dev_server()
    try:
        async with stack(env, f"sqlite+aiosqlite:///{tmp / 'dev.db'}", tmp / "dev") as st:
            await onboarding_and_cycle(st)
            await refused(st)
            await lapsed(st)
    finally:
        await env.shutdown()


async def time_skipping_paths(tmp: Path) -> None:
    env = await start_time_skipping()
    try:
        async with stack(env, f"sqlite+aiosqlite:///{tmp / 'ts.db'}", tmp / "ts") as st:
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
    finally:
        await env.shutdown()


async def main() -> None:
    HISTORIES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        await dev_server_paths(Path(tmp))
        await time_skipping_paths(Path(tmp))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
