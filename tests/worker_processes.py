"""Workers in their own processes (`python worker.py`), for the tests that kill them: spawning
and describing them, and standing in for the activity timeouts of the attempts a killed worker
held. Used by tests/test_scale.py, test_crashes.py and test_load_faults.py (their shared
database is the `shared_db` fixture of tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from devstack.smtp_sink import SmtpSink
from storage.db import SessionFactory
from storage.tables import OutboxRow
from testing.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    metrics_port: int
    log: Path

    @property
    def identity(self) -> str:
        # The SDK's default identity, `<pid>@<hostname>`, recorded on every task it starts.
        return f"{self.proc.pid}@{socket.gethostname()}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            body: bytes = r.read()
        return body.decode()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def worker_env(target: str, database_url: str, task_queue: str, smtp_port: int, metrics_port: int,
               data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: this machine's, less any TEMPORAL_*/TECHCONNECT_* of the caller, plus `extra`
    (e.g. TECHCONNECT_FAULT_INJECT for the crash tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TECHCONNECT_"))}
    env.update({
        "TEMPORAL_ADDRESS": target,
        "TECHCONNECT_DATABASE_URL": database_url,
        "TECHCONNECT_TASK_QUEUE": task_queue,
        "TECHCONNECT_SMTP_HOST": "127.0.0.1",
        "TECHCONNECT_SMTP_PORT": str(smtp_port),
        "TECHCONNECT_METRICS_HOST": "127.0.0.1",
        "TECHCONNECT_METRICS_PORT": str(metrics_port),
        "TECHCONNECT_DATA_DIR": str(data_dir),
        "TECHCONNECT_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


async def spawn_worker(tmp: Path, n: int, *, extra: dict[str, str] | None = None, **env: str | int) -> WorkerProcess:
    """`python worker.py` with `worker_env(**env)`; `n` names its log (`worker-<n>.log`) and data directory."""
    port = free_port()
    log = tmp / f"worker-{n}.log"
    e = worker_env(metrics_port=port, data_dir=tmp / f"worker-{n}", extra=extra, **env)  # type: ignore[arg-type]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "worker.py", cwd=ROOT, env=e,
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
    return WorkerProcess(proc=proc, metrics_port=port, log=log)


async def pollers(client: Client, task_queue: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind),
            timeout=timedelta(seconds=10))
        out[TaskQueueType.Name(kind)] = {p.identity for p in resp.pollers}
    return out


async def wait_polling(client: Client, task_queue: str, workers: list[WorkerProcess], within: float = 45.0) -> None:
    """Until every worker polls both the workflow and the activity side of the queue."""
    identities = {w.identity for w in workers}

    async def all_polling() -> bool:
        try:
            seen = await pollers(client, task_queue)
        except RPCError:  # a busy server: ask again
            return False
        return all(identities <= ids for ids in seen.values())

    await wait_for(all_polling, f"{len(workers)} worker(s) polling {task_queue}", within=within, workers=workers)


async def stop_all(workers: list[WorkerProcess], grace: float = 10.0,
                   tasks: list[asyncio.Task[None]] | None = None) -> None:
    """The test's background tasks (sweepers, restarters) cancelled, then every worker: SIGTERM, then
    SIGKILL after `grace` seconds. No worker outlives its test."""
    for task in tasks or []:
        task.cancel()
    for task in tasks or []:
        # A cancelled RPC may surface as RPCError rather than CancelledError: cleanup goes on regardless.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    for w in workers:
        if w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.terminate()
    for w in workers:
        if w.proc.returncode is None:
            try:
                await asyncio.wait_for(w.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()


async def wait_for(predicate: Callable[[], object], what: str, within: float = 45.0,
                   workers: list[WorkerProcess] | None = None) -> None:
    """Until `predicate()` (awaited if a coroutine) returns True. Anything else it returns (a string
    saying what it saw, say) and any RPCError or TimeoutError it raises (a busy server, a query to a
    worker that is down) means "not yet", and the last of them is in the failure message."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result is True:
                return
            last = result
        except (RPCError, TimeoutError) as exc:
            last = exc
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- worker {w.identity}\n{w.tail()}" for w in workers or [])
            raise AssertionError(f"timed out after {within} s waiting for {what}; last seen: {last!r}\n{logs}")
        await asyncio.sleep(0.25)


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
