"""Outages (issue 5): the SMTP relay down for a while, the application database unreachable.

Both run a real programme (time-skipping server, the real worker and activities) and check
the same three things: the workflow never fails (activities retry, RETRY_FOREVER in
workflows/activity_calls.py), the work resumes once the dependency is back, and nothing is
lost or done twice (outbox, documents, audit, mail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from storage.repositories import get_programme, list_audit, list_documents, list_outbox
from storage.tables import AuditLogRow, DocumentRow, OutboxRow, ProgrammeRow, WorkspaceRow
from tests.harness import Stack, add_subscription, enrolment, eventually, stack
from tests.tcp_proxy import CuttableProxy
from tests.test_program_refusals import history_len

T = TypeVar("T")


def _shown(value: object) -> str:
    """An outbox row by what matters (its state, attempts, last error), anything else by its repr."""
    if isinstance(value, OutboxRow):
        return (f"outbox row {value.idempotency_key}: status {value.status}, attempts {value.attempts}, "
                f"last error {value.last_error!r}")
    return repr(value)


async def until(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str, within: float = 30) -> T:
    return await eventually(probe, ok, what, timeout=within, interval=0.1, shown=_shown)


async def pending(handle: WorkflowHandle[Any, Any]) -> list[PendingActivityInfo]:
    return list((await handle.describe()).raw_description.pending_activities)


async def started_attempts(handle: WorkflowHandle[Any, Any]) -> dict[str, int]:
    """Highest attempt each activity type was completed on (a retried activity's started event has it)."""
    scheduled: dict[int, str] = {}
    attempts: dict[str, int] = {}
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = e.activity_task_started_event_attributes
            name = scheduled[a.scheduled_event_id]
            attempts[name] = max(attempts.get(name, 0), a.attempt)
    return attempts


async def workflow_task_failures(handle: WorkflowHandle[Any, Any]) -> int:
    return len([e async for e in handle.fetch_history_events()
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED])


def template(m: EmailMessage) -> str:
    return str(m["X-TechConnect-Template"])


async def begin(st: Stack, customer: str) -> WorkflowHandle[Any, Any]:
    today = (await st.now()).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=1), today + timedelta(days=800))
    return await st.start(enrolment(customer, today))


# ---- SMTP down -----------------------------------------------------------------------------------
async def test_smtp_down_the_welcome_mail_waits_then_goes_exactly_once(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    async with stack(env, sqlite_url, tmp_path) as st:
        await asyncio.to_thread(st.sink.stop)  # the relay is down: connection refused
        handle = await begin(st, "mailout")
        key = "program-mailout:p1:mail:welcome"

        async def welcome_row() -> OutboxRow | None:
            async with st.sessions() as session:
                return next((r for r in await list_outbox(session, customer_id="mailout")
                             if r.idempotency_key == key), None)

        row = await until(welcome_row, lambda r: r is not None and r.attempts >= 2, "welcome mail retried")
        assert row is not None and row.status == "pending" and row.last_error
        assert "SMTPConnectError" in row.last_error  # what went wrong, kept for ops
        # The welcome waits (the document and both mails, one activity since `welcome-in-one-activity`); its
        # document, which needs no SMTP, is filed, filed first by each attempt.
        waiting = await pending(handle)
        assert [a.activity_type.name for a in waiting] == ["send_welcome"], waiting
        assert max(a.attempt for a in waiting) >= 2
        async with st.sessions() as session:
            assert [d.kind for d in await list_documents(session, "mailout")] == ["welcome"]
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        # The outage delays the mails only: the programme's start is already in the database
        # (workspace id and audit entry written before the mails: by the registration itself since
        # `enrolment-mails-at-once`, by a save of its own before: tests/test_patching.py).
        async with st.sessions() as session:
            programme = await get_programme(session, "mailout")
            audit = [a.action for a in await list_audit(session, "mailout")]
        assert programme is not None and programme.status["workspace_id"] == "ws-mailout"
        assert "programme_started" in audit
        assert st.sink.received == 0

        await asyncio.to_thread(st.sink.start)  # the relay is back, same address
        await st.sink.wait_for(lambda m: template(m) == "tl_assignment", timeout=30)
        await history_len(handle)

        # Delivered exactly once, nothing lost: every outbox row sent, one SMTP transaction each.
        async with st.sessions() as session:
            rows = await list_outbox(session, customer_id="mailout")
        assert {r.template: r.status for r in rows} == {"welcome": "sent", "tl_assignment": "sent"}
        welcome = next(r for r in rows if r.idempotency_key == key)
        assert welcome.attempts >= 2 and welcome.last_error and "SMTPConnectError" in welcome.last_error
        assert [template(m) for m in st.sink.messages].count("welcome") == 1
        assert st.sink.received == len(rows) == len(st.sink.messages) and not st.sink.duplicates
        assert (await started_attempts(handle))["send_welcome"] >= 2
        s = await st.status("mailout")
        assert s.phase.value == "onboarding" and s.mail_failures == []
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING


# ---- database unreachable ----------------------------------------------------------------------
async def counts(url: str, customer: str) -> dict[str, int]:
    """Row counts read straight from PostgreSQL (not through the proxy)."""
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session:
            out = {}
            for name, table, column in (("programmes", ProgrammeRow, ProgrammeRow.customer_id),
                                        ("workspaces", WorkspaceRow, WorkspaceRow.customer_id),
                                        ("documents", DocumentRow, DocumentRow.customer_id),
                                        ("outbox", OutboxRow, OutboxRow.customer_id),
                                        ("audit", AuditLogRow, AuditLogRow.customer_id)):
                out[name] = int(await session.scalar(
                    select(func.count()).select_from(table).where(column == customer)) or 0)
            return out
    finally:
        await engine.dispose()


async def test_database_cut_while_a_programme_starts(
    env: WorkflowEnvironment, pg_url: str, tmp_path: Path
) -> None:
    await upgrade(pg_url)
    url = make_url(pg_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with stack(env, proxied, tmp_path) as st:
            # Cut at the worst moment: PostgreSQL commits the welcome document, the worker never hears.
            proxy.cut_when(b"INSERT INTO documents", b"COMMIT\0")
            # The mails follow the filing in the same activity (`welcome-in-one-activity`): the relay is down until
            # the database is back, so that no mail is accepted by SMTP and then lost to the cut before its outbox
            # commit (that case goes again with the same Message-ID: the load test with faults and the crash tests).
            await asyncio.to_thread(st.sink.stop)
            handle = await begin(st, "dbout")
            await asyncio.wait_for(proxy.cut_done.wait(), timeout=30)
            assert (await counts(pg_url, "dbout"))["documents"] == 1  # committed before the cut

            # Unreachable: the activity retries (connection refused), the workflow does not fail. (The mails, in
            # the same activity as the filing since `welcome-in-one-activity`, wait for their outbox rows.)
            waiting = await until(lambda: pending(handle), lambda p: any(
                a.activity_type.name == "send_welcome" and a.attempt >= 3 for a in p),
                "the welcome retried while the database is unreachable")
            retrying = next(a for a in waiting if a.activity_type.name == "send_welcome")
            assert "Connect call failed" in retrying.last_failure.message  # attempt 2 found it unreachable
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

            await proxy.restore()
            await asyncio.to_thread(st.sink.start)
            await st.sink.wait_for(lambda m: template(m) == "tl_assignment", timeout=60)
            await history_len(handle)

            s = await st.status("dbout")
            assert s.phase.value == "onboarding" and s.workspace_id == "ws-dbout"
            async with st.sessions() as session:
                programme = await get_programme(session, "dbout")
                documents = await list_documents(session, "dbout")
                outbox = await list_outbox(session, customer_id="dbout")
                audit = await list_audit(session, "dbout")
            assert programme is not None and programme.phase == "onboarding"
            assert programme.status["workspace_id"] == "ws-dbout"
    finally:
        await proxy.close()

    # Written once: the retried filing found the committed row instead of adding one.
    assert [d.kind for d in documents] == ["welcome"]
    assert sorted(r.template for r in outbox) == ["tl_assignment", "welcome"]
    assert all(r.status == "sent" for r in outbox)  # and once each: the mailbox below
    assert [a.action for a in audit].count("programme_started") == 1
    assert await counts(pg_url, "dbout") == {"programmes": 1, "workspaces": 1, "documents": 1, "outbox": 2,
                                             "audit": len(audit)}
    assert sorted(template(m) for m in st.sink.messages) == ["tl_assignment", "welcome"]
    assert not st.sink.duplicates
    assert (await started_attempts(handle))["send_welcome"] >= 2
    assert await workflow_task_failures(handle) == 0
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
