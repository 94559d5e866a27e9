"""Every refusal names its rule; refused Updates leave no trace; a refused signal never
fails the workflow (rules E1, C2, C4, C15, C16, step order)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)

from domain.enrolment import MaintenanceSubscription, check_enrolment
from domain.errors import RuleRefused
from domain.money import Money, check_renewal_price
from domain.policy import ProgramPolicy
from domain.program import ProgramResult, ProgramStatus
from domain.rules_program import check_new_contact
from domain.step_inputs import AddContact
from tests.harness import Stack, add_subscription, enrolment, in_flight, wait_idle

POLICY = ProgramPolicy()


def contacts(n: int) -> list[dict[str, str]]:
    return [{"name": f"Contact {i}", "email": f"c{i}@acme.example"} for i in range(n)]


def sub(start: date, end: date, count: int = 2) -> MaintenanceSubscription:
    return MaintenanceSubscription(id="SMP-acme", customer_id="acme", start=start, end=end, contact_count=count)


# The pure checks take their dates as arguments: a fixed Monday (in the past, so never mistaken for "the future").
START = date(2025, 1, 6)


def rules(violations: list[Any]) -> set[str]:
    return {v.rule for v in violations}


# ---- pure rule checks (what the CLI runs before starting) ------------------------------
@pytest.mark.rule("C4")
def test_six_additional_contacts_refused_c4() -> None:
    e = enrolment("acme", START, additional_contacts=contacts(6))
    v = check_enrolment(e, sub(START, START + timedelta(days=800)), POLICY)
    assert rules(v) == {"C4"}
    assert "6 additional contacts" in v[0].message and "at most 5" in v[0].message
    # Five are allowed: the limit is the one the rule states, not one less.
    assert check_enrolment(enrolment("acme", START, additional_contacts=contacts(5)),
                           sub(START, START + timedelta(days=800), count=0), POLICY) == []


@pytest.mark.rule("C4")
def test_more_than_fifteen_contacts_needs_fee_c4() -> None:
    e = enrolment("acme", START, additional_contacts=contacts(5))
    # 10 contacts already on the customer's other maintenance subscriptions + 1 primary + 5 = 16.
    v = check_enrolment(e, sub(START, START + timedelta(days=800), count=10), POLICY)
    assert rules(v) == {"C4"} and "16 contacts" in v[0].message and "15" in v[0].message
    # 15 in all (9 on the other subscriptions) needs no fee.
    assert check_enrolment(e, sub(START, START + timedelta(days=800), count=9), POLICY) == []
    # Beyond fifteen the fee is accepted under an agreement reference (C3), as for a contact added later.
    fee_only = enrolment("acme", START, additional_contacts=contacts(5), accept_extra_contact_fees=True)
    v = check_enrolment(fee_only, sub(START, START + timedelta(days=800), count=10), POLICY)
    assert [(x.rule, x.field) for x in v] == [("C4", "extra_contacts_agreement_ref")]
    accepted = fee_only.model_copy(update={"extra_contacts_agreement_ref": "AGR-C4-1"})
    assert check_enrolment(accepted, sub(START, START + timedelta(days=800), count=10), POLICY) == []


@pytest.mark.rule("C4")
def test_c4_the_primary_contact_counts_in_the_fifteen_not_in_the_five() -> None:
    # docs/rules.md C4: the primary contact is the customer's named contact; the five "additional" ones
    # come on top of it (1 + 5 accepted), and the fifteen count everybody (9 + 1 + 5 = 15, 10 + 1 + 5 = 16).
    five = contacts(5)
    with_primary = enrolment("acme", START, additional_contacts=five)
    assert with_primary.primary_contact is not None
    assert check_enrolment(with_primary, sub(START, START + timedelta(days=800), count=9), POLICY) == []
    v = check_enrolment(with_primary, sub(START, START + timedelta(days=800), count=10), POLICY)
    assert rules(v) == {"C4"} and "16 contacts" in v[0].message
    without_primary = with_primary.model_copy(update={"primary_contact": None})
    assert check_enrolment(without_primary, sub(START, START + timedelta(days=800), count=10), POLICY) == []


@pytest.mark.rule("C4")
def test_c4_beyond_fifteen_is_the_same_rule_at_enrolment_and_later() -> None:
    # The fee alone is not enough at either moment: it needs its agreement reference (C3).
    status = ProgramStatus.model_validate({
        "customer_id": "acme", "customer_name": "ACME", "workflow_id": "w", "period": 1, "phase": "running",
        "calendar": {}, "technical_lead": {"id": "tl", "name": "T", "email": "t@x.example"},
        "contacts": [{"name": f"c{i}", "email": f"c{i}@x.example"} for i in range(5)],
        "annual_fee": {"amount": "1000.00"}})
    new = {"by": "ops", "contact": {"name": "n", "email": "n@x.example"}}
    fee_only = check_new_contact(status, AddContact.model_validate({**new, "accept_extra_contact_fee": True}), 10,
                                 POLICY)
    assert [(x.rule, x.field) for x in fee_only] == [("C4", "agreement_ref")] and "16 contacts" in fee_only[0].message
    at_enrolment = check_enrolment(enrolment("acme", START, additional_contacts=contacts(5),
                                             accept_extra_contact_fees=True),
                                   sub(START, START + timedelta(days=800), count=10), POLICY)
    assert at_enrolment[0].message == fee_only[0].message
    assert check_new_contact(status, AddContact.model_validate(
        {**new, "accept_extra_contact_fee": True, "agreement_ref": "AGR-1"}), 10, POLICY) == []


@pytest.mark.rule("C2")
def test_eighteen_month_term_needs_written_agreement_c2() -> None:
    e = enrolment("acme", START, term_months=18)
    v = check_enrolment(e, sub(START, START + timedelta(days=800)), POLICY)
    assert rules(v) == {"C2"} and "18 months" in v[0].message
    assert "written agreement" in v[0].message and "12 months" in v[0].message
    ok = enrolment("acme", START, term_months=18, written_agreement_ref="AGR-18M-01")
    assert check_enrolment(ok, sub(START, START + timedelta(days=800)), POLICY) == []


@pytest.mark.rule("E1")
def test_subscription_ending_inside_period_refused_e1() -> None:
    e = enrolment("acme", START)
    ends = START + timedelta(days=175)
    v = check_enrolment(e, sub(START, ends), POLICY)
    assert rules(v) == {"E1"}
    # The dates in the message: the subscription's end and the whole period (12 months less a day).
    assert f"ends on {ends}" in v[0].message and f"{START} to {e.period_end}" in v[0].message, v[0].message
    assert e.period_end == date(START.year + 1, START.month, START.day) - timedelta(days=1)
    # Covering the whole period, to its last day, is enough.
    assert check_enrolment(e, sub(START, e.period_end), POLICY) == []


@pytest.mark.rule("C15")
def test_price_rise_above_ten_percent_refused_c15() -> None:
    current = Money(amount="48000.00")  # type: ignore[arg-type]
    check_renewal_price(current, Money(amount="52800.00"), POLICY.max_price_increase_percent)  # type: ignore[arg-type]
    with pytest.raises(RuleRefused) as err:
        # 10.01 % above 48,000.00
        check_renewal_price(current, Money(amount="52804.80"), POLICY.max_price_increase_percent)  # type: ignore[arg-type]
    assert "C15" in str(err.value) and "10.01 %" in str(err.value)


# ---- through the workflow ------------------------------------------------------------------
WFT_EVENTS = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
              EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}


async def assert_no_trace(h: WorkflowHandle[Any, Any], before: int) -> None:
    """A refused Update leaves no event. The dev server (Temporal 1.32) writes nothing at all
    (tests/test_cli_dev_server.py checks the exact count); the older time-skipping test
    server has no speculative workflow tasks, so it may add one workflow task and nothing else."""
    events = [e async for e in h.fetch_history_events()][before:]
    assert all(e.event_type in WFT_EVENTS for e in events), [e.event_type for e in events]
    assert len(events) <= 3


async def history_len(h: WorkflowHandle[Any, Any], within: float = 60.0) -> int:
    """Event count once the workflow is idle: no workflow task, activity, Update or child start in
    flight (tests/harness.py `wait_idle`), however long its activities take."""
    return len(await wait_idle(h, within))


async def status_when(st: Stack, customer: str, ok: Callable[[ProgramStatus], bool], what: str,
                      within: float = 30.0) -> ProgramStatus:
    """The programme's status once `ok` holds; fails after `within` seconds showing the last one seen."""
    deadline = time.monotonic() + within
    while True:
        s = await st.status(customer)
        if ok(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"{customer}: not {what} after {within} s; last status: phase {s.phase.value}, "
                                 f"rejections {[(r.step, r.reason) for r in s.rejections]}, "
                                 f"steps {[(x.step, x.status.value) for x in s.steps]}")
        await asyncio.sleep(0.1)


async def started(st: Stack, customer: str = "acme", **overrides: Any) -> WorkflowHandle[Any, Any]:
    today = (await st.now()).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=1), today + timedelta(days=800))
    h = await st.start(enrolment(customer, today, **overrides))
    await st.wait_enrolled(customer)
    return h


@pytest.mark.rule("E1")
async def test_enrolment_refused_in_workflow_completes_with_rule_e1(st: Stack) -> None:
    today = (await st.now()).date()
    ends = today + timedelta(days=100)
    await add_subscription(st.sessions, "acme", today - timedelta(days=1), ends)
    h = await st.start(enrolment("acme", today))
    result = ProgramResult.model_validate(await h.result())
    assert result.outcome == "refused" and {v.rule for v in result.refusal} == {"E1"}
    assert f"ends on {ends}, inside the period {today} to" in result.refusal[0].message, result.refusal
    # A person's mistake ends the run cleanly, it does not fail it.
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED


@pytest.mark.rule("C15")
async def test_price_rise_refused_by_update_c15_without_history(st: Stack) -> None:
    h = await started(st)
    before = await history_len(h)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await h.execute_update("propose_renewal_price", {"by": "ops", "price": {"amount": "52804.80"}},
                               result_type=ProgramStatus)
    assert "C15" in str(err.value.cause) and "10.01 %" in str(err.value.cause), err.value.cause
    await assert_no_trace(h, before)
    s = await h.execute_update("propose_renewal_price", {"by": "ops", "price": {"amount": "52800.00"}},
                               result_type=ProgramStatus)
    assert s.renewal is not None and s.renewal.next_price is not None
    assert str(s.renewal.next_price.amount) == "52800.00"  # exactly +10 % is accepted


async def test_step_out_of_order_refused_without_history(st: Stack) -> None:
    h = await started(st)
    before = await history_len(h)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await h.execute_update("deliver_communication_plan", {
            "by": "tl-alice", "communication_policies": "x", "escalation_process": "x",
            "reporting_process": "x", "procedures": "x"}, result_type=ProgramStatus)
    assert "out of order" in str(err.value.cause) and "complete_kickoff" in str(err.value.cause)
    await assert_no_trace(h, before)


async def test_bad_payload_refused_by_update(st: Stack) -> None:
    h = await started(st)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await h.execute_update("schedule_kickoff", {"by": "tl-alice", "meeting_at": "not a date"},
                               result_type=ProgramStatus)
    assert "Failed decoding arguments" in str(err.value.cause), err.value.cause  # refused as a payload, not a step
    assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING
    s = await st.status("acme")
    assert s.step("schedule_kickoff").status == "open"  # type: ignore[union-attr]


async def test_unknown_step_by_signal_is_kept_as_rejection(st: Stack) -> None:
    h = await started(st)
    await h.signal("complete_step", {"step": "launch_rocket", "by": "tl-alice", "payload": {}})
    await h.signal("complete_step", {"step": "deliver_communication_plan", "by": "tl-alice", "payload": {}})
    s = await status_when(st, "acme", lambda s: len(s.rejections) >= 2, "both signals rejected")
    assert [r.step for r in s.rejections] == ["launch_rocket", "deliver_communication_plan"]
    assert "unknown step" in s.rejections[0].reason
    assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING
    rejected = await st.sink.wait_for(lambda m: "alice@support.example" in str(m["To"])
                                      and "launch_rocket" in m.get_body(("plain",)).get_content(), timeout=10)
    assert rejected
    # The signal route accepts a valid step exactly like the Update.
    meeting_at = (await st.now()) + timedelta(days=10)
    await h.signal("complete_step", {"step": "schedule_kickoff", "by": "tl-alice",
                                     "payload": {"meeting_at": meeting_at.isoformat()}})
    s = await status_when(st, "acme", lambda s: s.step("schedule_kickoff").status == "done",  # type: ignore[union-attr]
                          "schedule_kickoff done by signal")
    assert s.step("schedule_kickoff").done_by == "tl-alice" and len(s.rejections) == 2  # type: ignore[union-attr]


@pytest.mark.rule("C4")
async def test_add_sixteenth_contact_needs_fee_c4(st: Stack) -> None:
    h = await started(st)  # 2 on the subscription + 2 enrolled = 4

    async def add(email: str, **fee: Any) -> ProgramStatus:
        # Bounded: an Update stuck on a failing workflow task would otherwise wait for ever.
        try:
            status: ProgramStatus = await asyncio.wait_for(h.execute_update(
                "add_contact", {"by": "ops", "contact": {"name": email, "email": email}, **fee},
                result_type=ProgramStatus), 30)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise AssertionError(f"add_contact {email} {fee}: neither accepted nor refused within 30 s; "
                                 f"in flight: {in_flight([e async for e in h.fetch_history_events()])}") from None
        return status

    for i in range(11):
        s = await add(f"n{i}@x.example")
    assert len(s.contacts) == 13 and s.extras == []  # 15 in all with the subscription's 2: no fee yet
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await add("p@x.example")
    assert "C4" in str(err.value.cause) and "16 contacts" in str(err.value.cause), err.value.cause
    s = await add("p@x.example", accept_extra_contact_fee=True, agreement_ref="AGR-9")
    assert [x.rule for x in s.extras] == ["C4"]
