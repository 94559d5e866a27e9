"""The load the bench puts on the service: programmes and requests started through the service's
own entry points (`starter.programs.start_program`, `starter.requests.open_request`), and no-op workflows
as the baseline."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from temporalio.client import Client

from bench.meter import bounded, history_length, until
from bench.models import NoopInput, NoopResult
from bench.stack import DevStack
from domain.enrolment import MaintenanceSubscription
from domain.naming import request_workflow_id
from domain.request import NewRequest
from storage.db import SessionFactory
from storage.repositories import upsert_subscriptions
from storage.tables import OutboxRow, WorkspaceRow
from testing.enrolment import enrolment

PARIS = ZoneInfo("Europe/Paris")


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


async def start_programmes(stack: DevStack, task_queue: str, prefix: str, n: int, concurrency: int,
                           calendar: dict[str, Any] | None = None) -> float:
    """Start `n` programmes through the service's start path; seconds until every workspace exists."""
    from starter.programs import start_program

    customers = [f"{prefix}{i:04d}" for i in range(n)]
    start = _period_start()
    await _subscriptions(stack.sessions, customers, start)
    settings = stack.settings(task_queue)
    overrides = {"calendar": calendar} if calendar else {}
    began = time.monotonic()
    await bounded([lambda c=c: start_program(stack.client, settings, enrolment(c, start, **overrides), "bench")
                   for c in customers], concurrency)

    async def enrolled() -> bool:
        return await count_prefixed(stack.sessions, WorkspaceRow.customer_id, prefix) >= n

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


async def noop_history(client: Client, tq: str) -> int:
    """Events of one no-op workflow: the baseline of the history sizes."""
    wid = f"bench-noop-history-{uuid.uuid4().hex[:6]}"
    await asyncio.wait_for(client.execute_workflow("BenchNoopWorkflow", NoopInput(), id=wid, task_queue=tq,
                                                   result_type=NoopResult), 60)
    return await history_length(client, wid)


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
