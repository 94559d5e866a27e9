"""`cached_programme_kib_ratio` (issue 16): the memory one cached programme costs a worker, against one
cached no-op workflow, both held open by the same fresh worker in the same run.

The worker (`python -m bench.worker`, the service's settings) is warmed up first: its first programmes and
timers import and build what every later run shares (activity modules, SQLAlchemy's compiled statements,
templates), which is not a cached run's cost. Then, RSS idle; `memory_workflows` `BenchTimerWorkflow` runs
sleeping a day (the no-op of the open workflows: one timer, waiting in the sticky cache, its own small module
in the sandbox) and the RSS they added; then as many programmes (each one open workflow, its period starting
next month, as in `worker_rss_mb_1000`) and the RSS they added. The ratio of the two growths per workflow
says how many no-op workflows one cached programme weighs: what the programme's own code and state cost,
beside what the SDK and the sandbox cost any cached run. The timers come first: they allocate little that is
not kept, so they do not leave holes in the heap for the programmes to fill.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from bench.drive import count_prefixed, start_programmes
from bench.meter import bounded, until
from bench.models import TimerInput
from bench.results import Figure, Run
from bench.stack import DevStack
from storage.tables import OutboxRow
from testing.workers import WorkerProcess

WARM_UP = 3  # programmes and timers run before the idle figure


async def wait_quiet(stack: DevStack, prefix: str, what: str, timeout: float = 300) -> None:  # noqa: ASYNC109
    """Until every mail of the programmes `prefix*` is sent and nothing new was sent for 3 s: their start is
    over (enrolment, welcome document, mails, projection), only their open workflows remain."""
    last: list[int] = [-1]
    stable: list[float] = [time.monotonic()]

    async def quiet() -> bool:
        async with stack.sessions() as session:
            pending = int(await session.scalar(select(func.count()).where(
                OutboxRow.customer_id.like(f"{prefix}%"), OutboxRow.status != "sent")) or 0)
        sent = await count_prefixed(stack.sessions, OutboxRow.customer_id, prefix)
        if sent != last[0] or pending:
            last[0], stable[0] = sent, time.monotonic()
        return pending == 0 and time.monotonic() - stable[0] > 3

    await until(quiet, what, timeout, 0.5)


async def cached_runs(w: WorkerProcess, attempts: int = 5) -> float:
    """The worker's sticky cache size (its /metrics), 0 before the first sample. A worker busy with a
    burst of workflow tasks can leave /metrics unanswered for its 10 s: asked again, a few times."""
    for _ in range(attempts - 1):
        try:
            return await asyncio.to_thread(w.metric, "temporal_sticky_cache_size") or 0.0
        except OSError:  # URLError and the socket's timeout are OSErrors
            await asyncio.sleep(1)
    return await asyncio.to_thread(w.metric, "temporal_sticky_cache_size") or 0.0


async def hold_timers(stack: DevStack, w: WorkerProcess, prefix: str, n: int, concurrency: int) -> float:
    """Start `n` BenchTimerWorkflow runs sleeping a day; seconds until the worker's cache holds them all."""
    before = await cached_runs(w)
    until_at = datetime.now(UTC) + timedelta(days=1)
    began = time.monotonic()
    await bounded([lambda i=i: stack.client.start_workflow(
        "BenchTimerWorkflow", TimerInput(until=until_at), id=f"{prefix}{i:04d}", task_queue=w.task_queue)
        for i in range(n)], concurrency)

    async def held() -> bool:
        return await cached_runs(w) >= before + n

    return await until(held, f"{n} timers ({prefix}*) in the worker's cache", 60 + n * 0.5, 0.2) - began


async def settled_rss(w: WorkerProcess) -> float:
    """VmRSS (MiB) once the worker has been left alone for 2 s."""
    await asyncio.sleep(2)
    return w.rss_mb()[0]


async def cached_programme_ratio(run: Run, stack: DevStack) -> None:
    n, conc = run.sizes.memory_workflows, run.sizes.concurrency
    tag = uuid.uuid4().hex[:4]
    w = await stack.spawn_worker("memory")
    try:
        await hold_timers(stack, w, f"bench-memtimer-{tag}-w", WARM_UP, conc)
        await start_programmes(stack, w.task_queue, "bench-memwarm-", WARM_UP, conc)
        await wait_quiet(stack, "bench-memwarm-", "the warm-up programmes' start")
        idle = await settled_rss(w)
        timer_seconds = await hold_timers(stack, w, f"bench-memtimer-{tag}-", n, conc)
        with_timers = await settled_rss(w)
        run.log(f"worker {w.pid}: {idle:.1f} MiB idle, {with_timers:.1f} MiB with {n} timers "
                f"(held after {timer_seconds:.1f} s); starting {n} programmes")
        await start_programmes(stack, w.task_queue, "bench-memprog-", n, conc)
        await wait_quiet(stack, "bench-memprog-", "the worker to finish the programmes' start")
        with_both = await settled_rss(w)
        cached = await cached_runs(w)
    finally:
        await w.stop()
    # At least one page each (4 KiB): at smoke sizes the growth can be lost in the RSS's own noise.
    noop_kib = max((with_timers - idle) * 1024, 4) / n
    programme_kib = max((with_both - with_timers) * 1024, 4) / n
    ratio = programme_kib / noop_kib
    run.log(f"{with_both:.1f} MiB with both; {programme_kib:.0f} KiB a programme, {noop_kib:.0f} KiB a no-op "
            f"workflow: ratio {ratio:.2f}")
    run.results.add(Figure(
        "cached_programme_kib_ratio", ratio, "",
        f"{noop_kib:.0f} KiB: one cached no-op workflow (`BenchTimerWorkflow` waiting on its timer), same "
        "worker, same run", "", None,
        f"RSS growth of one fresh `python -m bench.worker` (warmed up with {WARM_UP} programmes and timers, then "
        f"{idle:.1f} MiB): {n} timers sleeping a day added {with_timers - idle:.1f} MiB, then {n} open programmes "
        f"(period starting next month) {with_both - with_timers:.1f} MiB = {programme_kib:.0f} KiB a programme; "
        f"sticky cache {cached:.0f} at the end"))
