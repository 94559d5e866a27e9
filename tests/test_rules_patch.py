"""The rule checks proved in tests/test_rules_programme.py changed ProgramWorkflow's commands, so they ship
behind `workflow.patched` (workflows/program.py):

- PATCH_BILL_ADDITIONAL_SYSTEMS: at enrolment, one `record_billable_extra` per additional system (C1);
- PATCH_STEP_RULE_CHECKS: the `complete_step` signal route checks A2, A7, C11 and C3 on the payload
  (a refusal mails instead of filing). Update validators need no guard: they never run on replay.

A run started before the change (simulated: `workflow.patched` answers False for these two, as the
code before them had no call at all) must replay on today's code, and would not without the guard;
a run started today takes the new path, and its history refuses the old code (no rollback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from temporalio import workflow
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from domain.program import ProgramStatus
from domain.step_inputs import A2_AGENDA
from tests.harness import Stack, add_subscription, enrolment, eventually
from worker import workflow_runner
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import (
    PATCH_BILL_ADDITIONAL_SYSTEMS,
    PATCH_OVERRIDE_NEEDS_REASON,
    PATCH_STEP_RULE_CHECKS,
    ProgramWorkflow,
)

PARIS = ZoneInfo("Europe/Paris")
MINE = (PATCH_BILL_ADDITIONAL_SYSTEMS, PATCH_STEP_RULE_CHECKS)
T = TypeVar("T")


Force = Callable[..., None]


@pytest.fixture
def force() -> Iterator[Force]:
    """`force(False)`: the code before these patches; `force(True, PATCH)`: that change without its
    guard; `force(None)`: today's code. Other patches keep their real answer."""
    real = workflow.patched
    mp = pytest.MonkeyPatch()

    def set_to(value: bool | None, *only: str) -> None:
        forced = set(only or MINE)
        if value is None:
            mp.setattr(workflow, "patched", real)
        else:
            mp.setattr(workflow, "patched", lambda pid: value if pid in forced else real(pid))

    yield set_to
    mp.undo()


def markers(events: Sequence[HistoryEvent]) -> set[str]:
    return {pid for e in events if e.HasField("marker_recorded_event_attributes") for pid in MINE
            if pid.encode() in e.marker_recorded_event_attributes.SerializeToString()}


def activities(events: Sequence[HistoryEvent]) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
            if e.HasField("activity_task_scheduled_event_attributes")]


async def outcome(st: Stack) -> tuple[int, list[str], list[str]]:
    """(inventory version, rules of the billable extras, reasons of the refused signals)."""
    s = await st.status("acme")
    return s.inventory_version, [x.rule for x in s.extras], [r.reason for r in s.rejections]


async def replay(history: WorkflowHistory) -> None:
    await Replayer(workflows=[ProgramWorkflow, MonthlyCycleWorkflow], data_converter=DATA_CONVERTER,
                   workflow_runner=workflow_runner()).replay_workflow(history)


async def run_the_scenario(st: Stack) -> WorkflowHandle[Any, Any]:
    """An additional system agreed at enrolment (C1); the kickoff held; then, by signal, a site
    inventory without a web server (A7) and an optional coverage with a blank agreement (C6, C3)."""
    today = (await st.now()).astimezone(PARIS).date()
    await add_subscription(st.sessions, "acme", today - timedelta(days=30), today + timedelta(days=800))
    h = await st.start(enrolment("acme", today, additional_systems=["DR cluster"],
                                 additional_systems_agreement_ref="AGR-DR-1"))
    await st.wait_enrolled("acme")
    held_on = today + timedelta(days=3)
    for name, payload in (
        ("schedule_kickoff", {"meeting_at": datetime.combine(held_on, time(10), PARIS).isoformat()}),
        ("complete_kickoff", {"held_on": held_on.isoformat(), "attendees": ["Alice"], "minutes": "Held.",
                              "agenda_covered": list(A2_AGENDA)}),
    ):
        await h.execute_update(name, {"by": "tl-alice", **payload}, result_type=ProgramStatus)
    inventory = {"servers": [{"hostname": "cs-fe-01", "os_name": "Windows Server", "os_version": "2022"}],
                 "ot_product": {"name": "Content Server", "version": "24.4"},
                 "database_servers": [{"engine": "SQL Server", "version": "2022"}],
                 "external_file_stores": ["nas01"], "network_protocols": ["HTTPS"],
                 "security": {"tls_min_version": "1.2"}}
    await h.signal("complete_step", {"step": "submit_site_inventory", "by": "tl-alice",
                                     "payload": {"inventory": inventory}})
    await h.signal("complete_step", {"step": "record_billable_extra", "by": "ops-olga", "payload": {
        "kind": "optional_coverage", "description": "weekend cover", "agreement_ref": "  "}})
    return h


@pytest.mark.rule("A7", "C3", "C1")
async def test_a_run_started_before_the_rule_checks_replays_on_the_old_path(
    st: Stack, force: Force
) -> None:
    force(False)  # the code before the change
    h = await run_the_scenario(st)
    seen = await eventually(lambda: outcome(st), lambda x: x[0] == 1 and len(x[1]) == 1,
                            "the old code accepts both signals")
    assert seen == (1, ["C6"], []), "old code: no checks, no C1 extra"
    history = await h.fetch_history()
    assert markers(history.events) == set()
    assert activities(history.events).count("record_billable_extra") == 1  # the C6 one

    force(None)
    await replay(history)  # today's code replays it on the old path
    for patch in MINE:  # without either guard it would not
        force(True, patch)
        with pytest.raises(workflow.NondeterminismError):
            await replay(history)


@pytest.mark.rule("A7", "C3", "C1")
async def test_a_new_run_takes_the_new_path_and_refuses_the_old_code(
    st: Stack, force: Force
) -> None:
    h = await run_the_scenario(st)
    version, extras, reasons = await eventually(lambda: outcome(st), lambda x: len(x[2]) == 2,
                                                "both signals refused")
    assert "rule A7" in reasons[0] and "web server" in reasons[0], reasons
    assert "rule C3" in reasons[1] and "rule C6" in reasons[1], reasons
    assert version == 0 and extras == ["C1"]
    history = await h.fetch_history()
    assert markers(history.events) == set(MINE)
    assert activities(history.events).count("record_billable_extra") == 1  # the C1 one

    await replay(history)
    force(False)  # rolling the change back would break this run
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)


OVERRIDE = {"kind": "optional_coverage", "description": "weekend cover", "agreement_ref": "AGR-7",
            "amount": {"amount": "900.00", "currency": "EUR"}}  # an amount, and no override_reason


async def started(st: Stack, customer: str) -> WorkflowHandle[Any, Any]:
    today = (await st.now()).astimezone(PARIS).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=30), today + timedelta(days=800))
    h = await st.start(enrolment(customer, today))
    await st.wait_enrolled(customer)
    return h


@pytest.mark.rule("C3")
async def test_an_override_without_its_reason_sent_by_signal_before_the_check_replays(
    st: Stack, force: Force
) -> None:
    # PATCH_OVERRIDE_NEEDS_REASON: before the C3 override check, a signal's amount needed no reason.
    force(False, PATCH_OVERRIDE_NEEDS_REASON)
    h = await started(st, "acme")
    await h.signal("complete_step", {"step": "record_billable_extra", "by": "ops-olga", "payload": OVERRIDE})
    await eventually(lambda: outcome(st), lambda x: x[1] == ["C6"], "the old code accepts the override")
    history = await h.fetch_history()
    force(None)
    await replay(history)  # today's code replays it: the check stays off for that signal
    force(True, PATCH_OVERRIDE_NEEDS_REASON)  # the check without its guard would not
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)

    force(None)  # a run of today's code refuses the same signal, kept and mailed, nothing billed
    h2 = await started(st, "initech")
    await h2.signal("complete_step", {"step": "record_billable_extra", "by": "ops-olga", "payload": OVERRIDE})
    s = await eventually(lambda: st.status("initech"), lambda x: len(x.rejections) == 1, "the signal refused")
    assert "override_reason" in s.rejections[0].reason and s.extras == [], s.rejections
    await replay(await h2.fetch_history())
