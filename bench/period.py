"""Figures 3 and 4: the full programme period on the time-skipping server, with its baselines (a no-op
workflow, a workflow sleeping 365 days) on a server of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.worker import Worker

from bench.drive import noop_history
from bench.models import TimerInput, TimerResult
from bench.results import Figure, Run
from bench.workloads import BENCH_WORKFLOWS
from testing.servers import start_time_skipping
from worker import WORKFLOWS, workflow_runner

# The scenario test figure 3 times, run by pytest as the suite runs it, so the benchmark measures exactly
# what the suite proves; it reports its figures through TECHCONNECT_FIGURES_FILE (tests/conftest.py).
SCENARIO_TEST = "tests/test_program_lifecycle.py::test_full_period_then_renewal_by_continue_as_new"
ROOT = Path(__file__).resolve().parent.parent
SCENARIO_TIMEOUT = 300  # seconds; the scenario takes 3-12 s on 2 cores


async def run_scenario_test(run: Run) -> tuple[float, dict[str, str]]:
    """Run the full-period scenario test in a pytest of its own; its wall time and reported figures."""
    figures = run.tmp / "full-period-figures.json"
    log = run.tmp / "full-period-pytest.log"
    await asyncio.to_thread(run.tmp.mkdir, parents=True, exist_ok=True)
    # The scenario runs at the real now, as the rest of the bench, and with its own options and temporary
    # directory: nothing of a calling pytest (tests/test_bench_smoke.py) reaches it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "TECHCONNECT_TEST_NOW")}
    env["TECHCONNECT_FIGURES_FILE"] = str(figures)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={run.tmp / 'pytest'}",
            SCENARIO_TEST, cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)  # its own process group: a stop reaches its test server too
        try:
            rc = await asyncio.wait_for(proc.wait(), SCENARIO_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(f"{SCENARIO_TEST} still running after {SCENARIO_TIMEOUT} s; its output: {log}") from None
        finally:
            if proc.returncode is None:  # timed out or cancelled: stop pytest and its time-skipping server
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
    if rc != 0:
        raise RuntimeError(f"{SCENARIO_TEST} failed (exit {rc}); its output: {log}")
    reported = {name.split(" ")[0]: value for name, value in json.loads(figures.read_text())}
    run.log(f"full period: {reported['full_period_seconds']} s, reported {reported}")
    return float(reported["full_period_seconds"]), reported


async def full_period(run: Run) -> None:
    # Baselines on a server of their own: a no-op, and a workflow sleeping 365 days.
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

    wall, reported = await run_scenario_test(run)
    cycles = [int(n) for n in reported["events_per_cycle"].split(",")]
    period_events = int(reported["events_per_period"])
    run.results.add(Figure(
        "full_period_seconds", wall, "s",
        f"{year:.2f} s: a workflow sleeping 365 days on a time-skipping server (same binary and worker setup)",
        "< 10", wall < 10,
        f"{SCENARIO_TEST}, run as is by pytest (the test's own wall time, from its stack's start to its last "
        "check): enrolment, every step by Update, 12 monthly cycles with their reports over SMTP, the renewal "
        "notice, continue-as-new into period 2 (in-process worker, SQLite)"))
    run.results.add(Figure(
        "events_per_period", period_events, "events", f"{noop_events} events: a no-op workflow", "< 2,000",
        period_events < 2000, "history of the first run of that programme (one period, ending in "
        "continue-as-new)"))
    run.results.add(Figure(
        "events_per_cycle", max(cycles), "events", f"{noop_events} events: a no-op workflow", "", None,
        f"largest history of its 12 monthly cycles (call scheduled and held, report drafted, approved, "
        f"mailed, filed): {', '.join(map(str, cycles))}"))

