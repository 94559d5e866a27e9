"""The load the bench puts on the service: programmes and requests started through the service's
own entry points (`starter.programs.start_program`, `starter.requests.open_request`), and no-op workflows
as the baseline."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import func, select
from temporalio.client import Client

from bench.meter import bounded, history_length, until
from bench.models import NoopInput, NoopResult, ShapeInput
from bench.stack import DevStack
from domain.enrolment import MaintenanceSubscription
from domain.naming import request_workflow_id
from domain.request import NewRequest
from storage.db import SessionFactory
from storage.repositories import upsert_subscriptions
from storage.tables import OutboxRow, WorkspaceRow
from testing.enrolment import enrolment

PARIS = ZoneInfo("Europe/Paris")
# How often the bench looks at the database while it waits: the end instants come from the rows themselves.
POLL_SECONDS = 0.2
# Mails an enrolment sends: the welcome (to the contacts) and the TL's assignment.
ENROLMENT_MAILS = 2


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


async def count_prefixed(sessions: SessionFactory, column: Any, prefix: str, *where: Any) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).where(column.like(f"{prefix}%"), *where)) or 0)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite hands back naive UTC


async def _seconds_after(sessions: SessionFactory, began: datetime, column: Any, *where: Any) -> float:
    """Seconds from `began` to the latest `column` instant of the rows `where` selects (written by the worker)."""
    async with sessions() as session:
        last = await session.scalar(select(func.max(column)).where(*where))
    if last is None:
        raise RuntimeError(f"no row where {where}")
    return (_utc(last) - began).total_seconds()


async def start_programmes(stack: DevStack, task_queue: str, prefix: str, n: int, concurrency: int,
                           calendar: dict[str, Any] | None = None) -> float:
    """Start `n` programmes through the service's start path; seconds until every workspace exists."""
    return (await start_programmes_at(stack, task_queue, prefix, n, concurrency, calendar))[0]


async def start_programmes_at(stack: DevStack, task_queue: str, prefix: str, n: int, concurrency: int,
                              calendar: dict[str, Any] | None = None) -> tuple[float, datetime]:
    """`start_programmes`, and the instant its clock started (the first start's call), for later ends.

    The end is read from the rows, not from when a poll first saw them: the latest workspace's `created_at` (the
    worker's clock, this machine's). So the bench polls a few times a second instead of fifty, and its polling
    takes less of the two cores the worker and the server share, with no loss of precision.
    """
    from starter.programs import start_program

    customers = [f"{prefix}{i:04d}" for i in range(n)]
    start = _period_start()
    await _subscriptions(stack.sessions, customers, start)
    settings = stack.settings(task_queue)
    overrides = {"calendar": calendar} if calendar else {}
    began = datetime.now(UTC)
    await bounded([lambda c=c: start_program(stack.client, settings, enrolment(c, start, **overrides), "bench")
                   for c in customers], concurrency)

    async def enrolled() -> bool:
        return await count_prefixed(stack.sessions, WorkspaceRow.customer_id, prefix) >= n

    await until(enrolled, f"{n} workspaces ({prefix}*)", timeout=60 + n * 1.0, interval=POLL_SECONDS)
    return await _seconds_after(stack.sessions, began, WorkspaceRow.created_at, WorkspaceRow.customer_id.like(
        f"{prefix}%")), began


async def mails_sent(stack: DevStack, prefix: str, expected: int, began: datetime,
                     timeout: float = 120) -> float:  # noqa: ASYNC109
    """Until the outbox holds `expected` mails of the customers `prefix*`, all sent; seconds from `began` to the
    last one's `sent_at`. Each measured round waits for this, so what is left of one round's work (the enrolment's
    mails and welcome document after its workspace) never runs in the next round or in the no-op baseline."""
    seen: list[tuple[int, int]] = [(0, 0)]

    async def all_sent() -> bool:
        async with stack.sessions() as session:
            rows = (await session.execute(select(OutboxRow.status, func.count()).where(
                OutboxRow.customer_id.like(f"{prefix}%")).group_by(OutboxRow.status))).all()
        by = {status: int(count) for status, count in rows}
        seen[0] = (by.get("sent", 0), sum(by.values()) - by.get("sent", 0))
        return seen[0][0] >= expected and seen[0][1] == 0

    try:
        await until(all_sent, f"{expected} mails of {prefix}* sent", timeout, POLL_SECONDS)
    except TimeoutError as err:
        raise TimeoutError(f"{err}: {seen[0][0]} sent, {seen[0][1]} not sent") from None
    return await _seconds_after(stack.sessions, began, OutboxRow.sent_at, OutboxRow.customer_id.like(f"{prefix}%"))


async def noop_round(client: Client, task_queue: str, n: int, concurrency: int) -> float:
    """No-op workflows per second: `n` started at once, until every one has completed."""
    return await _round(client, task_queue, "BenchNoopWorkflow", "noop", lambda i: NoopInput(label=str(i)), n,
                        concurrency)


async def shape_round(client: Client, task_queue: str, n: int, concurrency: int, local_activities: int) -> float:
    """`BenchShapeWorkflow`s per second (an enrolment's tasks, none of its work): `n` at once, until completed,
    through the same client path as the no-op round, so that the two compare like with like."""
    return await _round(client, task_queue, "BenchShapeWorkflow", "shape",
                        lambda i: ShapeInput(label=str(i), local_activities=local_activities), n, concurrency)


async def _round(client: Client, task_queue: str, workflow: str, id_prefix: str, arg: Callable[[int], BaseModel],
                 n: int, concurrency: int) -> float:
    tag = uuid.uuid4().hex[:6]
    began = time.monotonic()
    await asyncio.wait_for(bounded([lambda i=i: client.execute_workflow(
        workflow, arg(i), id=f"bench-{id_prefix}-{tag}-{i}", task_queue=task_queue,
        result_type=NoopResult) for i in range(n)], concurrency), 60 + n)
    return n / (time.monotonic() - began)


class TaskShape(NamedTuple):
    """What a run's history holds up to its first timer or its end."""

    workflow_tasks: int
    local_activities: int
    activities: int

    def text(self) -> str:
        """`2 workflow tasks, 2 local activities, 1 activity`."""
        def n(count: int, one: str, many: str) -> str:
            return f"{count} {one if count == 1 else many}"

        return ", ".join((n(self.workflow_tasks, "workflow task", "workflow tasks"),
                          n(self.local_activities, "local activity", "local activities"),
                          n(self.activities, "activity", "activities")))


async def task_shape(client: Client, workflow_id: str) -> TaskShape:
    """The tasks of a run up to its first timer (a programme's first wait) or its end."""
    tasks = local = scheduled = 0
    async for e in client.get_workflow_handle(workflow_id).fetch_history_events():
        kind = e.WhichOneof("attributes")
        if kind in ("timer_started_event_attributes", "workflow_execution_completed_event_attributes"):
            break
        if kind == "workflow_task_completed_event_attributes":
            tasks += 1
        elif kind == "marker_recorded_event_attributes" and \
                e.marker_recorded_event_attributes.marker_name == "core_local_activity":
            local += 1
        elif kind == "activity_task_scheduled_event_attributes":
            scheduled += 1
    return TaskShape(tasks, local, scheduled)


async def noop_history(client: Client, tq: str) -> int:
    """Events of one no-op workflow: the baseline of the history sizes."""
    wid = f"bench-noop-history-{uuid.uuid4().hex[:6]}"
    await asyncio.wait_for(client.execute_workflow("BenchNoopWorkflow", NoopInput(), id=wid, task_queue=tq,
                                                   result_type=NoopResult), 60)
    return await history_length(client, wid)


class Opened(NamedTuple):
    mails_seconds: float  # until every TL mail was sent
    numbers_seconds: float  # until every tracking number was back
    workflow_ids: list[str]  # the requests' workflows


async def open_requests(stack: DevStack, task_queue: str, customers: list[str], n: int,
                        concurrency: int) -> Opened:
    """Open `n` requests (round robin over `customers`) through `starter.requests.open_request`.

    Returns the seconds until every TL mail was sent and until every tracking number was back, and the requests'
    workflow IDs. The end is the latest of those mails' `sent_at`, stamped once the relay has taken the mail: a
    row's `created_at` is stamped before its insert waits for SQLite's write lock, so under load it could come
    before the row existed.
    """
    from starter.requests import open_request

    settings = stack.settings(task_queue)
    tag = uuid.uuid4().hex[:4]
    news = [NewRequest.model_validate({
        "customer_id": customers[i % len(customers)], "kind": "support", "priority": "high",
        "summary": f"Bench request {tag}-{i}", "filed_by": "carol"}) for i in range(n)]
    began = datetime.now(UTC)
    numbers = await bounded([lambda r=r: open_request(stack.client, settings, r, sessions=stack.sessions)
                             for r in news], concurrency)
    numbers_seconds = (datetime.now(UTC) - began).total_seconds()
    waiting = {f"{request_workflow_id(x)}:" for x in numbers}
    sent: list[datetime] = []

    async def delivered() -> bool:
        # The TL's "request opened" mail (A1, A4), key `request-<tracking>:...`, once its row says sent.
        async with stack.sessions() as session:
            rows = await session.execute(select(OutboxRow.idempotency_key, OutboxRow.sent_at).where(
                OutboxRow.template == "request_opened", OutboxRow.status == "sent",
                OutboxRow.idempotency_key.like("request-TC-BENCH-%")))
            for key, at in rows:
                if key[:key.index(":") + 1] in waiting and at is not None:
                    waiting.discard(key[:key.index(":") + 1])
                    sent.append(_utc(at))
        return not waiting

    await until(delivered, f"{n} TL mails sent", timeout=60 + n * 1.0, interval=POLL_SECONDS)
    return Opened((max(sent) - began).total_seconds(), numbers_seconds, [request_workflow_id(x) for x in numbers])
