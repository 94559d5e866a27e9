"""Issue 16: the enrolment's and a request opening's short calls as local activities (docs/local-activities.md).

A new programme checks its enrolment, plans its period, schedules its default due dates and registers its
workspace in its first workflow task (local activity markers, no activity task); a new request records
itself there too and upserts no search attribute its starter already set. Each history replays on today's
code and refuses the code from before the change (`workflow.patched` forced off: a rollback); histories
recorded before the change replay on the old path (tests/test_replay.py, tests/test_patching.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Replayer

from domain.naming import SA_CUSTOMER_ID, request_workflow_id
from domain.request import RequestInput, RequestResult, RequestState
from storage import repositories as repo
from tests.harness import Stack, add_subscription, enrolment
from tests.request_fixtures import file, live_programme, new_request
from tests.test_program_refusals import history_len
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import (
    PATCH_ENROL_LOCALLY,
    PATCH_ENROL_MAILS_AT_ONCE,
    PATCH_PREPARE_IN_ONE_CALL,
    PATCH_WELCOME_IN_ONE_ACTIVITY,
    ProgramWorkflow,
)
from workflows.request_base import PATCH_OPEN_LOCALLY
from workflows.support_request import SupportRequestWorkflow

with workflow.unsafe.imports_passed_through():
    from config.temporal import DATA_CONVERTER
    from worker import workflow_runner

E = EventType
# Since PATCH_PREPARE_IN_ONE_CALL the check, the plan and the default due dates are one call (prepare_enrolment).
ENROLMENT_LOCAL = ["prepare_enrolment", "register_programme"]


@pytest.fixture
def old_code(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`old_code()`: the code before the change (a rollback): this change's guards answer False, others as
    recorded."""
    real, mine = workflow.patched, {PATCH_ENROL_LOCALLY, PATCH_OPEN_LOCALLY}
    yield lambda: monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id not in mine and real(patch_id))


def local_activities(events: list[HistoryEvent]) -> list[tuple[str, int]]:
    """Each local activity's type and the workflow task that recorded its marker, in history order."""
    out = []
    for e in events:
        if e.event_type == E.EVENT_TYPE_MARKER_RECORDED and e.marker_recorded_event_attributes.marker_name == (
                "core_local_activity"):
            m = e.marker_recorded_event_attributes
            data = json.loads(m.details["data"].payloads[0].data)
            out.append((data["activity_type"], m.workflow_task_completed_event_id))
    return out


def scheduled(events: list[HistoryEvent]) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
            if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


def in_first_task(locals_: list[tuple[str, int]], events: list[HistoryEvent]) -> list[str]:
    """The types of the local activities, checked to be recorded by the run's first workflow task (its
    completed event, as the dev server names it; the time-skipping server names its started event)."""
    first = first_task(events)
    assert {task for _, task in locals_} <= first, (locals_, first)
    return [name for name, _ in locals_]


def first_task(events: list[HistoryEvent]) -> set[int]:
    """The event ids that stand for the run's first workflow task in commands' `workflow_task_completed_event_id`
    (its completed event on the dev server, its started event on the time-skipping server)."""
    return {next(e.event_id for e in events if e.event_type == t) for t in (
        E.EVENT_TYPE_WORKFLOW_TASK_STARTED, E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)}


def billed_upserts(events: list[HistoryEvent]) -> int:
    """Search-attribute upserts other than `workflow.patched`'s own TemporalChangeVersion."""
    return sum(1 for e in events if e.event_type == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES and set(
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        - {"TemporalChangeVersion"})


async def replay(history: WorkflowHistory) -> None:
    await Replayer(workflows=[ProgramWorkflow, MonthlyCycleWorkflow, SupportRequestWorkflow],
                   data_converter=DATA_CONVERTER, workflow_runner=workflow_runner()).replay_workflow(history)


async def enrol_ahead(st: Stack, customer: str) -> WorkflowHistory:
    """A programme whose period starts in a month (nothing falls due at enrolment: no cycle, whatever the hour),
    enrolled; its history once the run is idle."""
    start = (await st.now()).date() + timedelta(days=30)
    await add_subscription(st.sessions, customer, start - timedelta(days=1), start + timedelta(days=800))
    handle = await st.start(enrolment(customer, start))
    await st.wait_enrolled(customer)
    await history_len(handle)
    return await handle.fetch_history()


async def test_a_new_programme_enrols_in_its_first_workflow_task(st: Stack, old_code: Any) -> None:
    history = await enrol_ahead(st, "local")
    events = list(history.events)
    async with st.sessions() as session:
        row = await repo.get_programme(session, "local")
        audit = await repo.list_audit(session, "local")

    # Check, plan and due dates (one call), then the workspace: local, in the run's first workflow task, in that order.
    assert in_first_task(local_activities(events), events) == ENROLMENT_LOCAL
    acts = scheduled(events)
    assert not set(ENROLMENT_LOCAL) & set(acts), acts
    # Since PATCH_ENROL_MAILS_AT_ONCE the registration wrote the start (workspace, audit entry): no save before
    # the welcome, which that same first task schedules; none after it either (nothing changed). Since
    # PATCH_WELCOME_IN_ONE_ACTIVITY the welcome document and both mails are one activity, whose one result wakes
    # the run once (the test's own status queries may add empty workflow tasks: the server answers a query that
    # meets a task in flight with a task of its own).
    assert acts == ["send_welcome"], acts
    by_task = {e.activity_task_scheduled_event_attributes.workflow_task_completed_event_id for e in events
               if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    assert len(by_task) == 1 and by_task <= first_task(events), (by_task, first_task(events))
    async with st.sessions() as session:
        documents = await repo.list_documents(session, "local")
        outbox = await repo.list_outbox(session, customer_id="local")
    assert [d.kind for d in documents] == ["welcome"]
    assert sorted((r.template, r.status) for r in outbox) == [("tl_assignment", "sent"), ("welcome", "sent")]
    assert row is not None and row.status["workspace_id"] == "ws-local" and row.phase == "onboarding"
    assert [a.action for a in audit].count("programme_started") == 1

    await replay(history)  # today's code replays its own history
    old_code()  # the code from before the change cannot
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)


@pytest.mark.parametrize("rolled_back", [PATCH_PREPARE_IN_ONE_CALL, PATCH_ENROL_MAILS_AT_ONCE,
                                         PATCH_WELCOME_IN_ONE_ACTIVITY])
async def test_without_either_enrolment_guard_a_new_enrolment_breaks(
        st: Stack, monkeypatch: pytest.MonkeyPatch, rolled_back: str) -> None:
    """A rollback of one patch alone (the release before it): the three calls come back where the new history
    has `prepare_enrolment`; the save before the welcome document where it has the welcome; the document and both
    mails as three activities where it has one."""
    history = await enrol_ahead(st, "atonce")
    await replay(history)
    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id != rolled_back and real(patch_id))
    # Without `prepare_enrolment` the old code fails on the second marker's result, which is not its plan (core
    # hands local-activity results back by their order); without the mails at once, on its save's command.
    with pytest.raises((workflow.NondeterminismError, RuntimeError), match=r"Nondeterminism|decoding"):
        await replay(history)


async def test_a_new_request_opens_in_its_first_workflow_task(st: Stack, old_code: Any) -> None:
    await live_programme(st, "localrq")
    number, handle = await file(st, "localrq")
    await history_len(handle)
    history = await handle.fetch_history()
    events = list(history.events)
    async with st.sessions() as session:
        row = await repo.get_request(session, number)
        outbox = await repo.list_outbox(session, customer_id="localrq")

    # The C12 deadline and the request's row, both local, in the first workflow task; then only the mail.
    assert in_first_task(local_activities(events), events) == ["business_deadline", "record_request_opened"]
    assert scheduled(events) == ["send_mail"]
    # The starter set every search attribute (open, not breached): the opening changes none, upserts none.
    assert billed_upserts(events) == 0
    assert row is not None and row.state == "open"
    assert [r.template for r in outbox if r.template == "request_opened"] == ["request_opened"]

    await replay(history)
    old_code()
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)


async def test_a_refused_customisation_is_one_local_write(st: Stack, old_code: Any) -> None:
    """Rule C13 without the starter's precheck: the row and its closing status change (A4) in one local write."""
    prog = await live_programme(st, "localref")
    number = "TC-LOCALREF-2099-0001"
    handle = await st.client.start_workflow(
        "SupportRequestWorkflow",
        RequestInput(tracking_number=number, request=new_request("localref", customisation=True),
                     customer_name=prog.customer_name, period=1, calendar=prog.calendar,
                     technical_lead=prog.technical_lead, contacts=prog.contacts, policy=st.policy,
                     opened_at=await st.now()),
        id=request_workflow_id(number), task_queue=st.task_queue,
        search_attributes=TypedSearchAttributes([SearchAttributePair(SA_CUSTOMER_ID, "localref")]))
    result = RequestResult.model_validate(await handle.result())
    assert result.state == RequestState.closed and result.refusal and result.refusal.startswith("rule C13")
    history = await handle.fetch_history()
    events = list(history.events)
    async with st.sessions() as session:
        row = await repo.get_request(session, number)
        changes = await repo.list_status_changes(session, number)

    assert in_first_task(local_activities(events), events) == ["record_request_opened"]
    assert scheduled(events) == []
    assert row is not None and row.state == "closed"
    assert [(c.from_state, c.to_state) for c in changes] == [(None, "closed")]

    await replay(history)
    old_code()
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)

