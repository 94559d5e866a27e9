"""A retried mail activity sends once, on a real (time-skipping) Temporal server.

Two crash points, simulated on the first attempt, then Temporal's retry:

1. after the outbox row says "sent" but before Temporal hears of it (worker killed
   right after the commit): the retry finds the row and does not touch SMTP;
2. after SMTP accepted the message but before the outbox commit (the one window the
   outbox cannot see): the retry resends with the same Message-ID and the receiving
   mailbox (the sink, like Gmail or Exchange) drops the duplicate.
"""

from __future__ import annotations

import email.message
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.mail import MailActivities, message_id_for
from activities.mailer import SmtpMailer, TransientMailError
from devstack.smtp_sink import SmtpSink
from domain.activities import MailRequest, MailResult
from tests.conftest import free_port
from tests.mail_fixtures import SENDER, database, mail_request, make_mail_activities, outbox_row
from tests.mail_retry_workflow import MailRetryWorkflow

TEST_SERVER = shutil.which("temporal-test-server") or str(
    Path(__file__).resolve().parent.parent / ".venv/bin/temporal-test-server"
)


class AcceptedThenLostMailer(SmtpMailer):
    """First send reaches the relay, then the caller sees a transient failure (timeout after DATA)."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, timeout=5)
        self.calls = 0

    async def send(self, message: email.message.Message) -> None:
        self.calls += 1
        await super().send(message)
        if self.calls == 1:
            raise TransientMailError("simulated: connection lost after the relay accepted the message")


class CrashAfterCommit:
    """The real activity, then a crash on attempt 1 before Temporal records the completion."""

    def __init__(self, inner: MailActivities) -> None:
        self.inner = inner

    @activity.defn(name="send_mail")
    async def send_mail(self, request: MailRequest) -> MailResult:
        result = await self.inner.send_mail(request)
        if activity.info().attempt == 1:
            raise RuntimeError("simulated worker crash after the outbox said sent")
        return result


@pytest_asyncio.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=TEST_SERVER, data_converter=pydantic_data_converter
    ) as running:
        yield running


async def _activity_attempts(handle: WorkflowHandle[MailRetryWorkflow, MailResult]) -> list[int]:
    return [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


async def _run(client: Client, activity_fn: Callable[..., Any], request: MailRequest) -> tuple[MailResult, list[int]]:
    task_queue = f"mail-retry-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[MailRetryWorkflow], activities=[activity_fn]):
        handle = await client.start_workflow(
            MailRetryWorkflow.run, request, id=f"mail-retry-{uuid.uuid4().hex[:8]}", task_queue=task_queue
        )
        result = await handle.result()
        # The started event of a retried activity is written once, with the final attempt number.
        return result, await _activity_attempts(handle)


async def test_crash_after_outbox_commit_retry_sends_nothing(
    env: WorkflowEnvironment, database_url: str, tmp_path: Path
) -> None:
    async with database(database_url) as sessions, SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        crashing = CrashAfterCommit(make_mail_activities(sessions, sink))
        result, attempts = await _run(env.client, crashing.send_mail, mail_request("wf-1-welcome"))

        assert result.status == "already_sent"  # attempt 2 found the row attempt 1 committed
        assert attempts == [2]
        assert sink.received == 1 and len(sink.messages) == 1 and not sink.duplicates
        row = await outbox_row(sessions, "wf-1-welcome")
        assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
        assert len(list((tmp_path / "mail").glob("*.eml"))) == 1


async def test_crash_after_smtp_accept_retry_resends_same_message_id(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    async with database(sqlite_url) as sessions, SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        mailer = AcceptedThenLostMailer(sink.host, sink.port)
        acts = make_mail_activities(sessions, sink, mailer=mailer)
        result, attempts = await _run(env.client, acts.send_mail, mail_request("wf-2-welcome"))

        assert result.status == "sent" and attempts == [2] and mailer.calls == 2
        # Two SMTP transactions, one message in the mailbox: the resend carried the same Message-ID.
        assert sink.received == 2 and len(sink.messages) == 1 and len(sink.duplicates) == 1
        expected_id = message_id_for("wf-2-welcome", SENDER)
        assert sink.messages[0]["Message-ID"] == sink.duplicates[0]["Message-ID"] == expected_id
        row = await outbox_row(sessions, "wf-2-welcome")
        assert (row.status, row.attempts) == ("sent", 2)
        assert row.last_error is not None and "simulated" in row.last_error  # the lost attempt stays visible
        assert len(list((tmp_path / "mail").glob("*.eml"))) == 1


async def test_permanent_failure_is_not_retried(env: WorkflowEnvironment, sqlite_url: str) -> None:
    async with (
        database(sqlite_url) as sessions,
        SmtpSink(port=free_port(), fail_with=(550, "5.1.1 no such user")) as sink,
    ):
        acts = make_mail_activities(sessions, sink)
        task_queue = f"mail-retry-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client, task_queue=task_queue, workflows=[MailRetryWorkflow], activities=[acts.send_mail]
        ):
            handle = await env.client.start_workflow(
                MailRetryWorkflow.run,
                mail_request("wf-3-welcome"),
                id=f"mail-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )
            with pytest.raises(WorkflowFailureError) as info:
                await handle.result()
        activity_error = info.value.cause
        assert isinstance(activity_error, ActivityError)
        assert isinstance(activity_error.cause, ApplicationError)
        assert activity_error.cause.type == "PermanentMailError" and activity_error.cause.non_retryable
        assert await _activity_attempts(handle) == [1]
        assert sink.refused == 1
        row = await outbox_row(sessions, "wf-3-welcome")
        assert (row.status, row.attempts) == ("failed", 1)
