"""Figures 3 and 4: the full programme period on the time-skipping server, with its baselines (a no-op
workflow, a workflow sleeping 365 days) on a server of their own."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from temporalio.worker import Worker

from bench.drive import noop_history
from bench.meter import history_length
from bench.models import TimerInput, TimerResult
from bench.results import Figure, Run
from bench.workloads import BENCH_WORKFLOWS
from domain.naming import monthly_cycle_workflow_id
from testing.servers import start_time_skipping
from worker import WORKFLOWS, workflow_runner


async def full_period(run: Run) -> None:
    from tests import test_program_lifecycle as lifecycle

    # Baselines first, on a server of their own: a no-op, and a workflow sleeping 365 days.
    # (Not after the scenario: its second period stays open with no worker, and a time-skipping
    # server does not skip time past a workflow task nobody takes.)
    env = await start_time_skipping()
    try:
        tq = f"bench-ts-{uuid.uuid4().hex[:6]}"
        async with Worker(env.client, task_queue=tq, workflows=[*WORKFLOWS, *BENCH_WORKFLOWS],
                          workflow_runner=workflow_runner()):
            t0 = time.monotonic()
            until_at = await env.get_current_time() + timedelta(days=365)
            await asyncio.wait_for(env.client.execute_workflow(
                "BenchTimerWorkflow", TimerInput(until=until_at), id=f"bench-year-{uuid.uuid4().hex[:6]}",
                task_queue=tq, result_type=TimerResult), 60)
            year = time.monotonic() - t0
            noop_events = await noop_history(env.client, tq)
    finally:
        await env.shutdown()

    env = await start_time_skipping()
    try:
        tmp = run.tmp / "full-period"
        await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
        reported: dict[str, str] = {}
        began = time.monotonic()
        await asyncio.wait_for(lifecycle.test_full_period_then_renewal_by_continue_as_new(
            env, tmp, f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}",
            lambda name, value: reported.__setitem__(name.split(" ")[0], str(value))), 300)
        wall = time.monotonic() - began
        run.log(f"full period: {wall:.2f} s, reported {reported}")
        cycles = [await history_length(env.client, monthly_cycle_workflow_id("acme", 1, m)) for m in range(1, 13)]
    finally:
        await env.shutdown()
    period_events = int(reported["events_per_period"])
    run.results.add(Figure(
        "full_period_seconds", wall, "s",
        f"{year:.2f} s: a workflow sleeping 365 days on a time-skipping server (same binary and worker setup)",
        "< 10", wall < 10,
        "tests/test_program_lifecycle.py::test_full_period_then_renewal_by_continue_as_new, called as is: "
        "enrolment, every step by Update, 12 monthly cycles with their reports over SMTP, the renewal notice, "
        "continue-as-new into period 2 (in-process worker, SQLite)"))
    run.results.add(Figure(
        "events_per_period", period_events, "events", f"{noop_events} events: a no-op workflow", "< 2,000",
        period_events < 2000, "history of the first run of that programme (one period, ending in "
        "continue-as-new)"))
    run.results.add(Figure(
        "events_per_cycle", max(cycles), "events", f"{noop_events} events: a no-op workflow", "", None,
        f"largest history of its 12 monthly cycles (call scheduled and held, report drafted, approved, "
        f"mailed, filed): {', '.join(map(str, cycles))}"))

