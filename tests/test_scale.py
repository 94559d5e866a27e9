"""Running at scale on the real dev server: three `python worker.py` processes share one task
queue; one is killed with SIGKILL half-way through the steps; nothing is lost, no mail goes
out twice, and each worker's /metrics serves the Temporal SDK's and our business metrics.

The database is a fresh PostgreSQL database (what compose runs), or a SQLite file when no
PostgreSQL is reachable outside CI.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from devstack.smtp_sink import SmtpSink
from domain.naming import SA_CUSTOMER_ID, program_workflow_id
from domain.policy import ProgramPolicy
from domain.program import Phase, ProgramInput, ProgramStatus
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade
from testing.workers import WorkerProcess, spawn_worker, wait_for, wait_polling
from tests.conftest import free_port
from tests.harness import add_subscription, enrolment, metric_samples, start_dev_server
from tests.worker_processes import Sweeper, outbox, unexplained_resends, unsent_mail  # shared with crash, load tests

ROOT = Path(__file__).resolve().parent.parent
PARIS = ZoneInfo("Europe/Paris")
PROGRAMMES = 20
WORKERS = 3


# ------------------------------------------------------------------------------ helpers
async def start_programme(client: Client, task_queue: str, customer_id: str, today: date) -> WorkflowHandle[
        object, object]:
    e = enrolment(customer_id, today)
    return await client.start_workflow(
        "ProgramWorkflow", ProgramInput(enrolment=e, policy=ProgramPolicy()),
        id=program_workflow_id(customer_id), task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL, static_summary=f"Programme of {e.customer.name}",
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CUSTOMER_ID, customer_id)]))


async def status(client: Client, customer_id: str) -> ProgramStatus:
    result: ProgramStatus = await client.get_workflow_handle(program_workflow_id(customer_id)).query(
        "get_status", result_type=ProgramStatus)
    return result


async def task_identities(client: Client, workflow_id: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            seen[event.activity_task_started_event_attributes.identity] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            # (not WORKFLOW_TASK_STARTED: a speculative task for an Update records no identity there)
            seen[event.workflow_task_completed_event_attributes.identity] += 1
    return seen


# -------------------------------------------------------------------------------- tests
@pytest.mark.slow
async def test_three_workers_share_the_load_and_survive_a_kill(
        shared_db: str, tmp_path: Path, report_figure: Callable[[str, object], None]) -> None:
    began = time.monotonic()
    await upgrade(shared_db)  # once, before the workers: they find the schema at head
    engine = make_engine(shared_db)
    sessions = make_session_factory(engine)
    env: WorkflowEnvironment = await start_dev_server()
    sink = SmtpSink(host="127.0.0.1", port=free_port())
    workers: list[WorkerProcess] = []
    sweeper: asyncio.Task[None] | None = None
    try:
        await asyncio.to_thread(sink.start)
        client = env.client
        task_queue = f"scale-{uuid.uuid4().hex[:8]}"
        common = {"target": client.service_client.config.target_host, "database_url": shared_db,
                  "task_queue": task_queue, "smtp_port": sink.port}
        workers = list(await asyncio.gather(*(spawn_worker(tmp_path, n, **common) for n in range(WORKERS))))
        identities = {w.identity for w in workers}
        await wait_polling(client, task_queue, workers, within=60)

        today = datetime.now(PARIS).date()
        customers = [f"scale-{i:02d}" for i in range(PROGRAMMES)]
        for cid in customers:
            await add_subscription(sessions, cid, today - timedelta(days=30), today + timedelta(days=400))
        await asyncio.gather(*(start_programme(client, task_queue, cid, today) for cid in customers))

        async def all_enrolled() -> bool | str:
            phases = await asyncio.gather(*(status(client, c) for c in customers))
            enrolling = [c for c, s in zip(customers, phases, strict=True) if s.phase == Phase.enrolling]
            return not enrolling or f"still enrolling: {enrolling}"

        await wait_for(all_enrolled, "every programme past enrolment", within=120, workers=workers)

        # First steps by Update; SIGKILL one worker when half of them are done.
        # Ten days ahead: complete_kickoff is due on the meeting's day and reminded 2 business days before (C5);
        # three days ahead put that reminder in the past on a Thursday to Saturday, mailed while the outbox
        # and the mailbox below were being compared.
        meeting = datetime.combine(today + timedelta(days=10), datetime.min.time(), PARIS).replace(hour=10)

        async def schedule(cid: str) -> ProgramStatus:
            result: ProgramStatus = await client.get_workflow_handle(program_workflow_id(cid)).execute_update(
                "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting.isoformat(), "attendance": "remote"},
                result_type=ProgramStatus)
            return result

        victim = workers[0]
        # Until the end of the test, the attempts the dead worker held are failed by ID; a transient RPC
        # error does not stop it (it backs off and tries again, and says so in the figures).
        sweep = Sweeper(client, task_queue, interval=1.0)
        unsent_at_death: dict[str, str] = {}

        updates = {asyncio.create_task(schedule(cid)): cid for cid in customers}
        pending = set(updates)
        done = 0
        give_up = time.monotonic() + 300
        while pending:
            finished, pending = await asyncio.wait(pending, timeout=max(0.0, give_up - time.monotonic()),
                                                   return_when=asyncio.FIRST_COMPLETED)
            assert finished, (f"schedule_kickoff still unanswered after 300 s for {sorted(updates[t] for t in pending)}"
                              f"; sweeper failed {sweep.failed}, RPC errors {sweep.errors}\n"
                              + "\n".join(w.tail() for w in workers[1:]))
            for task in finished:
                task.result()
                done += 1
                if done == PROGRAMMES // 2:
                    victim.proc.send_signal(signal.SIGKILL)
                    await victim.proc.wait()
                    # What the dead worker may have handed to SMTP unrecorded, read before any retry of its
                    # attempts (they wait for the sweeper, started next).
                    unsent_at_death = await unsent_mail(sessions)
                    sweep.dead.add(victim.identity)
                    sweeper = asyncio.create_task(sweep.run())
        assert victim.proc.returncode == -signal.SIGKILL

        # Every programme reached the expected state ...
        for cid in customers:
            s = await status(client, cid)
            assert s.phase == Phase.onboarding, (cid, s.phase)
            kickoff = s.step("schedule_kickoff")
            assert kickoff is not None and kickoff.status == "done" and kickoff.done_by == "tl-alice", cid
            nxt = s.step("complete_kickoff")
            assert nxt is not None and nxt.status == "open", cid

        # ... every mail the workflows asked for went out (the outbox says sent) ...
        async def outbox_drained() -> bool | str:
            rows = await outbox(sessions)
            kickoffs = {r.customer_id for r in rows if r.template == "kickoff_scheduled"}
            unsent = [(r.customer_id, r.template, r.status, r.attempts) for r in rows if r.status != "sent"]
            return (len(kickoffs) == PROGRAMMES and not unsent) or f"{len(kickoffs)} kickoff mails, unsent {unsent}"

        await wait_for(outbox_drained, "every outbox row sent", within=120, workers=workers[1:])
        assert sweeper is not None
        sweeper.cancel()
        rows = await outbox(sessions)

        # ... and reached the mailbox exactly once.
        delivered = Counter(str(m["Message-ID"]).strip() for m in sink.messages)
        assert {r.message_id for r in rows} == set(delivered), "outbox and mailbox disagree"
        assert all(n == 1 for n in delivered.values())
        for cid in customers:
            welcome = [m for m in sink.messages
                       if m["X-TechConnect-Template"] == "welcome" and m["X-TechConnect-Customer"] == cid]
            assert len(welcome) == 1, (cid, len(welcome))
        # A resend can only come from a send_mail attempt the kill interrupted between SMTP's acceptance
        # and the outbox commit (its row attempted and not "sent" at the kill); the mailbox dropped it.
        assert sink.received == len(sink.messages) + len(sink.duplicates)
        unexplained = unexplained_resends(rows, sink, [unsent_at_death])
        assert not unexplained, (unexplained, unsent_at_death)
        assert len(sink.duplicates) <= len(unsent_at_death)

        # The work was spread over the workers (identities recorded in the histories).
        per_worker: Counter[str] = Counter()
        for cid in customers:
            per_worker.update(await task_identities(client, program_workflow_id(cid)))
        assert set(per_worker) <= identities
        assert len(per_worker) >= 2, per_worker
        for survivor in workers[1:]:
            assert per_worker[survivor.identity] > 0, (survivor.identity, per_worker)

        # Each survivor's /metrics: SDK metrics and ours.
        texts = [await asyncio.to_thread(w.metrics) for w in workers[1:]]
        for text in texts:
            m = metric_samples(text)
            assert any(n.startswith("temporal_workflow_task_") for n in m), sorted(m)[:20]
            assert any(n.startswith("temporal_activity_") for n in m), sorted(m)[:20]
            assert {"temporal_num_pollers", "temporal_worker_task_slots_available"} <= set(m)
            phases = {labels["phase"]: v for labels, v in m["techconnect_programmes"]}
            assert phases[Phase.onboarding.value] == PROGRAMMES and phases[Phase.closed.value] == 0
            assert m["techconnect_business_metrics_up"] == [({}, 1.0)]
            for name in ("techconnect_overdue_steps", "techconnect_support_requests",
                         "techconnect_sla_warnings_total", "techconnect_sla_breaches_total",
                         "techconnect_mails_failed"):
                assert name in m, name
        sent_by_survivors = sum(v for t in texts for _, v in metric_samples(t).get("techconnect_mails_sent_total", []))
        assert 0 < sent_by_survivors <= len(rows)

        # SIGTERM: graceful shutdown, exit code 0.
        for w in workers[1:]:
            w.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.wait_for(asyncio.gather(*(w.proc.wait() for w in workers[1:])), 30)
        assert codes == [0, 0], "\n".join(w.tail() for w in workers[1:])

        report_figure("scale test", f"{PROGRAMMES} programmes, {WORKERS} workers (1 SIGKILLed), "
                      f"tasks per worker {sorted(per_worker.values(), reverse=True)}, "
                      f"{len(rows)} mails, {len(sweep.failed)} attempt(s) of the dead worker retried "
                      f"({len(sweep.errors)} transient RPC error(s) on the way), "
                      f"{len(sink.duplicates)} duplicate(s) dropped, {time.monotonic() - began:.1f} s, "
                      f"{'PostgreSQL' if shared_db.startswith('postgresql') else 'SQLite'}")
    finally:
        if sweeper is not None:
            sweeper.cancel()
        for w in workers:
            if w.proc.returncode is None:
                w.proc.kill()
                await w.proc.wait()
        await asyncio.to_thread(sink.stop)
        await env.shutdown()
        await engine.dispose()



async def test_the_sweeper_outlives_transient_rpc_errors() -> None:
    """The sweeper of the scale, crash and load tests stands in for the activity timeouts of a dead
    worker: an RPC error on the way (a busy server) must not end it, or the dead worker's attempts
    would wait out their 60-300 s timeouts. It backs off, tries again and reports the errors."""
    class BusyThenFine:
        """A client whose server is busy twice, then lists a workflow holding nothing of the dead worker."""

        def __init__(self) -> None:
            self.calls = 0

        def list_workflows(self, query: str) -> Any:
            self.calls += 1
            if self.calls <= 2:
                raise RPCError("server busy", RPCStatusCode.UNAVAILABLE, b"")
            return self._none()

        async def _none(self) -> Any:
            for _ in ():
                yield

    client = BusyThenFine()
    sweeper = Sweeper(client, "q", dead={"1@dead"}, interval=0.01, max_backoff=0.04)  # type: ignore[arg-type]
    task = asyncio.create_task(sweeper.run())
    try:
        await wait_for(lambda: client.calls >= 5, "the sweeper listing again after two errors", within=10)
        assert not task.done(), task
    finally:
        task.cancel()
    assert sweeper.errors == ["UNAVAILABLE: server busy"] * 2 and sweeper.failed == []
