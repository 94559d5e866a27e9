"""`techconnect` as operations staff run it: a real subprocess against the real Temporal
dev server, the real worker, SQLite and an SMTP sink on loopback.

One dev server and one worker serve the whole module; each test uses its own customers.
The worker runs in this module's event loop, so every subprocess is awaited with asyncio
(a blocking `subprocess.run` would freeze the worker the CLI is talking to).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from domain.enrolment import Enrolment
from domain.naming import (
    SA_CUSTOMER_ID,
    SA_NON_RENEWAL_DEADLINE,
    SA_PERIOD_END,
    monthly_cycle_workflow_id,
    program_workflow_id,
)
from storage.repositories import get_subscription
from tests.conftest import free_port
from tests.harness import Cli as CommandLine
from tests.harness import Run, Stack, add_subscription, binary, cli_environ, stack_on_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARIS = ZoneInfo("Europe/Paris")


# ------------------------------------------------------------------------ running the CLI
@dataclass
class Cli(CommandLine):
    tmp: Path
    stack: Stack

    async def exec(self, program: str, *args: str, env: dict[str, str] | None = None) -> Run:
        run = await super().exec(program, *args, env=env)
        # Whatever the outcome: a readable message, never a Python traceback (run_command) or a crash.
        assert run.code in (0, 1, 2), str(run)
        return run

    def write(self, name: str, content: str | dict[str, Any] | list[Any]) -> Path:
        path = self.tmp / name
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
        return path


# ------------------------------------------------------------------------------ fixtures
@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def st(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with stack_on_server(tmp_path_factory.mktemp("cli-stack")) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cli(st: Stack, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    tmp = tmp_path_factory.mktemp("cli-files")
    env = cli_environ(st)
    return Cli(env=env, tmp=tmp, stack=st)


# ------------------------------------------------------------------------------- helpers
def today() -> date:
    """Today in the programmes' time zone (Europe/Paris), on the machine's clock: the dev server runs
    on that clock (TECHCONNECT_TEST_NOW cannot move it), and a programme plans its period on its
    own calendar, not on the machine's local date (which near midnight may be another day)."""
    return datetime.now(PARIS).date()


def meeting_next_week() -> str:
    return datetime.combine(today() + timedelta(days=7), datetime.min.time(), PARIS).replace(hour=10).isoformat()


def enrolment_doc(customer_id: str, period_start: date, **overrides: Any) -> dict[str, Any]:
    """An enrolment file as docs/design.md shows it. Contacts' addresses are the same for every
    customer, so two programmes' states can be compared apart from their IDs."""
    doc: dict[str, Any] = {
        "customer": {"id": customer_id, "name": f"{customer_id.title()} Corp",
                     "maintenance_subscription_id": f"SMP-{customer_id}"},
        "period_start": period_start.isoformat(),
        "term_months": 12,
        "written_agreement_ref": None,
        "technical_lead": {"id": "tl-alice", "name": "Alice Martin", "email": "alice@support.example"},
        "primary_contact": {"name": "Carol Diaz", "email": f"carol@{customer_id}.example", "role": "CIO"},
        "additional_contacts": [{"name": "Bob Stone", "email": f"bob@{customer_id}.example", "role": "IT manager"}],
        "accept_extra_contact_fees": False,
        "calendar": {"timezone": "Europe/Paris", "country": "FR", "subdivision": None,
                     "day_start": "09:00", "day_end": "17:00", "out_of_hours_agreement_ref": None},
        "products": [{"name": "Content Server", "version": "23.4", "third_party": False}],
        "primary_system": "CS production cluster",
        "additional_systems": [],
        "annual_fee": {"amount": "48000.00", "currency": "EUR"},
    }
    doc.update(overrides)
    return doc


async def subscribe(st: Stack, customer_id: str, start: date, days: int = 800) -> None:
    await add_subscription(st.sessions, customer_id, start - timedelta(days=1), start + timedelta(days=days))


async def started(st: Stack, customer_id: str, period_start: date | None = None) -> WorkflowHandle[Any, Any]:
    """A programme started from the client side, enrolled and idle."""
    start = period_start or today()
    await subscribe(st, customer_id, start)
    h = await st.start(Enrolment.model_validate(enrolment_doc(customer_id, start)))
    await st.wait_enrolled(customer_id)
    await idle_history_len(h)
    return h


async def idle_history_len(h: WorkflowHandle[Any, Any], timeout: float = 20) -> int:  # noqa: ASYNC109
    """Event count once the workflow waits on its timer: no pending activity, the last event
    a completed workflow task or a timer, and the count unchanged over a short pause. (Its
    monthly cycle runs on as a child workflow: that is not the programme being busy.)"""
    deadline = time.monotonic() + timeout
    previous = -1
    while time.monotonic() < deadline:
        events = [e async for e in h.fetch_history_events()]
        desc = await h.describe()
        idle = (not desc.raw_description.pending_activities
                and events[-1].event_type in (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                                              EventType.EVENT_TYPE_TIMER_STARTED))
        if idle and len(events) == previous:
            return previous
        previous = len(events) if idle else -1
        await asyncio.sleep(0.25)
    raise AssertionError(f"{h.id} did not become idle within {timeout}s")


async def assert_not_started(st: Stack, customer_id: str) -> None:
    with pytest.raises(RPCError) as exc:
        await st.client.get_workflow_handle(program_workflow_id(customer_id)).describe()
    assert exc.value.status == RPCStatusCode.NOT_FOUND


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15, every: float = 0.3) -> Any:  # noqa: ASYNC109
    """Poll `check` (an assertion) until it passes: visibility lags the workflow by about a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(every)


def step(status: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in status["steps"] if s["step"] == name]
    assert len(found) == 1, [s["step"] for s in status["steps"]]
    return found[0]


_VOLATILE = {"done_at", "handbook_accepted_at", "workspace_id", "workflow_id", "recorded_at", "at"}


def normalised(value: Any, customer_id: str) -> Any:
    """A programme's state without what differs between two customers: IDs and wall-clock times."""
    if isinstance(value, dict):
        return {k: normalised(v, customer_id) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [normalised(v, customer_id) for v in value]
    if isinstance(value, str):
        return value.replace(customer_id, "<customer>").replace(customer_id.title(), "<Customer>")
    return value


# ----------------------------------------------------------------------------------- 1
async def test_program_start_then_second_start_refused(st: Stack, cli: Cli) -> None:
    cid = "cli-start"
    await subscribe(st, cid, today())
    file = cli.write("enrolment.json", enrolment_doc(cid, today()))

    first = await cli("program", "start", "--file", str(file), "--json")
    assert first.code == 0, str(first)
    assert first.json() == {"workflow_id": "program-cli-start", "customer_id": cid}
    desc = await st.client.get_workflow_handle("program-cli-start").describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING and desc.workflow_type == "ProgramWorkflow"
    assert desc.task_queue == st.task_queue

    second = await cli("program", "start", "--file", str(file), "--json")
    assert second.code == 2, str(second)
    assert "already has a live programme" in second.err and cid in second.err
    assert second.out == ""
    # Still the one run the first start created.
    assert (await st.client.get_workflow_handle("program-cli-start").describe()).run_id == desc.run_id

    # A customer without a programme is a refusal with a message, not a failure.
    status, kickoff = await asyncio.gather(
        cli("program", "status", "cli-nobody"),
        cli("step", "complete", "cli-nobody", "schedule_kickoff", "--by", "tl-alice",
            "--file", str(cli.write("kickoff-nobody.json", {"meeting_at": meeting_next_week()}))))
    assert status.code == 2 and "no programme for customer cli-nobody" in status.err, str(status)
    assert kickoff.code == 2 and "no live workflow program-cli-nobody" in kickoff.err, str(kickoff)


# ----------------------------------------------------------------------------------- 2
async def test_temporal_cli_update_equals_techconnect_step_complete(st: Stack, cli: Cli) -> None:
    via_temporal, via_techconnect = "cli-upd-a", "cli-upd-b"
    await asyncio.gather(started(st, via_temporal), started(st, via_techconnect))
    meeting = meeting_next_week()
    payload = {"meeting_at": meeting, "attendance": "on-site", "location": "Paris, room 4"}

    official = await cli.exec(
        binary("temporal"), "workflow", "update", "execute",
        "--address", st.client.service_client.config.target_host, "--namespace", st.client.namespace,
        "--workflow-id", program_workflow_id(via_temporal), "--name", "schedule_kickoff",
        "--input", json.dumps({"by": "tl-alice", **payload}))
    assert official.code == 0, str(official)

    ours = await cli("step", "complete", via_techconnect, "schedule_kickoff", "--by", "tl-alice",
                     "--file", str(cli.write("payload.json", payload)), "--json")
    assert ours.code == 0, str(ours)
    assert ours.json()["workflow_id"] == program_workflow_id(via_techconnect)

    a_run, b_run = await asyncio.gather(cli("program", "status", via_temporal, "--json"),
                                        cli("program", "status", via_techconnect, "--json"))
    assert a_run.code == 0 and b_run.code == 0, (str(a_run), str(b_run))
    a, b = a_run.json(), b_run.json()
    for s in (a, b):
        kickoff = step(s, "schedule_kickoff")
        assert kickoff["status"] == "done" and kickoff["done_by"] == "tl-alice" and kickoff["done_at"]
        assert step(s, "complete_kickoff")["status"] == "open"
    assert step(a, "schedule_kickoff") | {"done_at": None, "workflow_id": None} == \
        step(b, "schedule_kickoff") | {"done_at": None, "workflow_id": None}
    assert normalised(a, via_temporal) == normalised(b, via_techconnect)
    # Both routes ran the same handler: each customer got the meeting mail.
    for cid in (via_temporal, via_techconnect):
        mails = st.mails("planning and review meeting", to=f"carol@{cid}.example")
        assert len(mails) == 1, [m["Subject"] for m in st.mails(to=f"carol@{cid}.example")]


# ----------------------------------------------------------------------------------- 3
@pytest.mark.rule("C15")
async def test_refused_updates_exit_2_and_leave_no_event(st: Stack, cli: Cli) -> None:
    cid = "cli-refuse"
    # Begun yesterday: month 1's cycle starts at enrolment, not on a timer at 09:00 Paris that a run just
    # before that hour would see fire between the two history counts below.
    h = await started(st, cid, today() - timedelta(days=1))
    before = await idle_history_len(h)

    comm_plan = cli.write("comm-plan.json", {"communication_policies": "weekly", "escalation_process": "TL first",
                                             "reporting_process": "monthly", "procedures": "see wiki"})
    out_of_order = await cli("step", "complete", cid, "deliver_communication_plan", "--by", "tl-alice",
                             "--file", str(comm_plan))
    assert out_of_order.code == 2, str(out_of_order)
    assert "out of order" in out_of_order.err and "complete_kickoff" in out_of_order.err

    price = cli.write("price.json", {"price": {"amount": "52804.80", "currency": "EUR"}})  # 10.01 % above 48,000
    too_dear = await cli("step", "complete", cid, "propose_renewal_price", "--by", "ops", "--file", str(price))
    assert too_dear.code == 2, str(too_dear)
    assert "C15" in too_dear.err and "10.01 %" in too_dear.err

    # The dev server writes nothing at all for an Update its validator rejects.
    assert len([e async for e in h.fetch_history_events()]) == before
    status = await st.status(cid)
    assert status.renewal is not None and status.renewal.next_price is None
    assert status.step("deliver_communication_plan").status == "waiting"  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------- 4
@pytest.mark.rule("C2", "C4", "E1")
async def test_enrolment_refusals_exit_2_before_starting(st: Stack, cli: Cli) -> None:
    start = today()
    for cid in ("cli-c4", "cli-c2", "cli-bad-json", "cli-bad-yaml", "cli-bad-type"):
        await subscribe(st, cid, start)
    await subscribe(st, "cli-e1", start, days=100)  # ends inside the period
    six = [{"name": f"Contact {i}", "email": f"c{i}@cli-c4.example"} for i in range(6)]
    good_json = json.dumps(enrolment_doc("cli-bad-json", start), indent=2).splitlines()
    good_json[5] = good_json[5].rstrip(",")  # line 6 loses its comma
    yaml_text = ("customer:\n  id: cli-bad-yaml\n  name: Bad Yaml Corp\n"
                 "  maintenance_subscription_id: SMP-cli-bad-yaml\n"
                 f"period_start: {start.isoformat()}\n"
                 "technical_lead: {id: tl-alice, name: Alice Martin, email: alice@support.example\n"  # unclosed {
                 "primary_system: CS\n")
    files = {
        "cli-c4": cli.write("c4.json", enrolment_doc("cli-c4", start, additional_contacts=six)),
        "cli-c2": cli.write("c2.json", enrolment_doc("cli-c2", start, term_months=18)),
        "cli-e1": cli.write("e1.json", enrolment_doc("cli-e1", start)),
        "cli-bad-json": cli.write("bad.json", "\n".join(good_json)),
        "cli-bad-yaml": cli.write("bad.yaml", yaml_text),
        "cli-bad-type": cli.write("type.json", enrolment_doc("cli-bad-type", start, term_months="twelve")),
    }
    runs = dict(zip(files, await asyncio.gather(*(cli("program", "start", "--file", str(f)) for f in files.values())),
                    strict=True))
    for cid, run in runs.items():
        assert run.code == 2, str(run)
        assert run.out == "", str(run)
        await assert_not_started(st, cid)

    assert "rule C4" in runs["cli-c4"].err and "6 additional contacts" in runs["cli-c4"].err
    assert "at most 5" in runs["cli-c4"].err
    assert "rule C2" in runs["cli-c2"].err and "18 months" in runs["cli-c2"].err
    e1 = runs["cli-e1"].err
    end_of_sub, end_of_period = start + timedelta(days=100), Enrolment.model_validate(
        enrolment_doc("cli-e1", start)).period_end
    assert "rule E1" in e1 and end_of_sub.isoformat() in e1 and end_of_period.isoformat() in e1
    assert "invalid JSON at line 7" in runs["cli-bad-json"].err  # the missing comma shows on the next line
    # The parser notices the unclosed mapping of line 6 on line 7.
    assert "invalid YAML at line 7, column 15" in runs["cli-bad-yaml"].err
    assert "field term_months" in runs["cli-bad-type"].err and "integer" in runs["cli-bad-type"].err


# ----------------------------------------------------------------------------------- 5
async def test_maintenance_import_all_or_nothing(st: Stack, cli: Cli) -> None:
    began, ends = today() - timedelta(days=300), today() + timedelta(days=700)
    bad = cli.write("bad.csv", "id,customer_id,start,end,contact_count\n"
                               f"SMP-imp-1,imp-one,{began},{ends},2\n"
                               f"SMP-imp-2,imp-two,{began},{ends.year}-13-01,2\n")
    refused = await cli("maintenance", "import", str(bad), "--json")
    assert refused.code == 2, str(refused)
    assert "line 3, field end" in refused.err and f"{ends.year}-13-01" in refused.err
    assert "nothing was imported" in refused.err
    async with st.sessions() as session:
        assert await get_subscription(session, "SMP-imp-1") is None

    good = cli.write("good.csv", "id,customer_id,start,end,contact_count\n"
                                 f"SMP-imp-1,imp-one,{began},{ends},2\n"
                                 f"SMP-imp-2,imp-two,{began},{ends + timedelta(days=30)},3\n")
    imported = await cli("maintenance", "import", str(good), "--json")
    assert imported.code == 0, str(imported)
    report = imported.json()
    assert report["inserted"] == 2 and report["total"] == 2
    async with st.sessions() as session:
        row = await get_subscription(session, "SMP-imp-2")
        assert row is not None and row.customer_id == "imp-two" and row.contact_count == 3


# ----------------------------------------------------------------------------------- 6
async def test_program_and_step_lists_from_the_projection(st: Stack, cli: Cli) -> None:
    cid = "cli-vis"
    # Begun yesterday: the first month's cycle runs whatever the hour (it starts at the first day's 09:00,
    # which today may not have reached yet on the dev server's clock).
    start = today() - timedelta(days=1)
    await subscribe(st, cid, start)
    run = await cli("program", "start", "--file", str(cli.write("vis.json", enrolment_doc(cid, start))))
    assert run.code == 0, str(run)
    await st.wait_enrolled(cid)
    wid = program_workflow_id(cid)

    async def listed() -> dict[str, Any]:
        r = await cli("program", "list", "--tl", "tl-alice", "--phase", "onboarding", "--json")
        assert r.code == 0, str(r)
        rows: list[dict[str, Any]] = [x for x in r.json()["items"] if x["workflow_id"] == wid]
        assert rows == [{"workflow_id": wid, "customer_id": cid, "technical_lead": "tl-alice",
                         "phase": "onboarding", "open_steps": ["schedule_kickoff"]}], r.out
        return rows[0]

    await eventually(listed)

    async def inbox() -> list[dict[str, Any]]:
        r = await cli("step", "list", "--tl", "tl-alice", "--json")
        assert r.code == 0, str(r)
        rows = [x for x in r.json()["items"] if x["customer_id"] == cid]
        # The programme's first step and the first month's call, from the cycle child workflow.
        assert sorted((x["workflow_id"], x["step"], x["overdue"]) for x in rows) == [
            (wid, "schedule_kickoff", False), (monthly_cycle_workflow_id(cid, 1, 1), "schedule_call", False)]
        return rows

    for row in await eventually(inbox):
        assert row["rule"] and row["title"] and row["due_on"] >= today().isoformat()
    other_tl = await cli("step", "list", "--tl", "tl-nobody", "--json")
    assert other_tl.code == 0 and other_tl.json() == {"items": [], "total": 0, "page": 1, "pages": 1}
    # The human views of the same data.
    humans = await asyncio.gather(cli("program", "list", "--tl", "tl-alice"), cli("step", "list", "--tl", "tl-alice"),
                                  cli("program", "status", cid))
    for human in humans:
        assert human.code == 0 and cid in human.out and "schedule_kickoff" in human.out, str(human)

    desc = await st.client.get_workflow_handle(wid).describe()
    sa = desc.typed_search_attributes
    status = await st.status(cid)
    assert status.plan is not None
    assert sa.get(SA_CUSTOMER_ID) == cid
    assert sa.get(SA_PERIOD_END) == status.plan.period_end_at
    assert sa.get(SA_NON_RENEWAL_DEADLINE) == status.plan.non_renewal_deadline_end_at


# ----------------------------------------------------------------------------------- 7
_DUE = re.compile(r"(?:is due|was due) (\d{1,2} [A-Z][a-z]+ \d{4})")


def due_in_subject(m: EmailMessage) -> date | None:
    found = _DUE.search(str(m["Subject"]))
    return datetime.strptime(found.group(1), "%d %B %Y").date() if found else None


@pytest.mark.rule("C16")
async def test_late_non_renewal_notice_refused_c16(st: Stack, cli: Cli) -> None:
    cid = "cli-late"
    period_start = today() - timedelta(days=300)  # the deadline (end minus 90 days) is behind us
    await subscribe(st, cid, period_start)
    run = await cli("program", "start", "--file", str(cli.write("late.json", enrolment_doc(cid, period_start))))
    assert run.code == 0, str(run)
    await st.wait_enrolled(cid)
    h = st.client.get_workflow_handle(program_workflow_id(cid))
    await idle_history_len(h)
    status = await st.status(cid)
    assert status.renewal is not None and status.plan is not None
    deadline = status.renewal.non_renewal_deadline
    assert deadline < today() - timedelta(days=2)

    late = await cli("notice", "non-renewal", cid, "--party", "customer",
                     "--received-on", (deadline + timedelta(days=1)).isoformat(), "--reference", "X")
    assert late.code == 2, str(late)
    assert "C16" in late.err and deadline.isoformat() in late.err and "late" in late.err
    status = await st.status(cid)
    assert status.renewal is not None and status.renewal.non_renewal is None
    stale_before = today() - timedelta(days=st.policy.stale_after_days)

    # Taken over ten months in: every step's deadline is long gone, so every step is missed
    # (those waiting for the kickoff too), and no mail chases dates long gone.
    assert all(s.due_on and s.due_on < stale_before for s in status.steps)
    assert {s.step: s.status.value for s in status.steps} == {s.step: "missed" for s in status.steps}
    cycles = {c.month: c.status for c in status.cycles}
    assert all(cycles[m] == "missed" for m in range(1, 9)), cycles
    mails = st.mails(to=f"@{cid}.example") + st.mails(template_subject=f"({cid.title()} Corp)")
    assert st.mails("welcome", to=f"carol@{cid}.example"), "the sink holds no mail of this programme"
    chasers = [m for m in mails if due_in_subject(m) is not None]
    assert all(d >= stale_before for m in chasers if (d := due_in_subject(m))), [m["Subject"] for m in chasers]
    subjects = [str(m["Subject"]) for m in mails]
    assert not [s for s in subjects if "renews on" in s or "non-renewal deadline" in s], subjects


# ----------------------------------------------------------------------------------- 8
async def test_temporal_unreachable_exit_1_without_traceback(st: Stack, cli: Cli) -> None:
    cid = "cli-down"
    await subscribe(st, cid, today())
    closed = {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    file = cli.write("down.json", enrolment_doc(cid, today()))
    runs = await asyncio.gather(
        cli("program", "status", cid, env=closed),
        cli("program", "start", "--file", str(file), env=closed),
        cli("projection", "check", "--json", env=closed),
        cli("step", "complete", cid, "schedule_kickoff", "--by", "tl-alice",
            "--file", str(cli.write("kickoff.json", {"meeting_at": meeting_next_week()})), env=closed),
    )
    for r in runs:
        assert r.code == 1, str(r)
        assert "cannot reach Temporal" in r.err and closed["TEMPORAL_ADDRESS"] in r.err, str(r)
        assert r.out == ""
    await assert_not_started(st, cid)
