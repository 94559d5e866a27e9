"""What the tests that kill worker processes add to testing/workers.py (spawning, describing,
waiting for and stopping them): standing in for the activity timeouts of the attempts a killed
worker held, and telling a legitimate resend of a mail from a bug. Used by tests/test_scale.py,
test_crashes.py and test_load_faults.py (their shared database is the `shared_db` fixture of
tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from devstack.smtp_sink import SmtpSink
from storage.db import SessionFactory
from storage.tables import OutboxRow


async def fail_attempts_of_dead_worker(client: Client, task_queue: str, dead: str | set[str]) -> list[str]:
    """Stand in for the start-to-close timeout (60-120 s) of the attempts the killed worker held.

    In production the timeout does this by itself; the test fails those attempts by ID so the
    retry (same idempotency key) runs on a live worker at once. Returns the activity types failed.
    """
    dead_ids = {dead} if isinstance(dead, str) else dead
    failed: list[str] = []
    async for wf in client.list_workflows(f'TaskQueue="{task_queue}" AND ExecutionStatus="Running"'):
        desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe()
        for pa in desc.raw_description.pending_activities:
            if pa.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED and pa.last_worker_identity in dead_ids:
                handle = client.get_async_activity_handle(workflow_id=wf.id, run_id=wf.run_id,
                                                          activity_id=pa.activity_id)
                with contextlib.suppress(RPCError):  # it may have completed in between
                    await handle.fail(ApplicationError("worker killed with SIGKILL (test)"))
                    failed.append(pa.activity_type.name)
    return failed


@dataclass
class Sweeper:
    """Fails, by ID, the attempts that dead workers (`dead`, identities) held on `task_queue`, every
    `interval` seconds until cancelled: the stand-in for their start-to-close timeouts. A transient
    RPC error (a busy server, a deadline exceeded) does not end it: it backs off (up to `max_backoff`
    seconds), tries again, and keeps the errors in `errors` for the test's report."""

    client: Client
    task_queue: str
    dead: set[str] = field(default_factory=set)
    interval: float = 0.5
    max_backoff: float = 5.0
    failed: list[str] = field(default_factory=list)  # activity types of the attempts failed
    errors: list[str] = field(default_factory=list)

    async def run(self) -> None:
        backoff = self.interval
        while True:
            if self.dead:
                try:
                    self.failed += await fail_attempts_of_dead_worker(self.client, self.task_queue, self.dead)
                    backoff = self.interval
                except RPCError as exc:
                    self.errors.append(f"{exc.status.name}: {exc.message}")
                    backoff = min(self.max_backoff, backoff * 2)
            await asyncio.sleep(backoff)


# ---- mail sent twice: only from the at-least-once window ---------------------------------------
async def unsent_mail(sessions: SessionFactory) -> dict[str, str]:
    """Message-ID -> what it is, for every outbox row not marked "sent" whose delivery was attempted
    (attempts >= 1): the mails that a worker dying now may have handed to SMTP without recording it.
    Taken the moment a worker is found dead, before anything can retry its attempts."""
    async with sessions() as session:
        rows = (await session.scalars(select(OutboxRow).where(OutboxRow.status != "sent",
                                                               OutboxRow.attempts >= 1))).all()
    return {r.message_id: f"{r.customer_id}/{r.template} ({r.status}, attempts {r.attempts})" for r in rows}


def smtp_transactions(sink: SmtpSink) -> Counter[str]:
    """SMTP transactions per Message-ID: the copy the mailbox kept plus the duplicates it dropped."""
    return Counter(str(m["Message-ID"]).strip() for m in [*sink.messages, *sink.duplicates])


def unexplained_resends(rows: Sequence[OutboxRow], sink: SmtpSink, unsent_at_deaths: Sequence[dict[str, str]]
                        ) -> list[str]:
    """Every mail whose SMTP transactions exceed one plus the number of worker deaths at which its outbox
    row was attempted and not yet "sent" (`unsent_mail` snapshots, one per death). A resend is only
    legitimate from that window: an attempt killed between SMTP's acceptance and the outbox commit.
    A second delivery of a mail already recorded sent, or of one no dead worker was sending, is a bug."""
    sent = smtp_transactions(sink)
    out = []
    for r in rows:
        windows = sum(1 for unsent in unsent_at_deaths if r.message_id in unsent)
        if sent[r.message_id] > 1 + windows:
            out.append(f"{r.customer_id}/{r.template} {r.message_id}: {sent[r.message_id]} SMTP transactions, "
                       f"unsent at {windows} of {len(unsent_at_deaths)} worker death(s), attempts {r.attempts}")
    return out


async def outbox(sessions: SessionFactory) -> list[OutboxRow]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxRow))).all())
