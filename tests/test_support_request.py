"""SupportRequestWorkflow on the time-skipping server, with the real worker, SQLite and
SMTP on loopback: the C12 first-response clock on business calendars (holidays, DST,
out-of-hours agreements), warning and escalation at the right simulated times, the A4
life of a request (pending, proposal, acceptance, written acceptance, every status
change stored), on-site dispatch with its approvals and billing (A4, C3), and C13.

Every calendar scenario places itself after the server's now (the next plain Friday, the next
Friday before Easter Monday, the Friday before the clocks go forward: tests/calendar_positions.py),
so the file passes whatever the date; TECHCONNECT_TEST_NOW=2031-01-15 (tests/clock.py) runs it for
another "now". "No mail yet" is proven by `assert_quiet_until`: the request has handled everything
due (tests/clock.py `settled`) and waits on the one timer expected, before the mail is looked for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from domain.cycle import CycleStatus
from domain.errors import RuleRefused
from domain.naming import SA_CUSTOMER_ID, SA_REQUEST_STATE, SA_SLA_BREACHED, request_workflow_id
from domain.request import (
    RequestInput,
    RequestResult,
    RequestState,
    RequestStatus,
)
from storage import repositories as repo
from tests.calendar_positions import (
    next_business_day,
    next_friday_before_easter_monday,
    next_friday_before_summer_time,
    next_plain_friday,
    public_holidays,
)
from tests.clock import settled
from tests.harness import Stack
from tests.harness import until_passes as eventually
from tests.request_fixtures import (
    NEW_YORK,
    PARIS,
    UTC,
    assert_quiet_until,
    at_local,
    file,
    live_programme,
    new_request,
    scenario,
    search_attributes,
    sla_kinds,
    status,
    today,
    update,
)
from tests.test_program_refusals import assert_no_trace

Figure = Callable[[str, object], None]


# ------------------------------------------------------------------------- rule C12: clock
@pytest.mark.rule("C12", "C5", "A4", "A1")
async def test_c12_friday_afternoon_request_is_due_monday_morning_warned_and_escalated(st: Stack) -> None:
    """Filed Friday 16:30 Paris: due Monday 09:30, warning at 09:15 to the desk and the TL,
    escalation at 09:30 to the support manager and the TL; SlaBreached becomes true."""
    prog = await live_programme(st)
    friday = next_plain_friday(await st.now(), PARIS, "FR")
    number, h = await file(st, at=at_local(friday, 16, 30))
    assert number == f"TC-ACME-{friday.year}-0001"  # rule A4
    s = await status(h)
    monday = friday + timedelta(days=3)
    assert s.first_response_deadline == at_local(monday, 9, 30)
    assert s.first_response_warning_at == at_local(monday, 9, 15)

    # rules A1, A4: the TL is told at once.
    opened = await st.sink.wait_for(lambda m: number in str(m["Subject"]) and "New" in str(m["Subject"]))
    assert prog.technical_lead.email in str(opened[0]["To"])
    p = st.policy

    await assert_quiet_until(st, h, at_local(monday, 9, 14), next_timer=at_local(monday, 9, 15))
    await st.sleep_until(at_local(monday, 9, 16))
    warning = await st.sink.wait_for(lambda m: "First response due" in str(m["Subject"]))
    assert p.support_desk_mailbox in str(warning[0]["To"]) and prog.technical_lead.email in str(warning[0]["Cc"])
    assert (await search_attributes(h)).get(SA_SLA_BREACHED) is False

    await assert_quiet_until(st, h, at_local(monday, 9, 29), next_timer=at_local(monday, 9, 30),
                             absent=("SLA breached",))
    await st.sleep_until(at_local(monday, 9, 31))
    breach = await st.sink.wait_for(lambda m: "SLA breached" in str(m["Subject"]))
    assert p.support_manager_mailbox in str(breach[0]["To"]) and prog.technical_lead.email in str(breach[0]["Cc"])

    async def breached() -> None:
        sa = await search_attributes(h)
        assert sa.get(SA_SLA_BREACHED) is True and sa.get(SA_REQUEST_STATE) == "open"
    await eventually(breached)
    assert await sla_kinds(st, number, h) == ["started", "warned", "breached"]
    async with st.sessions() as session:
        events = await repo.list_sla_events(session, tracking_number=number)
        row = await repo.get_request(session, number)
    # The events happened at the simulated instants, not merely in that order.
    assert abs(repo.as_utc(events[1].at) - at_local(monday, 9, 15)) < timedelta(minutes=1)
    assert abs(repo.as_utc(events[2].at) - at_local(monday, 9, 30)) < timedelta(minutes=1)
    assert row is not None and row.sla_breached and repo.as_utc(row.first_response_deadline) == at_local(  # type: ignore[arg-type]
        monday, 9, 30)

    # A late answer is recorded as such (C12), the breach stays.
    s = await update(h, "respond", by="rep-sam", message="Looking at it now")
    assert s.first_response_by == "rep-sam" and s.sla_breached
    assert await sla_kinds(st, number, h) == ["started", "warned", "breached", "responded_late"]


@pytest.mark.rule("C12", "C5")
async def test_c12_friday_before_easter_monday_is_due_tuesday(st: Stack, report_figure: Figure) -> None:
    """The next Friday before Easter Monday after the server's now, 16:30 Paris: Easter Monday is
    a French public holiday, so the deadline is Tuesday 09:30 Paris time, as a UTC instant at
    Tuesday's offset (in 2027 and 2032 Paris also moves to summer time that Sunday: 07:30 UTC,
    not 08:30). Easter Monday passes without any SLA mail."""
    now = await st.now()
    friday = next_friday_before_easter_monday(now, PARIS, "FR")
    tuesday = friday + timedelta(days=4)
    await st.sleep_until(at_local(friday, 10, 0))
    await live_programme(st)
    number, h = await file(st, at=at_local(friday, 16, 30))
    assert number == f"TC-ACME-{friday.year}-0001"
    s = await status(h)
    assert s.first_response_deadline == at_local(tuesday, 9, 30)
    assert s.first_response_warning_at == at_local(tuesday, 9, 15)
    report_figure("C12 Easter scenario (server now: filed, due)", scenario(now, at_local(friday, 16, 30), s, PARIS))
    # Easter Monday 09:00-17:00 passes: the request still waits for Tuesday 09:15, no SLA mail went out.
    await assert_quiet_until(st, h, at_local(friday + timedelta(days=3), 17, 30), next_timer=at_local(tuesday, 9, 15),
                             absent=("First response due", "SLA breached"))
    await st.sleep_until(at_local(tuesday, 9, 16))
    await st.sink.wait_for(lambda m: "First response due" in str(m["Subject"]) and number in str(m["Subject"]))


@pytest.mark.rule("C12", "C5")
async def test_c12_paris_friday_before_summer_time_is_due_at_the_new_offset(st: Stack, report_figure: Figure) -> None:
    """The Friday before Paris moves its clocks forward (the last Sunday of March, from the tz
    database), after the server's now: filed 16:30 at UTC+1, due at 09:30 UTC+2 on the next French
    business day (the Monday, or the Tuesday when that Monday is Easter Monday, as in 2027)."""
    now = await st.now()
    friday = next_friday_before_summer_time(now, PARIS)
    due_day = next_business_day(friday, "FR")
    await st.sleep_until(at_local(friday, 10, 0))
    await live_programme(st)
    filed_at = at_local(friday, 16, 30)
    _, h = await file(st, at=filed_at)
    s = await status(h)
    assert filed_at.astimezone(PARIS).utcoffset() == timedelta(hours=1)
    assert s.first_response_deadline == at_local(due_day, 9, 30)
    assert s.first_response_deadline.astimezone(PARIS).utcoffset() == timedelta(hours=2)  # type: ignore[union-attr]
    assert s.first_response_deadline == datetime.combine(due_day, time(7, 30), UTC)  # type: ignore[union-attr]
    assert s.first_response_warning_at == datetime.combine(due_day, time(7, 15), UTC)
    report_figure("C12 Paris summer-time scenario (server now: filed, due)", scenario(now, filed_at, s, PARIS))


@pytest.mark.rule("C12", "C5")
async def test_c12_new_york_clock_across_us_dst_warns_and_escalates_at_the_local_hour(
    st: Stack, report_figure: Figure
) -> None:
    """America/New_York, US holidays: filed the Friday before the US clocks go forward (the second
    Sunday of March, from the tz database) at 16:30 EST, after the server's now; due Monday 09:30
    EDT (13:30 UTC, not 14:30). Warning and breach fire at those hours, not an hour off."""
    now = await st.now()
    friday = next_friday_before_summer_time(now, NEW_YORK)
    monday = friday + timedelta(days=3)
    us = public_holidays("US", friday.year, friday.year)
    assert friday not in us and monday not in us, "no US public holiday falls on those days in March"
    await st.sleep_until(at_local(friday, 10, 0, NEW_YORK))
    await live_programme(st, "globex", tz=NEW_YORK, country="US")
    filed_at = at_local(friday, 16, 30, NEW_YORK)
    number, h = await file(st, "globex", at=filed_at)
    assert filed_at.astimezone(NEW_YORK).utcoffset() == timedelta(hours=-5)
    s = await status(h)
    assert s.first_response_deadline == datetime.combine(monday, time(13, 30), UTC)
    assert s.first_response_warning_at == datetime.combine(monday, time(13, 15), UTC)
    assert s.first_response_deadline == at_local(monday, 9, 30, NEW_YORK)
    report_figure("C12 New York scenario (server now: filed, due)", scenario(now, filed_at, s, NEW_YORK))
    await assert_quiet_until(st, h, at_local(monday, 9, 14, NEW_YORK), next_timer=at_local(monday, 9, 15, NEW_YORK))
    await st.sleep_until(at_local(monday, 9, 16, NEW_YORK))
    await st.sink.wait_for(lambda m: "First response due" in str(m["Subject"]))
    await assert_quiet_until(st, h, at_local(monday, 9, 29, NEW_YORK), next_timer=at_local(monday, 9, 30, NEW_YORK),
                             absent=("SLA breached",))
    await st.sleep_until(at_local(monday, 9, 31, NEW_YORK))
    await st.sink.wait_for(lambda m: "SLA breached" in str(m["Subject"]))
    await eventually(lambda: _assert_breached(h))
    assert await sla_kinds(st, number, h) == ["started", "warned", "breached"]


async def _assert_breached(h: WorkflowHandle[Any, Any]) -> None:
    assert (await search_attributes(h)).get(SA_SLA_BREACHED) is True


@pytest.mark.rule("C12", "C5")
async def test_c12_out_of_hours_agreement_runs_the_clock_round_the_clock(st: Stack) -> None:
    """With an out-of-hours agreement a Friday 16:30 request is due Friday 17:30 (24x7)."""
    await live_programme(st, out_of_hours="OOH-AGR-3")
    friday = next_plain_friday(await st.now(), PARIS, "FR")
    number, h = await file(st, at=at_local(friday, 16, 30))
    s = await status(h)
    assert s.first_response_deadline == at_local(friday, 17, 30)
    assert s.first_response_warning_at == at_local(friday, 17, 15)
    await st.sleep_until(at_local(friday, 17, 31))
    await st.sink.wait_for(lambda m: "SLA breached" in str(m["Subject"]) and number in str(m["Subject"]))
    assert await sla_kinds(st, number, h) == ["started", "warned", "breached"]


@pytest.mark.rule("C12")
async def test_c12_answer_in_time_records_met_and_sends_no_escalation(st: Stack) -> None:
    await live_programme(st)
    friday = next_plain_friday(await st.now(), PARIS, "FR")
    number, h = await file(st, at=at_local(friday, 10, 0))
    s = await status(h)
    assert s.first_response_deadline == at_local(friday, 11, 0)
    await st.sleep_until(at_local(friday, 10, 20))
    s = await update(h, "respond", by="rep-sam", message="We are on it")
    assert s.first_response_by == "rep-sam" and not s.sla_breached
    # Past the deadline: the answered request waits on no timer, and no SLA mail went out.
    await assert_quiet_until(st, h, at_local(friday, 12, 0), next_timer=None,
                             absent=("First response due", "SLA breached"))
    assert await sla_kinds(st, number, h) == ["started", "met"]
    assert (await search_attributes(h)).get(SA_SLA_BREACHED) is False
    # A second "first response" is refused without a trace.
    before = (await settled(h, st.env)).events
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await update(h, "respond", by="rep-kim", message="again")
    assert "answered already by rep-sam" in str(err.value.cause)
    await assert_no_trace(h, before)


# ------------------------------------------------------------------- rule A4: life of a request
@pytest.mark.rule("A4")
async def test_a4_closes_only_after_proposal_and_acceptance_every_change_stored(st: Stack) -> None:
    await live_programme(st)
    number, h = await file(st)
    await update(h, "respond", by="rep-sam", message="Investigating")

    # rule A4: nothing to accept before OT proposes measures; the refusal leaves no trace.
    before = (await settled(h, st.env)).events
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await update(h, "accept_resolution", by="carol")
    assert "rule A4" in str(err.value.cause) and "no proposed measures" in str(err.value.cause)
    await assert_no_trace(h, before)

    # rule A6: pending (waiting for the customer) keeps its reason.
    s = await update(h, "pend", by="rep-sam", reason="waiting for the customer's server logs")
    assert s.state == RequestState.pending and s.pending_reason == "waiting for the customer's server logs"
    assert (await search_attributes(h)).get(SA_REQUEST_STATE) == "pending"
    async with st.sessions() as session:
        row = await repo.get_request(session, number)
    assert row is not None and row.state == "pending" and row.pending_reason == "waiting for the customer's server logs"
    s = await update(h, "resume", by="rep-sam", note="logs received")
    assert s.state == RequestState.open and s.pending_reason is None

    s = await update(h, "propose_resolution", by="tl-alice", measures="Rebuild the search index")
    assert s.state == RequestState.pending and s.proposal is not None
    s = await update(h, "reject_resolution", by="carol", reason="index rebuild takes too long")
    assert s.state == RequestState.open and s.proposal is None
    await update(h, "propose_resolution", by="tl-alice", measures="Apply patch 23.4.2")
    s = await update(h, "accept_resolution", by="carol")
    assert s.state == RequestState.closed and s.closure is not None and "Apply patch 23.4.2" in s.closure

    result = RequestResult.model_validate(await h.result())
    assert result.state == RequestState.closed and result.closure == s.closure and not result.sla_breached
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED

    # rule A4: every status change, with who and when, in request_status_changes.
    async with st.sessions() as session:
        rows = await repo.list_status_changes(session, number)
        req = await repo.get_request(session, number)
    assert [(r.from_state, r.to_state, r.by) for r in rows] == [
        (None, "open", "carol"),
        ("open", "pending", "rep-sam"),
        ("pending", "open", "rep-sam"),
        ("open", "pending", "tl-alice"),
        ("pending", "open", "carol"),
        ("open", "pending", "tl-alice"),
        ("pending", "closed", "carol"),
    ]
    assert rows[1].note == "waiting for the customer's server logs"
    assert all(r.at is not None for r in rows)
    assert [(c.from_state, c.to_state, c.by) for c in s.history] == [
        (None if r.from_state is None else RequestState(r.from_state), RequestState(r.to_state), r.by) for r in rows]
    assert req is not None and req.state == "closed" and req.closed_at is not None
    assert (await search_attributes(h)).get(SA_REQUEST_STATE) == "closed"


@pytest.mark.rule("A4")
async def test_a4_written_acceptance_recorded_by_ops_closes(st: Stack) -> None:
    await live_programme(st)
    number, h = await file(st, kind="advisory", priority="low")
    s = await update(h, "record_written_acceptance", by="ops-olga", reference="LTR-2027-44")
    assert s.state == RequestState.closed and s.closure is not None and "LTR-2027-44" in s.closure
    # Closing answers the customer: the clock stops with it (C12).
    assert s.first_response_by == "ops-olga"
    result = RequestResult.model_validate(await h.result())
    assert result.state == RequestState.closed
    async with st.sessions() as session:
        rows = await repo.list_status_changes(session, number)
    assert [(r.to_state, r.by) for r in rows] == [("open", "carol"), ("closed", "ops-olga")]
    # The run has completed: Temporal itself refuses any further Update.
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await update(h, "pend", by="rep-sam", reason="too late")


# --------------------------------------------------------------- rule A4: on-site dispatch
@pytest.mark.rule("A4", "C3")
async def test_a4_dispatch_with_both_approvals_is_booked_visited_and_billed_c3(st: Stack) -> None:
    prog = await live_programme(st)
    number, h = await file(st)
    await update(h, "respond", by="rep-sam", message="Hardware fault suspected")
    s = await update(h, "request_dispatch", by="tl-alice", reason="replace the disk controller",
                     estimated_cost={"amount": "1800.00", "currency": "EUR"}, agreement_ref="AGR-DISP-7")
    d = s.dispatches[0]
    assert d.state == "requested" and d.customer_approval_due_at > d.manager_approval_due_at > d.requested_at
    assert await st.sink.wait_for(lambda m: "Approval needed" in str(m["Subject"]))

    # The visit cannot be recorded before both approvals (A4).
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await update(h, "record_visit", by="tl-alice", visit_on=(await today(st)).isoformat(), notes="x")
    assert "only a booked visit" in str(err.value.cause)

    s = await update(h, "approve_dispatch", by="carol", party="customer")
    assert s.dispatches[0].state == "requested"
    s = await update(h, "approve_dispatch", by="mgr-mia", party="manager")
    d = s.dispatches[0]
    assert d.state == "booked" and d.booking_ref and d.booking_ref.startswith("BK-") and d.engineer_email
    # Mails to the engineer and to the contacts (cc the TL).
    to_engineer = await st.sink.wait_for(
        lambda m: "visit booked" in str(m["Subject"]) and str(d.engineer_email) in str(m["To"]))
    assert prog.technical_lead.email in str(to_engineer[0]["Cc"])
    await st.sink.wait_for(lambda m: "visit booked" in str(m["Subject"]) and "carol@acme.example" in str(m["To"]))

    visit_on = await today(st) + timedelta(days=2)
    s = await update(h, "record_visit", by="tl-alice", visit_on=visit_on.isoformat(), notes="controller replaced",
                     actual_cost={"amount": "1650.00", "currency": "EUR"})
    assert s.dispatches[0].state == "visited"
    async with st.sessions() as session:
        extras = await repo.list_billable_extras(session, "acme")
        (row,) = await repo.list_dispatches(session, tracking_number=number)
    assert [(x.kind, x.rule, x.agreement_ref, x.amount) for x in extras] == [
        ("on_site_dispatch", "A4", "AGR-DISP-7", Decimal("1650.00"))]  # rules A4, C3
    assert row.state == "visited" and row.booking_ref == d.booking_ref and row.visit_on == visit_on
    assert row.customer_approved_by == "carol" and row.manager_approved_by == "mgr-mia"
    # The request closes as usual afterwards.
    await update(h, "propose_resolution", by="tl-alice", measures="Controller replaced on site")
    s = await update(h, "accept_resolution", by="carol")
    assert s.state == RequestState.closed


@pytest.mark.rule("A4")
async def test_a4_dispatch_whose_customer_approval_expires_is_refused_and_not_billed(st: Stack) -> None:
    await live_programme(st)
    number, h = await file(st)
    s = await update(h, "request_dispatch", by="tl-alice", reason="network capture on site",
                     estimated_cost={"amount": "900.00", "currency": "EUR"}, agreement_ref="AGR-DISP-8")
    d = s.dispatches[0]
    await update(h, "approve_dispatch", by="mgr-mia", party="manager")
    due_local = d.customer_approval_due_at.astimezone(PARIS)
    assert due_local.time() == time(17, 0)  # end of the third business day
    await st.sleep_until(d.customer_approval_due_at + timedelta(minutes=5))

    async def refused() -> None:
        assert (await status(h)).dispatches[0].state == "refused"
    await eventually(refused)
    s = await status(h)
    assert s.dispatches[0].refusal is not None and "customer's approval" in s.dispatches[0].refusal
    before = (await settled(h, st.env)).events
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await update(h, "approve_dispatch", by="carol", party="customer")
    message = str(err.value.cause)
    assert "rule A4" in message and f"{due_local:%a} {due_local.day} {due_local:%b %Y}, 17:00" in message, message
    await assert_no_trace(h, before)
    await st.sink.wait_for(lambda m: "refused" in str(m["Subject"]) and number in str(m["Subject"]))
    async with st.sessions() as session:
        assert await repo.list_billable_extras(session, "acme") == []
        (row,) = await repo.list_dispatches(session, tracking_number=number)
    assert row.state == "refused" and row.refusal and "nothing is billed" in row.refusal
    # The request itself stays open; a new dispatch may be requested.
    assert s.state == RequestState.open


# ------------------------------------------------------------------------------ rule C13
@pytest.mark.rule("C13")
async def test_c13_customisation_without_agreement_is_refused(st: Stack) -> None:
    prog = await live_programme(st)
    # Before anything starts (what the CLI does): refused, no number used.
    with pytest.raises(RuleRefused) as err:
        await file(st, customisation=True)
    assert str(err.value).startswith("rule C13")
    # A workflow started without the precheck refuses too: completed, closed, not failed.
    now = await st.now()
    h = await st.client.start_workflow(
        "SupportRequestWorkflow",
        RequestInput(tracking_number="TC-ACME-2099-0001", request=new_request(customisation=True),
                     customer_name=prog.customer_name, period=1, calendar=prog.calendar,
                     technical_lead=prog.technical_lead, contacts=prog.contacts, policy=st.policy, opened_at=now),
        id=request_workflow_id("TC-ACME-2099-0001"), task_queue=st.task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CUSTOMER_ID, "acme")]))
    result = RequestResult.model_validate(await h.result())
    assert result.state == RequestState.closed and result.refusal and result.refusal.startswith("rule C13")
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED
    async with st.sessions() as session:
        row = await repo.get_request(session, "TC-ACME-2099-0001")
    assert row is not None and row.state == "closed" and row.customisation
    # With the agreement reference the customisation request opens, numbered first of its year.
    number, h2 = await file(st, customisation=True, agreement_ref="AGR-CUST-1")
    assert number.endswith("-0001") and (await status(h2)).state == RequestState.open


@pytest.mark.rule("C12")
async def test_e1_c12_request_for_a_customer_without_programme_is_refused(st: Stack) -> None:
    with pytest.raises(RuleRefused) as err:
        await file(st, "nobody")
    assert str(err.value) == "rule E1/C12: customer nobody has no live TechConnect programme"


# ------------------------------------------------------------------------------ the signal route
@pytest.mark.rule("C10", "C12")
async def test_signals_take_the_update_route_and_keep_refusals_for_requests_and_cycles(st: Stack) -> None:
    """docs/design.md: tools that can only signal send `complete_step` {step, by, payload} to a request or a monthly
    cycle as to a programme: the same checks as the Update; a refusal is kept (query), mailed to the
    sender (the TL, else operations), and never fails the workflow."""
    prog = await live_programme(st)
    tl = prog.technical_lead
    number, h = await file(st)
    await h.signal("complete_step", {"step": "record_visit", "by": tl.id, "payload": {
        "visit_on": (await today(st) + timedelta(days=2)).isoformat(), "notes": "done"}})  # no dispatch (A4)
    await h.signal("complete_step", {"step": "launch_rocket", "by": "carol", "payload": {}})
    await h.signal("complete_step", {"step": "respond", "by": "rep-sam", "payload": {"message": "On it"}})

    async def handled() -> RequestStatus:
        s = await status(h)
        assert len(s.rejections) == 2 and s.first_response_by == "rep-sam", (s.rejections, s.first_response_by)
        return s
    s = await eventually(handled)
    assert [r.step for r in s.rejections] == ["record_visit", "launch_rocket"]
    assert "record_visit" in s.rejections[0].reason and "unknown step 'launch_rocket'" in s.rejections[1].reason
    assert await sla_kinds(st, number, h) == ["started", "met"]  # rule C12: the signal's answer stopped the clock
    await st.sink.wait_for(lambda m: "Not accepted" in str(m["Subject"]) and tl.email in str(m["To"]))
    await st.sink.wait_for(lambda m: "Not accepted" in str(m["Subject"]) and st.policy.ops_mailbox in str(m["To"]))
    assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING

    # A monthly cycle: the extra call before the included one is refused (C10), scheduling the call is done.
    await st.sleep_until(datetime.combine(prog.cycles[0].starts_on, time(12), PARIS).astimezone(UTC))

    async def cycle_running() -> str:
        current = await st.status("acme")
        assert current.cycles[0].status == "running", current.cycles[0]
        return current.cycles[0].workflow_id
    cycle = st.client.get_workflow_handle(await eventually(cycle_running))
    await cycle.signal("complete_step", {"step": "record_extra_call", "by": tl.id, "payload": {
        "held_on": prog.cycles[0].starts_on.isoformat(), "notes": "second call", "agreement_ref": "AGR-1"}})
    call_at = datetime.combine(prog.cycles[0].starts_on + timedelta(days=5), time(10), PARIS).isoformat()
    await cycle.signal("complete_step", {"step": "schedule_call", "by": tl.id, "payload": {"call_at": call_at}})

    async def cycle_handled() -> CycleStatus:
        c = await cycle.query("get_status", result_type=CycleStatus)
        assert len(c.rejections) == 1 and c.call_at is not None, (c.rejections, c.call_at)
        return c
    c = await eventually(cycle_handled)
    assert c.rejections[0].step == "record_extra_call" and c.rejections[0].reason.startswith("rule C10")
    assert (await cycle.describe()).status == WorkflowExecutionStatus.RUNNING
