"""Two changes of issue 13 changed workflow commands, so they ship behind `workflow.patched`:

- PATCH_REASSIGN_RUNNING_WORK (workflows/program_base.py): a TL reassignment lists the open requests
  and signals them and the running monthly cycles (C7);
- PATCH_ACTIONS_IN_THREAD (workflows/request_base.py): a first response, a pend's question, proposed
  measures and a rejection go into the request's thread (an activity and a mail each, A4).

A run recorded before each change (simulated: `workflow.patched` answers False for it, as the code
before had no call at all) replays on today's code, and would not without the guard; a run recorded
today carries the marker."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from temporalio import workflow
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from domain.naming import program_workflow_id, request_workflow_id
from domain.request import RequestStatus
from tests.harness import Stack
from tests.test_program_timing import first_cycle_running
from tests.test_reassignment import BOB, next_business_ten
from tests.test_rules_patch import Force, activities
from tests.test_rules_programme import begin, file_request, upd
from worker import workflow_runner
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import ProgramWorkflow
from workflows.program_base import PATCH_REASSIGN_RUNNING_WORK
from workflows.request_base import PATCH_ACTIONS_IN_THREAD
from workflows.support_request import SupportRequestWorkflow


def marked(events: Sequence[HistoryEvent], patch: str) -> bool:
    return any(e.HasField("marker_recorded_event_attributes")
               and patch.encode() in e.marker_recorded_event_attributes.SerializeToString() for e in events)


def signals_sent(events: Sequence[HistoryEvent]) -> int:
    return sum(1 for e in events if e.HasField("signal_external_workflow_execution_initiated_event_attributes"))


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Force:
    """`guard(False, PATCH)`: the code before that patch; `guard(True, PATCH)`: the change without its
    guard; `guard(None)`: today's code. Other patches keep their real answer."""
    real = workflow.patched

    def set_to(value: bool | None, *only: str) -> None:
        answer = real if value is None else (lambda pid: value if pid in only else real(pid))
        monkeypatch.setattr(workflow, "patched", answer)
    return set_to


async def replay(history: WorkflowHistory) -> None:
    await Replayer(workflows=[ProgramWorkflow, MonthlyCycleWorkflow, SupportRequestWorkflow],
                   data_converter=DATA_CONVERTER, workflow_runner=workflow_runner()).replay_workflow(history)


async def old_and_new(guard: Force, patch: str, history: WorkflowHistory) -> None:
    guard(None)
    await replay(history)  # today's code replays the old run on the old path
    guard(True, patch)  # without the guard it would not
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)
    guard(None)


@pytest.mark.rule("C7")
async def test_a_reassignment_recorded_before_the_hand_over_replays_without_it(st: Stack, guard: Force) -> None:
    guard(False, PATCH_REASSIGN_RUNNING_WORK)
    await first_cycle_running(st, "acme")
    await file_request(st, next_business_ten(await st.now()), "high")
    h = st.client.get_workflow_handle(program_workflow_id("acme"))
    await upd(h, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": BOB, "reason": "rota"})
    history = await h.fetch_history()
    assert signals_sent(history.events) == 0 and "list_open_requests" not in activities(history.events)
    await old_and_new(guard, PATCH_REASSIGN_RUNNING_WORK, history)


@pytest.mark.rule("C7")
async def test_a_reassignment_today_carries_the_marker_and_the_signals(st: Stack) -> None:
    await first_cycle_running(st, "acme")
    await file_request(st, next_business_ten(await st.now()), "high")
    h = st.client.get_workflow_handle(program_workflow_id("acme"))
    await upd(h, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": BOB, "reason": "rota"})
    history = await h.fetch_history()
    assert marked(history.events, PATCH_REASSIGN_RUNNING_WORK)
    assert signals_sent(history.events) == 2  # the running cycle and the open request


@pytest.mark.rule("A4")
async def test_a_request_that_answered_before_the_thread_replays_without_its_messages(
    st: Stack, guard: Force
) -> None:
    guard(False, PATCH_ACTIONS_IN_THREAD)
    await begin(st)
    number, _ = await file_request(st, next_business_ten(await st.now()), "high")
    h = st.client.get_workflow_handle(request_workflow_id(number))
    for name, payload in (("respond", {"message": "On it"}), ("pend", {"reason": "Which build?"}),
                          ("propose_resolution", {"measures": "Patch 23.4.1"}),
                          ("reject_resolution", {"reason": "Still broken"})):
        s = await h.execute_update(name, {"by": "tl-alice", **payload}, result_type=RequestStatus)
    assert s.messages == []
    history = await h.fetch_history()
    assert "record_message" not in activities(history.events)
    await old_and_new(guard, PATCH_ACTIONS_IN_THREAD, history)

    # Today's code on a new request: the marker, and one message per action.
    number, _ = await file_request(st, next_business_ten(await st.now()), "low")
    h = st.client.get_workflow_handle(request_workflow_id(number))
    s = await h.execute_update("respond", {"by": "tl-alice", "message": "On it"}, result_type=RequestStatus)
    assert [(m.by, m.role.value, m.text) for m in s.messages] == [("tl-alice", "technical_lead", "On it")]
    assert marked((await h.fetch_history()).events, PATCH_ACTIONS_IN_THREAD)
