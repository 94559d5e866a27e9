"""Rule C7 reaches the work already running: a TL reassigned while a monthly cycle runs and requests
are open hands all of them over (their TL, their `TechnicalLead` search attribute, who gets their
reminders and SLA warnings from then on), on the time-skipping server. The visibility query of the
same hand-over runs on the dev server (tests/test_cli_dev_server.py)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from email.message import EmailMessage

import holidays
import pytest

from domain.naming import SA_TECHNICAL_LEAD, program_workflow_id, request_workflow_id
from domain.request import RequestStatus
from tests.harness import Stack, eventually
from tests.test_program_timing import cycle_status, first_cycle_running
from tests.test_rules_programme import PARIS, file_request, upd

ALICE = "alice@support.example"
BOB = {"id": "tl-bob", "name": "Bob Ferreira", "email": "bob.ferreira@support.example"}


def next_business_ten(after: datetime) -> datetime:
    """10:00 Paris on the first weekday after `after` that is not a French holiday: a request filed then
    gets its first-response warning and deadline within the same business day (C12)."""
    local = after.astimezone(PARIS)
    days = holidays.country_holidays("FR", years=range(local.year, local.year + 2))
    d = local.date()
    while True:
        at = datetime.combine(d, time(10), PARIS)
        if at > local and d.isoweekday() <= 5 and d not in days:
            return at
        d += timedelta(days=1)


def addressed_to(m: EmailMessage, email: str) -> bool:
    return email in str(m["To"]) + str(m.get("Cc", ""))


@pytest.mark.rule("C7")
async def test_reassignment_hands_the_running_cycle_and_open_requests_to_the_new_tl_rule_c7(st: Stack) -> None:
    s, cycle = await first_cycle_running(st, "acme")
    reminder_at = (await cycle_status(st, cycle.id)).steps[0].remind_at
    assert reminder_at is not None
    at = next_business_ten(await st.now())
    assert at + timedelta(hours=1) < reminder_at, f"the cycle's reminder ({reminder_at}) comes before the requests"
    first, _ = await file_request(st, at, "high")
    second, _ = await file_request(st, at + timedelta(minutes=5), "low")

    h = st.client.get_workflow_handle(program_workflow_id("acme"))
    await upd(h, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": BOB, "reason": "rota"})
    reassigned_at = await st.now()

    # The cycle and both requests name the new TL: the TL inbox (search attribute) and their state.
    for wid in (cycle.id, request_workflow_id(first), request_workflow_id(second)):
        handle = st.client.get_workflow_handle(wid)
        await eventually(handle.describe, lambda d: d.typed_search_attributes.get(SA_TECHNICAL_LEAD) == "tl-bob",
                         f"{wid} TechnicalLead search attribute")
    request = await st.client.get_workflow_handle(request_workflow_id(first)).query(
        "get_status", result_type=RequestStatus)
    assert [(c.from_id, c.to_id, c.by) for c in request.technical_lead_changes] == [("tl-alice", "tl-bob", "ops-olga")]
    cycle_now = await cycle_status(st, cycle.id)
    assert [(c.from_id, c.to_id) for c in cycle_now.technical_lead_changes] == [("tl-alice", "tl-bob")]

    # The first request's SLA warning (C12) copies Bob, and the cycle's reminder goes to Bob.
    await st.sleep_until(at + timedelta(minutes=46))
    warned = await st.sink.wait_for(lambda m: first in str(m["Subject"]) and "First response due" in str(m["Subject"]),
                                    timeout=20)
    assert addressed_to(warned[0], BOB["email"]) and not addressed_to(warned[0], ALICE), warned[0]["Cc"]
    await st.sleep_until(reminder_at + timedelta(minutes=1))
    reminded = await st.sink.wait_for(lambda m: str(m["Subject"]).startswith("[TechConnect] Reminder:")
                                      and "follow-up call" in str(m["Subject"]), timeout=20)
    assert addressed_to(reminded[0], BOB["email"]) and not addressed_to(reminded[0], ALICE), reminded[0]["To"]

    # Alice heard of nothing of this work since she handed it over.
    since = [str(m["Subject"]) for m in st.mails(to=ALICE)
             if ("First response due" in str(m["Subject"]) or "Reminder:" in str(m["Subject"]))]
    assert since == [], f"mails to the previous TL after {reassigned_at}: {since}"
    assert s.technical_lead.id == "tl-alice"  # the programme began with Alice: the hand-over is what changed
