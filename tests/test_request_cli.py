"""`techconnect request ...` as a real subprocess against the Temporal dev server, the real
worker, SQLite and an SMTP sink on loopback (rules A1, A4, C12, C13, E1).

Subprocesses are awaited with asyncio, never `subprocess.run`: the worker shares this module's
event loop, and blocking it would stall the very worker the CLI talks to.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from domain.naming import monthly_cycle_workflow_id, request_workflow_id
from domain.request import RequestStatus
from storage import repositories as repo
from tests.harness import Cli, Stack, add_subscription, cli_environ, enrolment, stack_on_server, until_passes

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARIS = ZoneInfo("Europe/Paris")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def st(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with stack_on_server(tmp_path_factory.mktemp("request-cli")) as s:
        yield s


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cli(st: Stack) -> Cli:
    env = cli_environ(st)
    return Cli(env=env)


async def eventually(check: Callable[[], Awaitable[Any]]) -> Any:
    """Visibility lags the workflow by about a second."""
    return await until_passes(check, timeout=15, interval=0.3)


OPEN = ("--kind", "support", "--priority", "high", "--summary", "Search returns no results", "--by", "carol")


@pytest.mark.rule("C12")
async def test_e1_c12_open_for_a_customer_without_live_programme_exits_2_naming_the_rule(cli: Cli) -> None:
    run = await cli("request", "open", "nobody", *OPEN)
    assert run.code == 2, str(run)
    assert "rule E1/C12: customer nobody has no live TechConnect programme" in run.err, str(run)


@pytest.mark.rule("C13")
async def test_c13_customisation_without_agreement_exits_2(cli: Cli) -> None:
    run = await cli("request", "open", "acme", *OPEN, "--customisation")
    assert run.code == 2 and "rule C13" in run.err, str(run)


@pytest.mark.rule("A4", "A1")
async def test_a4_a1_open_prints_the_tracking_number_and_the_tl_is_mailed(st: Stack, cli: Cli) -> None:
    today = datetime.now(PARIS).date()
    await add_subscription(st.sessions, "acme", today - timedelta(days=30), today + timedelta(days=800))
    await st.start(enrolment("acme", today))
    programme = await st.wait_enrolled("acme")

    # rule A4: numbered in the year of the programme's time zone, read on the machine's clock (the
    # dev server's) just before and just after: the two differ only across New Year's midnight.
    years = {datetime.now(PARIS).year}
    run = await cli("request", "open", "acme", *OPEN)
    years.add(datetime.now(PARIS).year)
    assert run.code == 0, str(run)
    match = re.search(r"TC-ACME-(\d{4})-\d{4}", run.out)
    assert match is not None and int(match.group(1)) in years and match.group(0).endswith("-0001"), str(run)
    number, year = match.group(0), int(match.group(1))

    # rules A1, A4: the TL's mail arrives through the SMTP sink on loopback.
    mails = await st.sink.wait_for(lambda m: number in str(m["Subject"]), timeout=20)
    assert programme.technical_lead.email in str(mails[0]["To"])
    assert mails[0]["X-TechConnect-Template"] == "request_opened"

    # The next request of the customer gets the next number; --json is machine-readable.
    second = await cli("request", "open", "acme", "--kind", "advisory", "--priority", "low", "--summary",
                       "Upgrade advice", "--json")
    assert second.code == 0, str(second)
    assert second.json()["tracking_number"] in {f"TC-ACME-{year}-0002", f"TC-ACME-{year + 1}-0001"}

    # Steps by Update: a refusal names its rule (exit 2), a step returns the new state.
    refused = await cli("request", "accept", number, "--by", "carol")
    assert refused.code == 2 and "rule A4" in refused.err, str(refused)
    answered = await cli("request", "respond", number, "--by", "rep-sam", "--message", "On it", "--json")
    assert answered.code == 0, str(answered)
    s = RequestStatus.model_validate(answered.json())
    assert s.first_response_by == "rep-sam" and [e.kind for e in s.sla_events][-1] in ("met", "responded_late")
    pended = await cli("request", "pend", number, "--by", "rep-sam", "--reason", "waiting for logs")
    assert pended.code == 0 and "pending" in pended.out, str(pended)

    shown = await cli("request", "show", number, "--json")
    assert shown.code == 0 and shown.json()["pending_reason"] == "waiting for logs", str(shown)
    async with st.sessions() as session:
        changes = await repo.list_status_changes(session, number)
    assert [(c.to_state, c.by) for c in changes] == [("open", "carol"), ("pending", "rep-sam")]

    async def listed() -> None:
        rows = (await cli("request", "list", "--customer", "acme", "--state", "pending", "--json")).json()
        assert [r["tracking_number"] for r in rows] == [number], rows
    await eventually(listed)
    assert (await st.client.get_workflow_handle(request_workflow_id(number)).describe()).workflow_type == \
        "SupportRequestWorkflow"


async def opened(cli: Cli, customer_id: str, priority: str = "high") -> str:
    run = await cli("request", "open", customer_id, "--kind", "support", "--priority", priority,
                    "--summary", f"{priority} issue", "--by", "carol", "--json")
    assert run.code == 0, str(run)
    number: str = run.json()["tracking_number"]
    return number


async def live(st: Stack, customer_id: str) -> None:
    """A programme whose period began yesterday: its first monthly cycle runs (a month's cycle starts
    at the first day's 09:00, which today may not have reached yet on the dev server's clock)."""
    today = datetime.now(PARIS).date()
    await add_subscription(st.sessions, customer_id, today - timedelta(days=30), today + timedelta(days=800))
    await st.start(enrolment(customer_id, today - timedelta(days=1)))
    await st.wait_enrolled(customer_id)


@pytest.mark.rule("A4")
async def test_a4_priority_changes_with_a_reason_and_the_status_history_shows_it(st: Stack, cli: Cli) -> None:
    await live(st, "prio")
    number = await opened(cli, "prio", "medium")

    changed = await cli("request", "priority", number, "--by", "ops-olga", "--priority", "critical",
                        "--reason", "production down since the upgrade", "--json")
    assert changed.code == 0, str(changed)
    s = RequestStatus.model_validate(changed.json())
    assert s.priority.value == "critical"
    assert [(c.from_state, c.to_state, c.by, c.note) for c in s.history][-1] == (
        "open", "open", "ops-olga", "priority medium -> critical: production down since the upgrade")
    async with st.sessions() as session:
        notes = [c.note for c in await repo.list_status_changes(session, number)]
    assert "priority medium -> critical: production down since the upgrade" in notes, notes
    human = await cli("request", "show", number)
    assert human.code == 0 and "priority medium -> critical" in human.out, str(human)

    # The same priority again, or no reason, is refused with exit 2 naming the field; nothing changes.
    same = await cli("request", "priority", number, "--by", "ops-olga", "--priority", "critical", "--reason", "x")
    assert same.code == 2 and "critical priority already" in same.err, str(same)
    blank = await cli("request", "priority", number, "--by", "ops-olga", "--priority", "low", "--reason", "")
    assert blank.code == 2 and "reason" in blank.err, str(blank)
    unknown = await cli("request", "priority", number, "--by", "ops-olga", "--priority", "urgent", "--reason", "y")
    assert unknown.code == 2 and "priority" in unknown.err, str(unknown)
    after = RequestStatus.model_validate((await cli("request", "show", number, "--json")).json())
    assert after.priority.value == "critical" and len(after.history) == len(s.history)


@pytest.mark.rule("C7")
async def test_c7_reassignment_moves_the_running_cycle_and_open_requests_to_the_new_tls_inbox(
    st: Stack, cli: Cli, tmp_path: Path
) -> None:
    await live(st, "handover")
    numbers = {await opened(cli, "handover"), await opened(cli, "handover", "low")}
    bob = {"id": "tl-bob", "name": "Bob Ferreira", "email": "bob.ferreira@support.example"}
    payload = tmp_path / "reassign.json"
    payload.write_text(json.dumps({"technical_lead": bob, "reason": "rota"}), encoding="utf-8")
    run = await cli("step", "complete", "handover", "reassign_technical_lead", "--by", "ops-olga",
                    "--file", str(payload))
    assert run.code == 0, str(run)

    async def inboxes() -> None:
        requests = (await cli("request", "list", "--tl", "tl-bob", "--customer", "handover", "--json")).json()
        assert {r["tracking_number"] for r in requests} == numbers, requests
        bobs = (await cli("step", "list", "--tl", "tl-bob", "--json")).json()["items"]
        steps = [(x["workflow_id"], x["step"]) for x in bobs if x["customer_id"] == "handover"]
        assert (monthly_cycle_workflow_id("handover", 1, 1), "schedule_call") in steps, steps
        left = (await cli("request", "list", "--tl", "tl-alice", "--customer", "handover", "--json")).json()
        assert left == [], left
        alice = [x for x in (await cli("step", "list", "--tl", "tl-alice", "--json")).json()["items"]
                 if x["customer_id"] == "handover"]
        assert alice == [], alice
    await eventually(inboxes)


@pytest.mark.rule("A4")
async def test_a4_request_comment_posts_to_the_thread_and_show_json_has_messages(st: Stack, cli: Cli) -> None:
    await live(st, "talk")
    number = await opened(cli, "talk")
    said = await cli("request", "comment", number, "--by", "rep-sam", "--message", "Which version of the index?")
    assert said.code == 0, str(said)
    answered = await cli("request", "comment", number, "--by", "carol@talk.example", "--as", "customer",
                         "--message", "The 23.4 one.")
    assert answered.code == 0, str(answered)
    stranger = await cli("request", "comment", number, "--by", "eve@elsewhere.example", "--as", "customer",
                         "--message", "let me in")
    assert stranger.code == 2 and "rule A4" in stranger.err and "not a contact of customer talk" in stranger.err, \
        str(stranger)
    blank = await cli("request", "comment", number, "--by", "rep-sam", "--message", "")
    assert blank.code == 2 and "message" in blank.err, str(blank)

    shown = await cli("request", "show", number, "--json")
    assert shown.code == 0, str(shown)
    assert [(m["seq"], m["by"], m["role"], m["via"], m["text"]) for m in shown.json()["messages"]] == [
        (1, "rep-sam", "staff", "cli", "Which version of the index?"),
        (2, "carol@talk.example", "customer", "cli", "The 23.4 one.")]
    human = await cli("request", "show", number)
    assert human.code == 0 and "The 23.4 one." in human.out and "carol@talk.example (customer, cli)" in human.out, \
        str(human)
