"""A real stack for workflow tests: Temporal (time-skipping or dev server), SQLite or
PostgreSQL migrated by Alembic, a real SMTP server on loopback, and the real worker.

The rigs the benchmarks share (servers, enrolment) live in testing/; tests import them from here too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.enrolment import Enrolment
from domain.naming import SA_CUSTOMER_ID, program_workflow_id
from domain.policy import ProgramPolicy
from domain.program import ProgramInput, ProgramStatus
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from storage.repositories import upsert_subscriptions
from testing.enrolment import enrolment as enrolment
from testing.servers import binary as binary
from testing.servers import free_port
from testing.servers import start_dev_server as start_dev_server
from tests.clock import start_time_skipping as start_time_skipping  # at TECHCONNECT_TEST_NOW when set
from worker import WORKFLOWS, ActivitySet, build_activities, workflow_runner

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    env: WorkflowEnvironment
    client: Client
    sink: SmtpSink
    sessions: SessionFactory
    settings: Settings
    task_queue: str
    database_url: str

    @property
    def policy(self) -> ProgramPolicy:
        return self.settings.policy

    def mails(self, template_subject: str | None = None, to: str | None = None) -> list[EmailMessage]:
        out = []
        for m in list(self.sink.messages):
            if template_subject and template_subject.lower() not in str(m["Subject"]).lower():
                continue
            if to and to.lower() not in (str(m["To"]) + str(m.get("Cc", ""))).lower():
                continue
            out.append(m)
        return out

    async def start(self, enrolment: Enrolment, **kw: Any) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            "ProgramWorkflow",
            ProgramInput(enrolment=enrolment, policy=self.policy, **kw),
            id=program_workflow_id(enrolment.customer.id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"Programme of {enrolment.customer.name}",
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(SA_CUSTOMER_ID, enrolment.customer.id)]),
        )

    async def status(self, customer_id: str) -> ProgramStatus:
        handle = self.client.get_workflow_handle(program_workflow_id(customer_id))
        result: ProgramStatus = await handle.query("get_status", result_type=ProgramStatus)
        return result

    async def wait_enrolled(self, customer_id: str, within: float = 60.0) -> ProgramStatus:
        """Steps are refused while the programme is still enrolling; wait until it is not."""
        deadline = time.monotonic() + within
        while True:
            s = await self.status(customer_id)
            if s.phase.value != "enrolling":
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"{customer_id} still enrolling after {within} s: phase {s.phase.value}, "
                                     f"refusal {s.refusal}")
            await asyncio.sleep(0.05)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def sleep_until(self, at: datetime) -> None:
        delta = at - await self.now()
        if delta > timedelta(0):
            await self.env.sleep(delta)


@contextlib.asynccontextmanager
async def stack(env: WorkflowEnvironment, database_url: str, tmp: Path,
                policy: ProgramPolicy | None = None,
                activities: Callable[[ActivitySet], list[object]] = ActivitySet.all) -> AsyncIterator[Stack]:
    """`activities`: what the worker registers from the real set (a test may wrap one of them to hold it)."""
    await upgrade(database_url)
    engine = make_engine(database_url)
    port = free_port()
    settings = Settings(data_dir=tmp, database_url=database_url, smtp_port=port,
                        policy=policy or ProgramPolicy())
    sink = SmtpSink(host="127.0.0.1", port=port)
    sink.start()
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    sessions = make_session_factory(engine)
    acts = build_activities(settings, sessions)
    try:
        async with Worker(env.client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities(acts),
                          workflow_runner=workflow_runner()):
            yield Stack(env=env, client=env.client, sink=sink, sessions=sessions, settings=settings,
                        task_queue=task_queue, database_url=database_url)
    finally:
        sink.stop()
        await engine.dispose()


@contextlib.asynccontextmanager
async def stack_on_server(tmp: Path, database_url: str | None = None,
                          server: Callable[[], Awaitable[WorkflowEnvironment]] = start_dev_server,
                          ) -> AsyncIterator[Stack]:
    """`stack` on a Temporal server of its own (the dev server unless `server` says otherwise), shut down
    after it; the database is SQLite in `tmp` unless `database_url` names another."""
    url = database_url or f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}"
    async with await server() as env, stack(env, url, tmp) as st:
        yield st


async def add_subscription(sessions: SessionFactory, customer_id: str, start: date, end: date,
                           contact_count: int = 2, sub_id: str | None = None) -> str:
    from domain.enrolment import MaintenanceSubscription

    sid = sub_id or f"SMP-{customer_id}"
    async with sessions() as session:
        await upsert_subscriptions(session, [MaintenanceSubscription(
            id=sid, customer_id=customer_id, start=start, end=end, contact_count=contact_count)])
        await session.commit()
    return sid


# ---- a workflow at rest ---------------------------------------------------------------------------
_CLOSING = {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW}
_WFT = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT}
_ACTIVITY_CLOSED = {EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
                    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED}
# Commands the server carries out for the workflow, each answered by an event naming its initiating event.
_INITIATED = {
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "start of a child workflow",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signal to another workflow",
    EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "cancellation of another workflow",
}
_ANSWERED = {EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED,
             EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED,
             EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED,
             EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED,
             EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
             EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED}


# Events that give the workflow something new to handle: each needs a workflow task after it.
_WAKING = {EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
           EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED,
           EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
           EventType.EVENT_TYPE_TIMER_FIRED, *_ACTIVITY_CLOSED, *_ANSWERED,
           EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
           EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
           EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
           EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
           EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED}


def _attributes(e: HistoryEvent) -> Any:
    return getattr(e, e.WhichOneof("attributes") or "")


def in_flight(events: Sequence[HistoryEvent]) -> list[str]:
    """What a workflow is still doing at the end of `events`, read from its history alone (one
    consistent prefix, unlike a describe and a history fetched one after the other): a workflow
    task scheduled or running, an activity scheduled and not closed (a retrying one included), an
    Update accepted and not completed, a child start, signal or cancellation not yet answered.
    Empty: it waits on timers, signals, Updates or running children only, or it is closed."""
    if not events or events[-1].event_type in _CLOSING:
        return []
    activities: dict[int, str] = {}
    commands: dict[int, str] = {}
    updates: dict[str, str] = {}  # by Update ID (the time-skipping server leaves accepted_event_id unset)
    last_task: HistoryEvent | None = None
    unhandled: HistoryEvent | None = None  # the first waking event since the last completed workflow task
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            unhandled = None
        elif t in _WAKING and unhandled is None:
            unhandled = e
        if t in _WFT:
            last_task = e
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif t in _ACTIVITY_CLOSED:
            activities.pop(_attributes(e).scheduled_event_id, None)
        elif t in _INITIATED:
            commands[e.event_id] = _INITIATED[t]
        elif t in _ANSWERED:
            commands.pop(_attributes(e).initiated_event_id, None)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            a = e.workflow_execution_update_accepted_event_attributes
            updates[a.accepted_request.meta.update_id or a.protocol_instance_id] = (
                f"{a.accepted_request.input.name} (accepted at event {e.event_id})")
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            updates.pop(e.workflow_execution_update_completed_event_attributes.meta.update_id, None)
    busy = []
    if last_task is not None and last_task.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        busy.append(f"workflow task ({EventType.Name(last_task.event_type).removeprefix('EVENT_TYPE_')} "
                    f"at event {last_task.event_id})")
    elif unhandled is not None:  # (the server schedules its task in the same write: seen here for safety)
        busy.append(f"{EventType.Name(unhandled.event_type).removeprefix('EVENT_TYPE_')} at event "
                    f"{unhandled.event_id}, not yet handled")
    busy += [f"activity {name} (scheduled at event {n})" for n, name in activities.items()]
    busy += [f"Update {what}" for what in updates.values()]
    busy += [f"{what} (event {n})" for n, what in commands.items()]
    return busy


async def wait_idle(handle: WorkflowHandle[Any, Any], within: float = 60.0) -> list[HistoryEvent]:
    """The workflow's history once nothing is in flight (`in_flight` is empty): everything due by now is
    handled, and the next event can only come from a timer or from outside. Fails after `within`
    seconds naming what was still in flight."""
    deadline = time.monotonic() + within
    while True:
        events = [e async for e in handle.fetch_history_events()]
        busy = in_flight(events)
        if not busy:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle.id} not idle after {within} s ({len(events)} events); "
                                 f"in flight: {'; '.join(busy)}")
        await asyncio.sleep(0.1)


_T = TypeVar("_T")


async def eventually(probe: Callable[[], Awaitable[_T]], ok: Callable[[_T], bool], what: str,
                     timeout: float = 10, interval: float = 0.05,  # noqa: ASYNC109 (a polling deadline)
                     shown: Callable[[_T], str] = repr) -> _T:
    """Poll until `ok`; the failure says what was last seen (`shown`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = await probe()
    while not ok(value):
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout}s; last value {shown(value)}")
        await asyncio.sleep(interval)
        value = await probe()
    return value


async def until_passes(check: Callable[[], Awaitable[_T]], timeout: float = 10,  # noqa: ASYNC109
                       interval: float = 0.1) -> _T:
    """Run `check` until it stops failing an assertion (visibility lags the workflow); its last failure
    is raised after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(interval)


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A Prometheus exposition by sample name (and by family name, empty for a family without samples):
    each sample's labels and value."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, [])
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


# ---- a command line run in a subprocess ----------------------------------------------------------
@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"{' '.join(self.args)} -> exit {self.code}\nstdout: {self.out}\nstderr: {self.err}"


async def run_command(program: str, *args: str, env: dict[str, str], cwd: Path = PROJECT_ROOT,
                      timeout: float = 60.0) -> Run:  # noqa: ASYNC109 (the command's deadline)
    """`program args` with exactly `env`; whatever the outcome, never a Python traceback."""
    proc = await asyncio.create_subprocess_exec(
        program, *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    run = Run((program, *args), proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in run.err, str(run)
    return run


@dataclass
class Cli:
    """`techconnect` as operations staff run it: `python -m cli` in a subprocess, with `env` (cli_environ)."""

    env: dict[str, str]

    async def exec(self, program: str, *args: str, env: dict[str, str] | None = None) -> Run:
        return await run_command(program, *args, env={**self.env, **(env or {})})

    async def __call__(self, *args: str, env: dict[str, str] | None = None) -> Run:
        return await self.exec(sys.executable, "-m", "cli", *args, env=env)


def cli_environ(st: Stack) -> dict[str, str]:
    """The environment of a `techconnect` run against `st`: the parent's, without settings that would point
    the CLI elsewhere, and `st`'s Temporal, database, task queue, SMTP sink and data directory."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TECHCONNECT_"))}
    return clean | {
        "TEMPORAL_ADDRESS": st.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": st.client.namespace,
        "TECHCONNECT_DATABASE_URL": st.database_url,
        "TECHCONNECT_TASK_QUEUE": st.task_queue,
        "TECHCONNECT_SMTP_PORT": str(st.settings.smtp_port),
        "TECHCONNECT_DATA_DIR": str(st.settings.data_dir),
        "COLUMNS": "200",  # rich wraps long messages at 80 columns otherwise
    }
