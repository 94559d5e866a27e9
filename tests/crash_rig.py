"""The crash tests' rig (tests/test_crashes.py, tests/test_crash_local_activities.py): a victim worker that is
killed and restarted beside a control worker nobody touches, the two lanes that run the same story on them,
and the checks that both lanes end the same, every key once and every mail once (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.faults import (
    FAULT_DIR_ENV,
    FAULT_ENV,
)
from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.inbox import StepDifference
from domain.naming import SA_CUSTOMER_ID, program_workflow_id, request_workflow_id
from domain.policy import ProgramPolicy
from domain.program import Phase, ProgramInput, ProgramStatus
from domain.request import NewRequest, RequestStatus
from starter.projection import check_projection
from starter.requests import open_request
from starter.visibility import expected_open_steps
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from storage.repositories.open_steps import projected_open_steps
from storage.tables import (
    AuditLogRow,
    BillableExtraRow,
    DocumentRow,
    OutboxRow,
    RequestStatusChangeRow,
    SlaEventRow,
    SupportRequestRow,
)
from testing.workers import WorkerProcess, spawn_worker, stop_all, wait_polling
from tests.harness import add_subscription, enrolment, in_flight, start_dev_server
from tests.worker_processes import Sweeper, smtp_transactions, unexplained_resends, unsent_mail

PARIS = ZoneInfo("Europe/Paris")
T = TypeVar("T")
# Every table written with an idempotency key: no key may have two rows.
KEYED_TABLES = (DocumentRow, OutboxRow, BillableExtraRow, AuditLogRow, RequestStatusChangeRow, SlaEventRow)
ROUND_THE_CLOCK = {"timezone": "Europe/Paris", "country": "FR", "out_of_hours_agreement_ref": "OOH-24x7"}
# ------------------------------------------------------------------------------------ the rig
@dataclass
class Rig:
    env: WorkflowEnvironment
    sink: SmtpSink
    sessions: SessionFactory
    database_url: str
    tmp: Path
    victim_queue: str
    control_queue: str
    victim_env: dict[str, str]
    victim: WorkerProcess | None = None
    control: WorkerProcess | None = None
    exits: list[int] = field(default_factory=list)  # return codes of the victim processes that ended
    died_at: list[datetime] = field(default_factory=list)  # when each was found dead
    restarted_at: list[datetime] = field(default_factory=list)  # when each replacement polled its queue
    # Per death, the mails a dying worker may have handed to SMTP without the outbox knowing (unsent_mail).
    unsent_at_deaths: list[dict[str, str]] = field(default_factory=list)
    restart_at: datetime | None = None  # set by kill(): when the watcher starts the next victim
    spawned: list[WorkerProcess] = field(default_factory=list)  # every process started: none outlives the test
    sweeper: Sweeper | None = None
    _n: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def swept(self) -> list[str]:
        """Activity types of the dead workers' attempts failed by the sweeper."""
        return self.sweeper.failed if self.sweeper else []

    def common(self, task_queue: str) -> dict[str, Any]:
        return {"target": self.client.service_client.config.target_host, "database_url": self.database_url,
                "task_queue": task_queue, "smtp_port": self.sink.port}

    async def spawn(self, task_queue: str, extra: dict[str, str] | None = None) -> WorkerProcess:
        self._n += 1
        worker = await spawn_worker(self.tmp, self._n, extra=extra, **self.common(task_queue))
        self.spawned.append(worker)
        await wait_polling(self.client, task_queue, [worker], within=60)
        return worker

    async def start(self) -> None:
        self.control, self.victim = await asyncio.gather(self.spawn(self.control_queue),
                                                         self.spawn(self.victim_queue, self.victim_env))
        self.sweeper = Sweeper(self.client, self.victim_queue)
        self._tasks = [asyncio.create_task(self._watch()), asyncio.create_task(self.sweeper.run())]

    async def _watch(self) -> None:
        """Restart the victim whenever it dies (a fault point or a SIGKILL): 0.5 s later, or at the
        `restart_at` a kill() asked for. What the outbox had in flight is read first, before any
        attempt of the dead worker can be retried (the sweeper fails nothing of a worker not yet
        known dead, and no worker polls the queue until the restart)."""
        assert self.sweeper is not None
        while True:
            assert self.victim is not None
            code = await self.victim.proc.wait()
            self.died_at.append(datetime.now(UTC))
            self.exits.append(code)
            self.unsent_at_deaths.append(await unsent_mail(self.sessions))
            self.sweeper.dead.add(self.victim.identity)
            restart_at, self.restart_at = self.restart_at, None
            delay = (restart_at - datetime.now(UTC)).total_seconds() if restart_at else 0.5
            await asyncio.sleep(max(0.5, delay))
            self.victim = await self.spawn(self.victim_queue, self.victim_env)
            self.restarted_at.append(datetime.now(UTC))

    async def kill(self, restart_at: datetime | None = None) -> datetime:
        """SIGKILL the victim, and return when it is dead; the watcher restarts it 0.5 s later, or at
        `restart_at` (wall clock, the clock the dev server on this machine reads too)."""
        assert self.victim is not None
        victim = self.victim
        self.restart_at = restart_at
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()
        return datetime.now(UTC)

    async def stop(self) -> None:
        await stop_all(self.spawned, grace=5, tasks=self._tasks)

    def logs(self) -> str:
        sweeper = f"sweeper: failed {self.swept}, RPC errors {self.sweeper.errors}\n" if self.sweeper else ""
        return sweeper + "\n".join(f"--- {w.identity}\n{w.tail(40)}" for w in (self.victim, self.control)
                                    if w is not None)


def fault_env(tmp: Path, point: str | None) -> dict[str, str]:
    return {FAULT_ENV: point, FAULT_DIR_ENV: str(tmp / "faults")} if point else {}


@pytest_asyncio.fixture
async def make_rig(shared_db: str, tmp_path: Path) -> AsyncIterator[Callable[[str | None], Awaitable[Rig]]]:
    await upgrade(shared_db)  # once, before the workers: they find the schema at head
    engine = make_engine(shared_db)
    env = await start_dev_server()
    sink = SmtpSink(host="127.0.0.1")
    await asyncio.to_thread(sink.start)
    rigs: list[Rig] = []

    async def make(point: str | None) -> Rig:
        tag = uuid.uuid4().hex[:6]
        rig = Rig(env=env, sink=sink, sessions=make_session_factory(engine), database_url=shared_db, tmp=tmp_path,
                  victim_queue=f"crash-{tag}", control_queue=f"control-{tag}", victim_env=fault_env(tmp_path, point))
        rigs.append(rig)
        await rig.start()
        return rig

    try:
        yield make
    finally:
        try:
            for rig in rigs:
                await rig.stop()
        finally:
            await asyncio.to_thread(sink.stop)
            await env.shutdown()
            await engine.dispose()


# ------------------------------------------------------------------------------------ lanes
@dataclass
class Lane:
    rig: Rig
    customer: str
    crash: bool

    @property
    def task_queue(self) -> str:
        return self.rig.victim_queue if self.crash else self.rig.control_queue

    @property
    def client(self) -> Client:
        return self.rig.client

    def programme(self) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(program_workflow_id(self.customer))

    async def between_steps(self) -> None:
        """(c): the crash lane's worker dies right after an Update returned, before the next."""
        if self.crash:
            await self.rig.kill()


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str,
                     within: float = 90.0, rig: Rig | None = None) -> T:
    """Poll `probe` until `ok`; a worker that is down makes queries fail for a while: retried."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        try:
            last = await probe()
            if ok(last):
                return last  # type: ignore[no-any-return]
        except (RPCError, TimeoutError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}; last {last!r}\n{rig.logs() if rig else ''}")
        await asyncio.sleep(0.25)


async def query(handle: WorkflowHandle[Any, Any], result_type: type[T]) -> T:
    result: T = await handle.query("get_status", result_type=result_type, rpc_timeout=timedelta(seconds=5))
    return result


async def update(handle: WorkflowHandle[Any, Any], name: str, payload: dict[str, Any], result_type: type[T]) -> T:
    # Retried by the SDK while the worker is down or the Update waits on an interrupted activity.
    try:
        result: T = await asyncio.wait_for(handle.execute_update(name, payload, result_type=result_type), 150)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        events = [e async for e in handle.fetch_history_events()]
        raise AssertionError(f"{name} on {handle.id}: no answer within 150 s; in flight: {in_flight(events)}") from None
    return result


async def enrol(lane: Lane, period_start: date | None = None, policy: ProgramPolicy | None = None,
                **overrides: Any) -> ProgramStatus:
    today = datetime.now(PARIS).date()
    start = period_start or today
    # Rule E1: maintenance from before the period's start (a month back is 31 days after a 31-day month).
    await add_subscription(lane.rig.sessions, lane.customer, start - timedelta(days=30), today + timedelta(days=500))
    e = enrolment(lane.customer, start, **overrides)
    await lane.client.start_workflow(
        "ProgramWorkflow", ProgramInput(enrolment=e, policy=policy or ProgramPolicy(), started_by="ops-olga"),
        id=program_workflow_id(lane.customer), task_queue=lane.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL, static_summary=f"Programme of {e.customer.name}",
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CUSTOMER_ID, lane.customer)]))
    return await eventually(lambda: query(lane.programme(), ProgramStatus), lambda s: s.phase != Phase.enrolling,
                            f"{lane.customer} past enrolment", rig=lane.rig)


async def file_request(lane: Lane, settings: Settings | None = None) -> tuple[str, WorkflowHandle[Any, Any]]:
    s = (settings or Settings()).model_copy(update={"task_queue": lane.task_queue})
    new = NewRequest(customer_id=lane.customer, kind="support", priority="high", summary="Search returns nothing",
                     filed_by=f"carol@{lane.customer}.example", channel="portal")
    number = await open_request(lane.client, s, new, sessions=lane.rig.sessions)
    handle = lane.client.get_workflow_handle(request_workflow_id(number))
    await eventually(lambda: query(handle, RequestStatus), lambda r: r.first_response_deadline is not None,
                     f"{number}: clock set", rig=lane.rig)
    return number, handle


async def enrolment_mails_sent(lane: Lane) -> None:
    """Until the welcome and TL mails are sent: the next step's mail then never runs alongside them,
    so a crash lands on one mail in flight (exact SMTP accounting)."""
    async def sent() -> bool:
        async with lane.rig.sessions() as session:
            found = set((await session.execute(select(OutboxRow.template).where(
                OutboxRow.customer_id == lane.customer, OutboxRow.status == "sent"))).scalars())
        return {"welcome", "tl_assignment"} <= found

    await eventually(sent, bool, f"{lane.customer}: enrolment mails sent", within=120, rig=lane.rig)


def every_day_calendar(today: date) -> dict[str, Any]:
    """Every day a business day from 00:00 to 23:59, in the first country where neither yesterday nor today is a
    public holiday (computed from today, so the draft of a month that ended yesterday is due at once)."""
    for country in ("FR", "GB", "DE", "US", "JP"):
        days = holidays_lib.country_holidays(country, years=[today.year - 1, today.year])
        if today not in days and today - timedelta(days=1) not in days:
            return {"timezone": "Europe/Paris", "country": country, "day_start": "00:00", "day_end": "23:59",
                    "weekdays": [1, 2, 3, 4, 5, 6, 7]}
    raise AssertionError(f"{today}: a public holiday in every country tried")


def meeting(days: int = 10) -> str:
    """A kickoff meeting whose reminder never falls in the test: the meeting's day is complete_kickoff's due
    date, reminded 2 business days before (rule C5). Three days ahead, on a Friday, put that reminder on
    Thursday, already due: the control lane mailed it and the crash lane, whose next Update came first
    after its restart, did not (CI of 2026-12-04). Ten days ahead puts it at least six days away."""
    d = datetime.now(PARIS).date() + timedelta(days=days)
    return datetime.combine(d, datetime.min.time(), PARIS).replace(hour=10).isoformat()


async def lane_histories(lane: Lane) -> dict[str, list[HistoryEvent]]:
    """The history of every workflow of the lane's customer: the programme, its children (named in
    its history) and its support requests (named in the database; visibility would lag)."""
    async with lane.rig.sessions() as session:
        numbers = (await session.execute(select(SupportRequestRow.tracking_number).where(
            SupportRequestRow.customer_id == lane.customer))).scalars().all()
    todo = [program_workflow_id(lane.customer), *(request_workflow_id(n) for n in numbers)]
    out: dict[str, list[HistoryEvent]] = {}
    while todo:
        wid = todo.pop()
        out[wid] = [e async for e in lane.client.get_workflow_handle(wid).fetch_history_events()]
        todo += [e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
                 for e in out[wid] if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED]
    return out


async def settle(lane: Lane) -> None:
    """Until nothing of the customer's is in flight: no workflow task, activity, Update or child start
    of any of its workflows (tests/harness.py `in_flight`), through two reads of them all with the
    same histories in between (so all were idle at once: none was woken by another meanwhile), and
    every outbox row of the customer sent."""
    async def quiet() -> bool | str:
        first = await lane_histories(lane)
        busy = {wid: b for wid, events in first.items() if (b := in_flight(events))}
        if busy:
            return f"in flight: {busy}"
        async with lane.rig.sessions() as session:
            unsent = (await session.execute(select(OutboxRow.template, OutboxRow.status).where(
                OutboxRow.customer_id == lane.customer, OutboxRow.status != "sent"))).all()
        if unsent:
            return f"outbox rows not sent: {unsent}"
        second = await lane_histories(lane)
        moved = {wid: (len(first.get(wid, [])), len(events)) for wid, events in second.items()
                 if len(first.get(wid, [])) != len(events)}
        return True if not moved else f"histories moved between two reads (events before, after): {moved}"

    await eventually(quiet, lambda v: v is True, f"{lane.customer} settled", within=120, rig=lane.rig)


# --------------------------------------------------------------------------------- the checks
async def snapshot(lane: Lane) -> dict[str, Any]:
    """What a lane ended with, with the customer's own name taken out so two lanes compare."""
    c = lane.customer

    def norm(value: Any) -> str:
        return str(value).replace(c.upper(), "C").replace(c, "C")

    s = await query(lane.programme(), ProgramStatus)
    out: dict[str, Any] = {
        "phase": s.phase.value,
        "steps": [(st.step, st.status.value, st.done_by) for st in s.steps],
        "cycles": [(cy.month, cy.status) for cy in s.cycles],
        "mail_failures": s.mail_failures, "rejections": len(s.rejections), "workspace": norm(s.workspace_id),
    }
    async with lane.rig.sessions() as session:
        async def rows(*cols: Any, where: Any) -> list[Any]:
            return list((await session.execute(select(*cols).where(where).order_by(*cols))).all())

        out["outbox"] = [(t, st, norm(r)) for t, st, r in await rows(
            OutboxRow.template, OutboxRow.status, OutboxRow.recipients, where=OutboxRow.customer_id == c)]
        out["documents"] = [(k, v) for k, v in await rows(DocumentRow.kind, DocumentRow.version,
                                                             where=DocumentRow.customer_id == c)]
        out["audit"] = sorted(Counter((a, norm(b), i) for a, b, i in await rows(
            AuditLogRow.action, AuditLogRow.actor, AuditLogRow.interface,
            where=AuditLogRow.customer_id == c)).items())
        out["extras"] = [k for (k,) in await rows(BillableExtraRow.kind, where=BillableExtraRow.customer_id == c)]
        numbers = [n for (n,) in await rows(SupportRequestRow.tracking_number,
                                            where=SupportRequestRow.customer_id == c)]
        requests = []
        for n in numbers:
            req = await session.get(SupportRequestRow, n)
            assert req is not None
            changes = (await session.execute(select(RequestStatusChangeRow.from_state, RequestStatusChangeRow.to_state,
                                                    RequestStatusChangeRow.by)
                                             .where(RequestStatusChangeRow.tracking_number == n)
                                             .order_by(RequestStatusChangeRow.id))).all()
            sla = (await session.execute(select(SlaEventRow.kind).where(SlaEventRow.tracking_number == n)
                                         .order_by(SlaEventRow.id))).scalars().all()
            requests.append({"number": norm(n), "state": req.state, "breached": req.sla_breached,
                             "changes": [tuple(norm(x) for x in ch) for ch in changes], "sla": list(sla)})
        out["requests"] = requests
    out["mailbox"] = sorted(Counter(str(m["X-TechConnect-Template"]) for m in lane.rig.sink.messages
                                    if m["X-TechConnect-Customer"] == c).items())
    return out


async def doubled_keys(sessions: SessionFactory) -> dict[str, list[str]]:
    """Idempotency keys with more than one row, per table (the unique constraints say none; this counts)."""
    out: dict[str, list[str]] = {}
    async with sessions() as session:
        for model in KEYED_TABLES:
            key = model.idempotency_key
            found = (await session.execute(select(key).where(key.is_not(None)).group_by(key)
                                           .having(func.count() > 1))).scalars().all()
            if found:
                out[model.__tablename__] = list(found)
    return out


async def outbox_rows(sessions: SessionFactory) -> list[OutboxRow]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxRow))).all())


async def projection_differences(lane: Lane) -> list[StepDifference]:
    """The lane's programme and cycles against the inbox projection (`techconnect projection check`)."""
    status = await lane.programme().query("get_status", result_type=ProgramStatus)
    ids = [lane.programme().id] + [c.workflow_id for c in status.cycles]
    return (await check_projection(lane.client, lane.rig.sessions, workflow_ids=ids)).differences


async def projection_detail(lane: Lane, differences: list[StepDifference]) -> str:
    """What a failed projection check saw, step by step: the workflow's open step, the projected row, and
    the history's projection saves (a difference once seen under load, 2026-12-04, not reproduced since)."""
    lines: list[str] = []
    for d in differences:
        _, expected = await expected_open_steps(lane.client, d.workflow_id)
        async with lane.rig.sessions() as session:
            projected = (await projected_open_steps(session, [d.workflow_id])).get(d.workflow_id, [])
        have = {s.step: s for s in projected}
        for step in [*d.missing, *d.extra, *d.changed]:
            want = next((s for s in expected if s.step == step), None)
            lines.append(f"  {d.workflow_id} {step}: workflow {want!r}\n    projection {have.get(step)!r}")
        events = [e async for e in lane.client.get_workflow_handle(d.workflow_id).fetch_history_events()]
        saves = [(e.event_id, e.event_time.ToDatetime().isoformat()) for e in events
                 if e.activity_task_scheduled_event_attributes.activity_type.name == "save_projection"]
        lines.append(f"  save_projection scheduled at events {saves}; {len(events)} events")
    return "\n".join(lines)


async def check_exactly_once(rig: Rig, crash: Lane, control: Lane,
                             resends: int | None = 0) -> tuple[dict[str, Any], list[OutboxRow]]:
    """Both lanes ended the same; no key has two rows; every mail was sent, is in the outbox once and
    in the mailbox once, and went through SMTP more than once only from the at-least-once window.

    That window: an attempt killed between SMTP's acceptance and the outbox commit. A mail may go
    through SMTP once more per worker death at which its outbox row was attempted and not yet "sent"
    (`Rig.unsent_at_deaths`, read at each death before any retry); any other resend fails here: a
    duplicate of a mail whose row said "sent", or of a mail no dying worker was sending.
    `resends`: moreover, the exact number of such resends the scenario makes; None where a SIGKILL
    lands wherever it lands (c, d) and a mail may or may not have been in the window.
    """
    await asyncio.gather(settle(crash), settle(control))
    crashed, reference = await asyncio.gather(snapshot(crash), snapshot(control))
    assert crashed == reference, f"the crash changed the outcome\n crash:   {crashed}\n control: {reference}"
    assert await doubled_keys(rig.sessions) == {}
    for lane in (crash, control):  # issue 16: the inbox projection agrees with each workflow after the crash
        differences = await projection_differences(lane)
        assert differences == [], f"{lane.customer}: {differences}\n{await projection_detail(lane, differences)}"
    rows = await outbox_rows(rig.sessions)
    assert rows and all(r.status == "sent" for r in rows), [(r.idempotency_key, r.status) for r in rows]
    delivered = Counter(str(m["Message-ID"]).strip() for m in rig.sink.messages)
    assert {r.message_id for r in rows} == set(delivered), "outbox and mailbox disagree (a mail lost or unrecorded)"
    assert all(n == 1 for n in delivered.values()), delivered.most_common(3)
    assert rig.sink.received == len(rig.sink.messages) + len(rig.sink.duplicates)
    assert sum(smtp_transactions(rig.sink).values()) == rig.sink.received
    in_window = {mid: what for unsent in rig.unsent_at_deaths for mid, what in unsent.items()}
    unexplained = unexplained_resends(rows, rig.sink, rig.unsent_at_deaths)
    assert not unexplained, (f"mail sent again outside the at-least-once window: {unexplained}; "
                             f"attempted and unsent at the deaths: {rig.unsent_at_deaths}")
    # A resend comes from a retried attempt: the outbox counted two.
    resent = {r.message_id for r in rows if r.attempts > 1}
    assert {str(m["Message-ID"]).strip() for m in rig.sink.duplicates} <= resent
    extra = rig.sink.received - len(rows)
    if resends is not None:
        assert extra == resends, (f"{extra} SMTP transaction(s) beyond one per outbox row, expected {resends}; "
                                  f"resent: {[str(m['X-TechConnect-Template']) for m in rig.sink.duplicates]}; "
                                  f"attempted and unsent at the deaths: {in_window}")
    return crashed, rows


def audit_by_action(state: dict[str, Any]) -> Counter[str]:
    """A lane's audit log (its snapshot) as entries by action, whoever and through whatever interface."""
    out = Counter[str]()
    for (action, _, _), n in state["audit"]:
        out[action] += n
    return out
