"""Where the tests' time comes from, and how a test knows a workflow has done everything due.

The seam: TECHCONNECT_TEST_NOW
------------------------------
Tests that run on the time-skipping Temporal server take every date from the server's "now"
(`Stack.now()`), never from a literal date nor from the machine's calendar. To show that they
do, and to try any date without waiting for it, set

    TECHCONNECT_TEST_NOW=2031-01-15              # 00:00 UTC that day
    TECHCONNECT_TEST_NOW=2027-06-15T14:00:00+02:00

and every time-skipping server these tests start through `start_time_skipping` below first moves
its clock to that instant, before anything runs on it. A time-skipping server only moves forward:
an instant earlier than the real clock is refused with an error (not ignored), since the run would
not be what was asked. Unset (the default), the server starts at the real time.

    TECHCONNECT_TEST_NOW=2031-01-15 .venv/bin/pytest tests/test_support_request.py -q

Tests on the Temporal dev server (tests/test_cli_dev_server.py, tests/test_request_cli.py) run on
the machine's clock, which this seam cannot move: they compute their dates from that clock, in
the programme's time zone.

`settled`
---------
"Nothing happened yet" is proven, not hoped for: `settled(handle, env)` waits until the
workflow's history shows nothing in flight (no workflow task to run, no activity running, no
accepted Update unfinished, no child or signal being started, no timer due by the server's now)
and returns the timers it still waits on. A mail that was due has then been sent (a mail activity completes only after
the SMTP server accepted the message), so a mail absent at that point was never due.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

TEST_NOW = "TECHCONNECT_TEST_NOW"


def today_in(timezone: str = "Europe/Paris") -> date:
    """Today on the machine's clock in a programme's time zone (the dev server's clock), not the
    machine's local calendar: near midnight UTC, Paris is already on the next day."""
    return datetime.now(ZoneInfo(timezone)).date()


def requested_now(value: str | None = None) -> datetime | None:
    """The instant TECHCONNECT_TEST_NOW asks for (`value` instead of the environment when given),
    or None. A date alone is 00:00 UTC; a date-time without an offset is UTC."""
    text = os.environ.get(TEST_NOW, "") if value is None else value
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{TEST_NOW}={text!r} is neither a date (YYYY-MM-DD) nor an ISO date-time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def move_to_requested_now(env: WorkflowEnvironment) -> datetime:
    """Move a time-skipping server's clock to TECHCONNECT_TEST_NOW (when set); its now after.
    Calling it again on a server already moved there does nothing."""
    now = await env.get_current_time()
    target = requested_now()
    if target is None:
        return now
    if target < datetime.now(UTC) - timedelta(seconds=1):
        raise RuntimeError(f"{TEST_NOW}={target.isoformat()} is before the real clock: "
                           "a time-skipping server starts at the real time and only moves forward")
    if target > now:
        await env.sleep(target - now)
    moved = await env.get_current_time()
    assert moved >= target, f"asked the server to move to {target}, it is at {moved}"
    return moved


async def start_time_skipping(converter: DataConverter | None = None) -> WorkflowEnvironment:
    """testing.servers.start_time_skipping, then the clock moved to TECHCONNECT_TEST_NOW."""
    from testing.servers import start_time_skipping as start

    env = await start(converter)
    try:
        await move_to_requested_now(env)
    except BaseException:
        await env.shutdown()
        raise
    return env


# ------------------------------------------------------------------------------ settled
# Events a workflow task's completion writes (its commands and accepted Updates). Anything else
# after the last completed workflow task (a timer fired, an activity finished, a signal, an
# Update admitted, a child started, a workflow task scheduled or started) means a workflow task
# is due or running.
_COMMAND_EVENTS = frozenset({
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_CANCELED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
    EventType.EVENT_TYPE_MARKER_RECORDED,
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
})
_CLOSED = frozenset({
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
})
_ACTIVITY_CLOSED = frozenset({
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
})


@dataclass
class Settled:
    events: int  # the history's length once nothing was in flight
    timers: list[datetime]  # when each timer the workflow still waits on fires (UTC), earliest first
    closed: bool


def _when(e: HistoryEvent) -> datetime:
    return e.event_time.ToDatetime(tzinfo=UTC)


def busy_with(events: list[HistoryEvent], now: datetime) -> tuple[list[str], list[datetime]]:
    """What in `events` is still in flight at `now` (empty when nothing), and the open timers."""
    if events and events[-1].event_type in _CLOSED:
        return [], []
    busy: list[str] = []
    completed = [i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    if not completed:
        busy.append("no workflow task completed yet")
    else:
        pending = [EventType.Name(e.event_type) for e in events[completed[-1] + 1:]
                   if e.event_type not in _COMMAND_EVENTS]
        if pending:
            busy.append(f"a workflow task is due after {', '.join(pending)}")
    timers: dict[str, datetime] = {}
    activities: dict[int, str] = {}
    starting: set[int] = set()
    updates: set[str] = set()  # accepted, handler still running (by update ID: the time-skipping
    # server leaves the completed event's accepted_event_id at 0)
    for e in events:
        t = e.event_type
        if t == EventType.EVENT_TYPE_TIMER_STARTED:
            a = e.timer_started_event_attributes
            timers[a.timer_id] = _when(e) + a.start_to_fire_timeout.ToTimedelta()
        elif t == EventType.EVENT_TYPE_TIMER_FIRED:
            timers.pop(e.timer_fired_event_attributes.timer_id, None)
        elif t == EventType.EVENT_TYPE_TIMER_CANCELED:
            timers.pop(e.timer_canceled_event_attributes.timer_id, None)
        elif t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif t in _ACTIVITY_CLOSED:
            attrs: Any = {
                EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: e.activity_task_completed_event_attributes,
                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: e.activity_task_failed_event_attributes,
                EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: e.activity_task_timed_out_event_attributes,
                EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: e.activity_task_canceled_event_attributes,
            }[t]
            activities.pop(attrs.scheduled_event_id, None)
        elif t in (EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
                   EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED):
            starting.add(e.event_id)
        elif t == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            starting.discard(e.child_workflow_execution_started_event_attributes.initiated_event_id)
        elif t == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
            starting.discard(e.start_child_workflow_execution_failed_event_attributes.initiated_event_id)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            updates.add(e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id)
        elif t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            updates.discard(e.workflow_execution_update_completed_event_attributes.meta.update_id)
        elif t == EventType.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
            starting.discard(e.external_workflow_execution_signaled_event_attributes.initiated_event_id)
        elif t == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
            starting.discard(e.signal_external_workflow_execution_failed_event_attributes.initiated_event_id)
    if activities:
        busy.append(f"activities running: {sorted(activities.values())}")
    if updates:
        busy.append(f"{len(updates)} accepted Update(s) not completed")
    if starting:
        busy.append(f"{len(starting)} child workflow start(s) or signal(s) in flight")
    due = sorted(at for at in timers.values() if at <= now)
    if due:
        busy.append(f"timer(s) due at {[d.isoformat() for d in due]} not fired yet (server now {now.isoformat()})")
    return busy, sorted(timers.values())


async def settled(handle: WorkflowHandle[Any, Any], env: WorkflowEnvironment,
                  timeout: float = 30) -> Settled:  # noqa: ASYNC109 (a polling deadline with a message)
    """Wait until `handle`'s workflow has handled everything due by the server's now (see the
    module docstring); fails after `timeout` seconds saying what was still in flight."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        now = await env.get_current_time()
        events = [e async for e in handle.fetch_history_events()]
        busy, timers = busy_with(events, now)
        if not busy:
            closed = bool(events) and events[-1].event_type in _CLOSED
            return Settled(events=len(events), timers=timers, closed=closed)
        if loop.time() > deadline:
            raise AssertionError(f"{handle.id} still busy after {timeout}s: {'; '.join(busy)}")
        await asyncio.sleep(0.05)
