"""Kill -9 of the worker at the worst moments (issue 5, docs/reliability.md "Kill -9 of a worker at any point
loses nothing and sends no mail twice"), on the real dev server with `python worker.py` in its own
process, a shared PostgreSQL database (SQLite outside CI when none answers) and the SMTP sink.

Every test runs two lanes of the same story at once: the *crash* lane on a task queue served by
the victim worker, which is killed and restarted, and the *control* lane on another queue served
by a worker nobody touches. Afterwards both lanes must look the same — programme and request
states, outbox, documents, audit log, billable extras, status changes, SLA events, mailbox — so
"the same end as without the crash" is checked, not assumed. And across the whole database no
idempotency key has two rows, every outbox row is sent, and the mailbox holds each message once
(a resend after a crash is dropped by Message-ID, and counted).

Where the kill lands:

- (a) inside `send_mail`, after the SMTP relay accepted the welcome mail and before the outbox
  row says "sent" (fault point `mail.after_smtp`, activities/faults.py);
- (b) inside `generate_monthly_report`, after the draft is filed (`report.after_filing`), while
  the TL's `hold_call` Update waits for it;
- (c) between two steps: SIGKILL right after an Update returns, before the next one (a programme
  and a support request);
- (d) during a first-response countdown: a request with a 3-minute clock (warning after 1 minute,
  2 before the deadline), the worker killed as soon as the clock is set and restarted 2 s after the
  warning's time as the workflow set it: the warning and the escalation still arrive, once each;
- (e) inside `save_projection`, after the projection and the audit entries are committed
  (`projection.after_commit`): the kickoff Update's save, which waits for the enrolment mails, so only
  the kickoff's own mail may be on its way when the worker dies;
- (f) inside `send_mail`, after the outbox row says "sent" (`mail.after_commit`): the retry must
  not contact SMTP at all.

"No mail sent twice" is counted at the SMTP relay: every SMTP transaction is an outbox row's first
delivery, except a resend from an attempt killed between SMTP's acceptance and the outbox commit.
A worker kills every activity it runs when it dies, not only the one at the fault point, so the
window is read, not assumed: the moment the victim is found dead (before anything can retry its
attempts) the rig notes the outbox rows attempted and not yet "sent"; a mail may go through SMTP
once more per death at which its row was among them, and never otherwise — a duplicate of a mail
recorded sent, or of one no dying worker was sending, fails. On top of that each scenario says how
many resends it makes: none in (b) (which sees to it that no other mail of the lane is on its way when
the fault point fires); at most the kickoff's mail in (e); in (a) and (f), one or two, because the welcome
and TL mails go out together (`enrolment-mails-at-once`) and the other one may be in the window too; and in
(c) and (d),
where SIGKILL lands wherever it lands, whatever the window allows. Kills inside the local activities of
a first workflow task are (g) and (h), tests/test_crash_local_activities.py. Resends carry the same
Message-ID and the mailbox keeps one copy.

A killed worker's activity attempts only time out after their start-to-close timeout (60 s; mail
120 s, reports 300 s: workflows/activity_calls.py, no setting shortens them), so, as
tests/test_scale.py does, a sweeper fails the attempts the dead worker held, by ID, as soon as it
is dead: the retry (same idempotency key) runs on the restarted worker at once. That is exactly
what the timeout does in production, minutes earlier.
"""

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
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.faults import (
    CRASH_EXIT_CODE,
    FAULT_DIR_ENV,
    FAULT_ENV,
    MAIL_AFTER_COMMIT,
    MAIL_AFTER_SMTP,
    PROJECTION_AFTER_COMMIT,
    REPORT_AFTER_FILING,
)
from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.calendar import add_months
from domain.cycle import CycleStatus
from domain.inbox import StepDifference
from domain.naming import SA_CUSTOMER_ID, monthly_cycle_workflow_id, program_workflow_id, request_workflow_id
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

pytestmark = pytest.mark.slow


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


# ------------------------------------------------------------------------------------ scenarios
async def test_a_kill_after_smtp_accepted_before_the_outbox_commit_resends_once_and_is_deduplicated(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(MAIL_AFTER_SMTP)
    crash, control = Lane(rig, "mailx-crash", True), Lane(rig, "mailx-ctl", False)

    async def story(lane: Lane) -> None:
        await enrol(lane)  # an enrolment mail: the first send_mail of the crash lane to pass SMTP dies after its 250
        await enrolment_mails_sent(lane)
        await update(lane.programme(), "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting()}, ProgramStatus)

    await asyncio.gather(story(crash), story(control))
    # How many go again depends on the race: the welcome and TL mails go out together (`enrolment-mails-at-once`),
    # so the other one may have passed SMTP too when the worker died; the window check still holds for each.
    _, rows = await check_exactly_once(rig, crash, control, resends=None)

    assert rig.exits == [CRASH_EXIT_CODE], rig.exits
    # The worker died right after SMTP accepted one of the crash lane's enrolment mails, before the outbox said
    # "sent"; the restarted worker tried it again (attempts 2): the outbox holds it once, sent.
    crashed = [r for r in rows if r.attempts > 1]
    assert crashed and all((r.customer_id, r.attempts) == (crash.customer, 2) for r in crashed), crashed
    assert {r.template for r in crashed} <= {"welcome", "tl_assignment"}, crashed
    # It went through SMTP twice and is in the mailbox once: each duplicate dropped is such a Message-ID.
    duplicates = [str(m["Message-ID"]).strip() for m in rig.sink.duplicates]
    assert 1 <= len(duplicates) <= 2 and set(duplicates) <= {r.message_id for r in crashed}, (duplicates, crashed)
    for message_id in duplicates:
        assert len([m for m in rig.sink.messages if str(m["Message-ID"]).strip() == message_id]) == 1
    assert rig.sink.received == len(rows) + len(duplicates)
    report_figure("crash (a) mail after SMTP accepted", f"exit {rig.exits}, {len(duplicates)} of "
                  f"{sorted(r.template for r in crashed)} went through SMTP twice, each is in the outbox once (sent, "
                  f"attempts 2) and in the mailbox once ({len(duplicates)} duplicate(s) dropped by Message-ID); "
                  f"{len(rows)} mails, {rig.sink.received} SMTP transactions; "
                  f"attempts of the dead worker retried: {rig.swept}")


async def test_b_kill_inside_the_monthly_report_files_it_once(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(REPORT_AFTER_FILING)
    crash, control = Lane(rig, "report-crash", True), Lane(rig, "report-ctl", False)
    today = datetime.now(PARIS).date()

    async def story(lane: Lane) -> None:
        # Rule D7: the report is drafted at the first business hour after its month. Month 1 ended just now, on a
        # calendar whose every day is a business day from 00:00, in a country where today is no public holiday:
        # the draft is due at once, as the cycle starts (the crash lane's worker dies inside it, after filing).
        # On the 29th to 31st after a shorter month, a month back is clamped (30 March: 28 February), so month 1
        # ended up to 4 days ago: a policy that calls a date stale after 5 days, not 2, still drafts its report.
        await enrol(lane, period_start=add_months(today, -1), policy=ProgramPolicy(stale_after_days=5),
                    calendar=every_day_calendar(today))
        cycle = lane.client.get_workflow_handle(monthly_cycle_workflow_id(lane.customer, 1, 1))
        drafted = await eventually(lambda: query(cycle, CycleStatus),
                                   lambda c: c.report_document_id is not None and c.steps[2].status.value == "open",
                                   f"{lane.customer}: month 1's report drafted", rig=rig)
        assert drafted.no_call_held
        await settle(lane)  # the escalation and the other mails sent before the approval's mail
        await update(cycle, "approve_report", {"by": "tl-alice"}, CycleStatus)
        await eventually(lambda: query(lane.programme(), ProgramStatus), lambda s: s.cycles[0].status == "done",
                         f"{lane.customer}: month 1 done", rig=rig)

    await asyncio.gather(story(crash), story(control))
    state, _ = await check_exactly_once(rig, crash, control)

    assert rig.exits == [CRASH_EXIT_CODE], rig.exits
    assert "draft_monthly_report" in rig.swept  # rule D7: the month-end draft's own activity
    assert [k for k, _ in state["documents"]].count("monthly_report") == 1
    assert ("monthly_report", 1) in state["mailbox"]
    report_figure("crash (b) inside the monthly report", f"exit {rig.exits}, documents {state['documents']}, "
                  f"retried {rig.swept}")


async def test_c_kill_between_two_steps_of_a_programme_and_of_a_request(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(None)
    crash, control = Lane(rig, "steps-crash", True), Lane(rig, "steps-ctl", False)
    today = datetime.now(PARIS).date()

    async def story(lane: Lane) -> None:
        await enrol(lane, calendar=ROUND_THE_CLOCK)
        h = lane.programme()
        await update(h, "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting()}, ProgramStatus)
        await lane.between_steps()
        await update(h, "complete_kickoff", {
            "by": "tl-alice", "held_on": str(today), "attendees": ["Alice", "Carol"], "minutes": "Planned the year.",
            "agreed_dates": {"communication_plan": str(today + timedelta(days=20)),
                             "site_inventory": str(today + timedelta(days=40)),
                             "configuration_analysis": str(today + timedelta(days=60))}}, ProgramStatus)
        await update(h, "deliver_communication_plan", {
            "by": "tl-alice", "communication_policies": "English", "escalation_process": "TL, then manager",
            "reporting_process": "Monthly report", "procedures": "Portal"}, ProgramStatus)
        _, r = await file_request(lane)
        await update(r, "respond", {"by": "rep-sam", "message": "On it", "via": "cli"}, RequestStatus)
        await lane.between_steps()
        await update(r, "propose_resolution", {"by": "rep-sam", "measures": "Rebuild the index"}, RequestStatus)
        done = await update(r, "accept_resolution", {"by": f"carol@{lane.customer}.example", "via": "portal"},
                            RequestStatus)
        assert done.state.value == "closed"

    await asyncio.gather(story(crash), story(control))
    state, _ = await check_exactly_once(rig, crash, control, resends=None)

    assert rig.exits == [-signal.SIGKILL, -signal.SIGKILL], rig.exits
    assert state["phase"] == "onboarding" and [r["state"] for r in state["requests"]] == ["closed"]
    actions = [a for (a, _, _), _n in state["audit"]]
    assert {"complete_kickoff", "deliver_communication_plan", "propose_resolution", "accept_resolution"} <= set(actions)
    report_figure("crash (c) between steps", f"exits {rig.exits}, retried {rig.swept}, "
                  f"{sum(n for _, n in state['audit'])} audit rows, as in the control lane")


@pytest.mark.rule("C12")
async def test_d_kill_during_the_first_response_countdown_warning_and_escalation_arrive_once(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rig = await make_rig(None)
    crash, control = Lane(rig, "sla-crash", True), Lane(rig, "sla-ctl", False)
    # Rule C12 shortened through its setting: first response within 3 minutes, warning 2 minutes before
    # (1 minute after the filing). The two minutes from the warning to the deadline are the restarted
    # worker's to start (15 s seen on a loaded machine) and to send the warning before the deadline.
    monkeypatch.setenv("TECHCONNECT_POLICY__FIRST_RESPONSE_MINUTES", "3")
    monkeypatch.setenv("TECHCONNECT_POLICY__FIRST_RESPONSE_WARNING_MINUTES", "2")
    settings = Settings()
    assert settings.policy.first_response_minutes == 3 and settings.policy.first_response_warning_minutes == 2
    moments: dict[str, Any] = {}

    async def story(lane: Lane) -> None:
        await enrol(lane, calendar=ROUND_THE_CLOCK)  # 24x7: the clock runs whatever the hour of the test
        number, r = await file_request(lane, settings)
        s = await query(r, RequestStatus)
        assert s.first_response_warning_at is not None and s.first_response_deadline is not None
        if lane.crash:
            # Killed as soon as the clock is set, before the warning (due a minute after the filing, by the
            # workflow's clock: the dev server's, this machine's); started again 2 s after the warning's
            # time, so its timer fires with no worker. The restart is set from the warning time the workflow
            # set, not from a margin measured before the kill; only a minute between the clock's start and
            # the kill (not a few seconds of load) could put the kill after the warning, and the
            # assertions here and below check the order.
            warning_at, deadline = s.first_response_warning_at, s.first_response_deadline
            moments.update(warning_at=warning_at, deadline=deadline)
            moments["killed"] = await rig.kill(restart_at=warning_at + timedelta(seconds=2))
            assert moments["killed"] < warning_at, (
                f"the worker died {(moments['killed'] - warning_at).total_seconds():.1f} s after the warning was "
                f"due: more than a minute went by between filing the request and the kill")
        await eventually(lambda: sla_kinds(lane, number), lambda k: k == ["started", "warned", "breached"],
                         f"{number}: warned and breached", within=300, rig=rig)
        late = await update(r, "respond", {"by": "rep-sam", "message": "Sorry, on it"}, RequestStatus)
        assert late.sla_breached

    await asyncio.gather(story(crash), story(control))
    state, _ = await check_exactly_once(rig, crash, control, resends=None)

    assert rig.exits == [-signal.SIGKILL], rig.exits
    # Down across the warning's time: killed before it, polling again only after it.
    assert moments["killed"] < moments["warning_at"] < rig.restarted_at[0], (moments, rig.restarted_at)
    assert [r["sla"] for r in state["requests"]] == [["started", "warned", "breached", "responded_late"]]
    mailbox = dict(state["mailbox"])
    assert mailbox["request_sla_warning"] == 1 and mailbox["request_sla_breached"] == 1, mailbox
    async with rig.sessions() as session:
        warned = (await session.execute(select(SlaEventRow.at).join(SupportRequestRow).where(
            SupportRequestRow.customer_id == crash.customer, SlaEventRow.kind == "warned"))).scalar_one()
    warned_at = warned if warned.tzinfo else warned.replace(tzinfo=UTC)
    # The warning went out after the restart, still before the deadline (a real warning, not skipped).
    assert moments["warning_at"] <= warned_at < moments["deadline"], (warned_at, moments)
    async with rig.sessions() as session:
        breached = (await session.execute(select(SlaEventRow.at).join(SupportRequestRow).where(
            SupportRequestRow.customer_id == crash.customer, SlaEventRow.kind == "breached"))).scalar_one()
    breached_at = breached if breached.tzinfo else breached.replace(tzinfo=UTC)
    assert breached_at >= moments["deadline"]
    report_figure("crash (d) during the SLA countdown",
                  f"killed {(moments['warning_at'] - moments['killed']).total_seconds():.0f} s before the warning, "
                  f"polling again {(rig.restarted_at[0] - moments['warning_at']).total_seconds():.0f} s after it; "
                  f"warned at warning time +"
                  f"{(warned_at - moments['warning_at']).total_seconds():.0f} s, escalated at deadline +"
                  f"{(breached_at - moments['deadline']).total_seconds():.0f} s, one mail each; "
                  f"attempts of the dead worker retried: {rig.swept}")


async def sla_kinds(lane: Lane, number: str) -> list[str]:
    async with lane.rig.sessions() as session:
        return list((await session.execute(select(SlaEventRow.kind).where(SlaEventRow.tracking_number == number)
                                           .order_by(SlaEventRow.id))).scalars().all())


async def test_e_kill_after_the_projection_commit_adds_no_audit_row(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(PROJECTION_AFTER_COMMIT)
    crash, control = Lane(rig, "proj-crash", True), Lane(rig, "proj-ctl", False)

    async def story(lane: Lane) -> None:
        # Since `enrolment-mails-at-once` the enrolment saves nothing after its registration (which writes the start's
        # audit entry itself: crash (g), tests/test_crash_local_activities.py): the lane's first save_projection is
        # the kickoff Update's, with its audit entry, and it dies after its commit.
        await enrol(lane)
        # Only once the enrolment mails are sent, so that they are not in flight at the death.
        await enrolment_mails_sent(lane)
        await update(lane.programme(), "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting()}, ProgramStatus)

    await asyncio.gather(story(crash), story(control))
    # The kickoff's own mail (the main loop's, woken by the Update) may be on its way when the save's worker dies
    # (CI, 2026-12-04: attempted, not yet sent): it may go again inside the at-least-once window, the window check.
    state, _ = await check_exactly_once(rig, crash, control, resends=None)

    assert rig.exits == [CRASH_EXIT_CODE], rig.exits
    assert all(m.endswith(")") and "/kickoff" in m for m in rig.unsent_at_deaths[0].values()
               if m.startswith(f"{crash.customer}/")), rig.unsent_at_deaths
    assert "save_projection" in rig.swept
    by_action = audit_by_action(state)
    # The crashed save's entry once (its retry carries the same entry, keyed by its instant), the start's once.
    assert by_action["schedule_kickoff"] == 1 and by_action["programme_started"] == 1, state["audit"]
    report_figure("crash (e) after the projection commit", f"exit {rig.exits}, audit {state['audit']}")


async def test_f_kill_after_the_outbox_says_sent_sends_nothing_again(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(MAIL_AFTER_COMMIT)
    crash, control = Lane(rig, "sent-crash", True), Lane(rig, "sent-ctl", False)

    async def story(lane: Lane) -> None:
        await enrol(lane)  # the first mail of the crash lane: sent, recorded as sent, then the worker dies
        await enrolment_mails_sent(lane)
        await update(lane.programme(), "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting()}, ProgramStatus)

    await asyncio.gather(story(crash), story(control))
    # One SMTP transaction per outbox row, but for a mail that was still between SMTP and its commit beside the
    # killed one (the welcome and TL mails go out together since `enrolment-mails-at-once`): the window check.
    _, rows = await check_exactly_once(rig, crash, control, resends=None)
    in_window = {mid for unsent in rig.unsent_at_deaths for mid in unsent}

    assert rig.exits == [CRASH_EXIT_CODE], rig.exits
    assert "send_mail" in rig.swept
    # At most the other enrolment mail went again, never the killed one.
    assert len(rig.sink.duplicates) <= 1 and {str(m["Message-ID"]).strip() for m in rig.sink.duplicates} <= in_window
    # The retry of the killed attempt returned "already sent" before counting an attempt: a row that said "sent"
    # at the death (the killed mail's, at least) went to SMTP once.
    said_sent = [r for r in rows if r.customer_id == crash.customer and r.message_id not in in_window]
    assert said_sent and all(r.attempts == 1 for r in said_sent), [(r.template, r.attempts) for r in rows]
    report_figure("crash (f) after the outbox commit", f"exit {rig.exits}, {len(rows)} mails, "
                  f"{rig.sink.received} SMTP transactions ({len(rig.sink.duplicates)} resend(s) of the other "
                  f"enrolment mail, caught in the window; the killed one not again), retried {rig.swept}")
