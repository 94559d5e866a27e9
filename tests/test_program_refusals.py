"""Every refusal names its rule; refused Updates leave no trace; a refused signal never
fails the workflow (rules E1, C2, C4, C15, C16, step order)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.enrolment import MaintenanceSubscription, check_enrolment
from domain.errors import RuleRefused
from domain.money import Money, check_renewal_price
from domain.policy import ProgramPolicy
from domain.program import ProgramResult, ProgramStatus
from tests.harness import Stack, add_subscription, enrolment, stack, start_time_skipping

POLICY = ProgramPolicy()


def contacts(n: int) -> list[dict[str, str]]:
    return [{"name": f"Contact {i}", "email": f"c{i}@acme.example"} for i in range(n)]


def sub(start: date, end: date, count: int = 2) -> MaintenanceSubscription:
    return MaintenanceSubscription(id="SMP-acme", customer_id="acme", start=start, end=end, contact_count=count)


START = date(2027, 1, 4)


def rules(violations: list[Any]) -> set[str]:
    return {v.rule for v in violations}


# ---- pure rule checks (what the CLI runs before starting) ------------------------------
def test_six_additional_contacts_refused_c4() -> None:
    e = enrolment("acme", START, additional_contacts=contacts(6))
    v = check_enrolment(e, sub(START, START + timedelta(days=800)), POLICY)
    assert rules(v) == {"C4"}
    assert "6 additional contacts" in v[0].message and "at most 5" in v[0].message


def test_more_than_fifteen_contacts_needs_fee_c4() -> None:
    e = enrolment("acme", START, additional_contacts=contacts(5))
    # 10 contacts already on the customer's other maintenance subscriptions + 1 primary + 5 = 16.
    v = check_enrolment(e, sub(START, START + timedelta(days=800), count=10), POLICY)
    assert rules(v) == {"C4"} and "16 contacts" in v[0].message and "15" in v[0].message
    accepted = enrolment("acme", START, additional_contacts=contacts(5), accept_extra_contact_fees=True)
    assert check_enrolment(accepted, sub(START, START + timedelta(days=800), count=10), POLICY) == []


def test_eighteen_month_term_needs_written_agreement_c2() -> None:
    e = enrolment("acme", START, term_months=18)
    v = check_enrolment(e, sub(START, START + timedelta(days=800)), POLICY)
    assert rules(v) == {"C2"} and "18 months" in v[0].message
    ok = enrolment("acme", START, term_months=18, written_agreement_ref="AGR-2027-01")
    assert check_enrolment(ok, sub(START, START + timedelta(days=800)), POLICY) == []


def test_subscription_ending_inside_period_refused_e1() -> None:
    e = enrolment("acme", START)
    v = check_enrolment(e, sub(START, date(2027, 6, 30)), POLICY)
    assert rules(v) == {"E1"}
    assert "2027-06-30" in v[0].message and "2028-01-03" in v[0].message


def test_price_rise_above_ten_percent_refused_c15() -> None:
    current = Money(amount="48000.00")  # type: ignore[arg-type]
    check_renewal_price(current, Money(amount="52800.00"), POLICY.max_price_increase_percent)  # type: ignore[arg-type]
    with pytest.raises(RuleRefused) as err:
        # 10.01 % above 48,000.00
        check_renewal_price(current, Money(amount="52804.80"), POLICY.max_price_increase_percent)  # type: ignore[arg-type]
    assert "C15" in str(err.value) and "10.01 %" in str(err.value)


# ---- through the workflow ------------------------------------------------------------------
@pytest_asyncio.fixture
async def st(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Stack]:
    env: WorkflowEnvironment = await start_time_skipping()
    try:
        async with stack(env, sqlite_url, tmp_path) as s:
            yield s
    finally:
        await env.shutdown()


WFT_EVENTS = {EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
              EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}


async def assert_no_trace(h: WorkflowHandle[Any, Any], before: int) -> None:
    """A refused Update leaves no event. The dev server (Temporal 1.32) writes nothing at all
    (tests/test_cli_dev_server.py checks the exact count); the older time-skipping test
    server has no speculative workflow tasks, so it may add one workflow task and nothing else."""
    events = [e async for e in h.fetch_history_events()][before:]
    assert all(e.event_type in WFT_EVENTS for e in events), [e.event_type for e in events]
    assert len(events) <= 3


async def history_len(h: WorkflowHandle[Any, Any]) -> int:
    """Event count once the workflow is idle (its own activities finished)."""
    previous = -1
    while True:
        n = len([e async for e in h.fetch_history_events()])
        if n == previous:
            return n
        previous = n
        await asyncio.sleep(0.3)


async def started(st: Stack, customer: str = "acme", **overrides: Any) -> WorkflowHandle[Any, Any]:
    today = (await st.now()).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=1), today + timedelta(days=800))
    h = await st.start(enrolment(customer, today, **overrides))
    await st.wait_enrolled(customer)
    return h


async def test_enrolment_refused_in_workflow_completes_with_rule_e1(st: Stack) -> None:
    today = (await st.now()).date()
    await add_subscription(st.sessions, "acme", today - timedelta(days=1), today + timedelta(days=100))
    h = await st.start(enrolment("acme", today))
    result = ProgramResult.model_validate(await h.result())
    assert result.outcome == "refused" and {v.rule for v in result.refusal} == {"E1"}
    # A person's mistake ends the run cleanly, it does not fail it.
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED


async def test_price_rise_refused_by_update_c15_without_history(st: Stack) -> None:
    h = await started(st)
    before = await history_len(h)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await h.execute_update("propose_renewal_price", {"by": "ops", "price": {"amount": "52804.80"}},
                               result_type=ProgramStatus)
    assert "C15" in str(err.value.cause)
    await assert_no_trace(h, before)
    s = await h.execute_update("propose_renewal_price", {"by": "ops", "price": {"amount": "52800.00"}},
                               result_type=ProgramStatus)
    assert s.renewal is not None and s.renewal.next_price is not None


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
    with pytest.raises(WorkflowUpdateFailedError):
        await h.execute_update("schedule_kickoff", {"by": "tl-alice", "meeting_at": "not a date"},
                               result_type=ProgramStatus)
    assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING


async def test_unknown_step_by_signal_is_kept_as_rejection(st: Stack) -> None:
    h = await started(st)
    await h.signal("complete_step", {"step": "launch_rocket", "by": "tl-alice", "payload": {}})
    await h.signal("complete_step", {"step": "deliver_communication_plan", "by": "tl-alice", "payload": {}})
    s = await st.status("acme")
    for _ in range(50):
        if len(s.rejections) == 2:
            break
        s = await st.status("acme")
    assert [r.step for r in s.rejections] == ["launch_rocket", "deliver_communication_plan"]
    assert "unknown step" in s.rejections[0].reason
    assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING
    rejected = await st.sink.wait_for(lambda m: "alice@support.example" in str(m["To"])
                                      and "launch_rocket" in m.get_body(("plain",)).get_content(), timeout=10)
    assert rejected
    # The signal route accepts a valid step exactly like the Update.
    await h.signal("complete_step", {"step": "schedule_kickoff", "by": "tl-alice",
                                     "payload": {"meeting_at": "2030-01-10T10:00:00+01:00"}})
    for _ in range(50):
        s = await st.status("acme")
        if s.step("schedule_kickoff").status == "done":  # type: ignore[union-attr]
            break
    assert s.step("schedule_kickoff").status == "done"  # type: ignore[union-attr]


async def test_add_sixteenth_contact_needs_fee_c4(st: Stack) -> None:
    h = await started(st)  # 2 on the subscription + 2 enrolled = 4
    for i in range(11):
        await h.execute_update("add_contact", {"by": "ops", "contact": {"name": f"N{i}", "email": f"n{i}@x.example"}},
                               result_type=ProgramStatus)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await h.execute_update("add_contact", {"by": "ops", "contact": {"name": "P", "email": "p@x.example"}},
                               result_type=ProgramStatus)
    assert "C4" in str(err.value.cause) and "16 contacts" in str(err.value.cause)
    s = await h.execute_update("add_contact", {"by": "ops", "contact": {"name": "P", "email": "p@x.example"},
                                               "accept_extra_contact_fee": True, "agreement_ref": "AGR-9"},
                               result_type=ProgramStatus)
    assert [x.rule for x in s.extras] == ["C4"]
