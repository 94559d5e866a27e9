"""A save outside an Update never runs in the middle of one (`save-waits-for-update-in-flight`).

The race, seen once under load in the crash tests: an Update recorded a step (`_dirty`) and awaited an
activity; meanwhile the enrolment's last save cleared `_dirty` and wrote the state of that moment; the Update
then applied its new due dates and, seeing nothing dirty, did not save: the projection kept the old ones
until the next save, and the inbox showed them. Here the race is made certain rather than likely: the Update's
`schedule_deadlines` and the enrolment's last mail are each held until the other side has reached its point,
with the real activities behind them. Today's code waits and saves; the code before the change (its patch
forced off) leaves the projection behind, which shows the scenario is the race; each history replays on
today's code, and the new one refuses the old code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.activities import DeadlineRequest, DeadlineSchedule, MailRequest, MailResult, Welcome, WelcomeSent
from domain.inbox import StepDifference
from domain.program import ProgramStatus
from starter.projection import check_projection
from storage.repositories.open_steps import projected_open_steps
from tests.harness import Stack, add_subscription, enrolment, eventually, stack, wait_idle
from tests.test_program_lifecycle import PARIS
from worker import ActivitySet
from workflows.program import ProgramWorkflow
from workflows.program_base import PATCH_SAVE_WAITS_FOR_UPDATE

with workflow.unsafe.imports_passed_through():
    from config.temporal import DATA_CONVERTER
    from worker import workflow_runner

E = EventType
# The enrolment's last mail (in `send_welcome` since `welcome-in-one-activity`, a `send_mail` of its own before),
# after which its tail saves when anything is dirty.
LAST_ENROLMENT_MAIL = "tl_assignment"


@dataclass
class Holds:
    """The two points the race needs, each an event the other side waits for."""

    update_scheduling: asyncio.Event = field(default_factory=asyncio.Event)  # the Update awaits its due dates
    release_update: asyncio.Event = field(default_factory=asyncio.Event)


def holding(holds: Holds) -> Callable[[ActivitySet], list[object]]:
    """The real activities, with the Update's `schedule_deadlines` and the enrolment's last mail held."""

    def registered(acts: ActivitySet) -> list[object]:
        @activity.defn(name="schedule_deadlines")
        async def schedule_deadlines(req: DeadlineRequest) -> DeadlineSchedule:
            if [i.key for i in req.items] == ["complete_kickoff"]:  # the kickoff's Update, not the enrolment's
                holds.update_scheduling.set()
                await holds.release_update.wait()
            return await acts.calendar.schedule_deadlines(req)

        @activity.defn(name="send_mail")
        async def send_mail(req: MailRequest) -> MailResult:
            if req.template == LAST_ENROLMENT_MAIL:
                await holds.update_scheduling.wait()
            return await acts.mail.send_mail(req)

        @activity.defn(name="send_welcome")
        async def send_welcome(req: Welcome) -> WelcomeSent:
            # Since `welcome-in-one-activity` the enrolment's last mail goes in this one.
            assert LAST_ENROLMENT_MAIL in [m.template for m in req.mails], req.mails
            await holds.update_scheduling.wait()
            return await acts.enrolment.send_welcome(req)

        replaced = (acts.calendar.schedule_deadlines, acts.mail.send_mail, acts.enrolment.send_welcome)
        return [a for a in acts.all() if a not in replaced] + [schedule_deadlines, send_mail, send_welcome]

    return registered


@pytest.fixture
def old_code(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """`old_code()`: the code before the change (its guard answers False, the others as recorded);
    `old_code(False)`: today's code again."""
    real = workflow.patched

    def switch(on: bool = True) -> None:
        monkeypatch.setattr(workflow, "patched", (
            lambda patch_id: patch_id != PATCH_SAVE_WAITS_FOR_UPDATE and real(patch_id)) if on else real)

    return switch


@pytest.fixture
async def held(env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str) -> AsyncIterator[tuple[Stack, Holds]]:
    holds = Holds()
    async with stack(env, sqlite_url, tmp_path, activities=holding(holds)) as st:
        yield st, holds


def completed_after_last_mail(events: list[HistoryEvent]) -> bool:
    """The workflow task that followed the last enrolment mail's completion has completed: the enrolment's tail
    has run as far as it can (saved, or waiting for the Update)."""
    mail = next((e.event_id for e in events if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                 and LAST_ENROLMENT_MAIL.encode() in e.activity_task_scheduled_event_attributes.input.payloads[0].data),
                None)
    done = next((e.event_id for e in events if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                 and e.activity_task_completed_event_attributes.scheduled_event_id == mail), None)
    return done is not None and any(
        e.event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and e.event_id > done for e in events)


async def enrolment_tail_ran(handle: WorkflowHandle[Any, Any], within: float = 60) -> None:
    async def events() -> list[HistoryEvent]:
        return [e async for e in handle.fetch_history_events()]

    await eventually(events, completed_after_last_mail,
                     f"the task after the {LAST_ENROLMENT_MAIL} mail completed", timeout=within,
                     shown=lambda seen: f"last events {[E.Name(e.event_type) for e in seen[-8:]]}")


async def kickoff_during_enrolment_tail(st: Stack, holds: Holds) -> tuple[WorkflowHandle[Any, Any], ProgramStatus]:
    """Schedule the kickoff while the enrolment still mails; return the programme and the Update's answer."""
    # The period starts next week: no due event (the first cycle's start) follows the enrolment, whose save
    # would hide a stale projection by writing the whole state again.
    today = (await st.now()).astimezone(PARIS).date()
    await add_subscription(st.sessions, "acme", today - timedelta(days=1), today + timedelta(days=800))
    handle = await st.start(enrolment("acme", today + timedelta(days=7)))
    await st.wait_enrolled("acme")
    meeting = (await st.now()) + timedelta(days=14)
    update = await handle.start_update("schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting.isoformat()},
                                       wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=ProgramStatus)
    await asyncio.wait_for(holds.update_scheduling.wait(), 60)
    await enrolment_tail_ran(handle)
    holds.release_update.set()
    answer = await update.result()
    await wait_idle(handle)
    return handle, answer


async def differences(st: Stack, handle: WorkflowHandle[Any, Any]) -> list[StepDifference]:
    return (await check_projection(st.client, st.sessions, workflow_ids=[handle.id])).differences


async def projected_due(st: Stack, handle: WorkflowHandle[Any, Any], step: str) -> str | None:
    async with st.sessions() as session:
        rows = (await projected_open_steps(session, [handle.id])).get(handle.id, [])
    due = next((r.due_on for r in rows if r.step == step), None)
    return due.isoformat() if due else None


async def history(handle: WorkflowHandle[Any, Any]) -> WorkflowHistory:
    return await handle.fetch_history()


async def replays(h: WorkflowHistory) -> BaseException | None:
    replayer = Replayer(workflows=[ProgramWorkflow], data_converter=DATA_CONVERTER, workflow_runner=workflow_runner())
    return (await replayer.replay_workflow(h, raise_on_replay_failure=False)).replay_failure


def patch_markers(events: list[HistoryEvent]) -> list[str]:
    """Each patch marker's details (Temporal writes the patch id in them, in clear)."""
    return [p.data.decode() for e in events if e.event_type == E.EVENT_TYPE_MARKER_RECORDED
            and e.marker_recorded_event_attributes.marker_name == "core_patch"
            for d in e.marker_recorded_event_attributes.details.values() for p in d.payloads]


async def test_an_update_in_flight_during_the_enrolments_last_save_still_reaches_the_projection(
        held: tuple[Stack, Holds], old_code: Callable[[bool], None]) -> None:
    st, holds = held
    handle, answer = await kickoff_during_enrolment_tail(st, holds)
    kickoff = answer.step("complete_kickoff")
    assert kickoff is not None and kickoff.due_on is not None
    # The Update's due date (the meeting's day) is what the inbox shows, and nothing else differs.
    assert await projected_due(st, handle, "complete_kickoff") == kickoff.due_on.isoformat()
    assert await differences(st, handle) == []
    new = await history(handle)
    # The enrolment's save met the Update in flight (the race happened, and the patch took the new path).
    assert any(PATCH_SAVE_WAITS_FOR_UPDATE in m for m in patch_markers(list(new.events))), patch_markers(
        list(new.events))
    assert await replays(new) is None
    old_code(True)
    assert await replays(new) is not None  # the old code cannot run this history: the patch guards it


async def test_before_the_change_the_same_race_left_the_projection_behind_and_its_history_still_replays(
        held: tuple[Stack, Holds], old_code: Callable[[bool], None]) -> None:
    st, holds = held
    old_code(True)
    handle, answer = await kickoff_during_enrolment_tail(st, holds)
    kickoff = answer.step("complete_kickoff")
    assert kickoff is not None and kickoff.due_on is not None
    # What the crash test once saw: the workflow has the meeting's day, the projection the default due date.
    assert await projected_due(st, handle, "complete_kickoff") != kickoff.due_on.isoformat()
    assert [d.changed for d in await differences(st, handle)] == [["complete_kickoff"]]
    old = await history(handle)
    assert PATCH_SAVE_WAITS_FOR_UPDATE not in " ".join(patch_markers(list(old.events)))
    # A programme that met the race before the change replays on today's code, on its old path.
    old_code(False)
    assert await replays(old) is None
