"""What the support-request tests share (tests/test_support_request.py and the tests of request opening, local
times, local activities, the portal's audit and the saved histories): a live programme to file against, a
request filed through the service's own entry point, Updates and queries, and the checks that nothing is sent
before its time."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle
from temporalio.common import TypedSearchAttributes

from domain.naming import request_workflow_id
from domain.program import ProgramStatus
from domain.request import (
    NewRequest,
    RequestState,
    RequestStatus,
)
from starter.requests import open_request
from storage import repositories as repo
from tests.clock import settled
from tests.harness import Stack, add_subscription, enrolment

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
# ------------------------------------------------------------------------------ helpers
async def today(st: Stack, tz: ZoneInfo = PARIS) -> date:
    """The server's date in `tz` (the programme's time zone), never the machine's."""
    return (await st.now()).astimezone(tz).date()


async def live_programme(st: Stack, customer: str = "acme", *, tz: ZoneInfo = PARIS, country: str = "FR",
                         out_of_hours: str | None = None) -> ProgramStatus:
    """A programme whose period starts today (simulated) and a subscription covering it (E1)."""
    start = await today(st, tz)
    await add_subscription(st.sessions, customer, start - timedelta(days=30), start + timedelta(days=800))
    await st.start(enrolment(customer, start, calendar={
        "timezone": str(tz), "country": country, "out_of_hours_agreement_ref": out_of_hours}))
    return await st.wait_enrolled(customer)


def new_request(customer: str = "acme", **overrides: Any) -> NewRequest:
    data: dict[str, Any] = {"customer_id": customer, "kind": "support", "priority": "high",
                            "summary": "Search returns no results since the patch", "filed_by": "carol"}
    data.update(overrides)
    return NewRequest.model_validate(data)


async def file(st: Stack, customer: str = "acme", at: datetime | None = None,
               **overrides: Any) -> tuple[str, WorkflowHandle[Any, Any]]:
    """File a request the way the CLI does, at `at` (the simulated instant just slept to) or
    now; wait until its clock is set."""
    settings = st.settings.model_copy(update={"task_queue": st.task_queue})
    if at is not None:
        await st.sleep_until(at)
    number = await open_request(st.client, settings, new_request(customer, **overrides), now=at or await st.now(),
                                sessions=st.sessions)
    h = st.client.get_workflow_handle(request_workflow_id(number))
    for _ in range(200):
        s = await status(h)
        if s.first_response_deadline is not None or s.state == RequestState.closed:
            return number, h
        await asyncio.sleep(0.05)
    raise AssertionError(f"{number} never computed its deadline")


async def status(h: WorkflowHandle[Any, Any]) -> RequestStatus:
    result: RequestStatus = await h.query("get_status", result_type=RequestStatus)
    return result


async def update(h: WorkflowHandle[Any, Any], name: str, **payload: Any) -> RequestStatus:
    result: RequestStatus = await h.execute_update(name, payload, result_type=RequestStatus)
    return result


def at_local(d: date, hh: int, mm: int, tz: ZoneInfo = PARIS) -> datetime:
    return datetime.combine(d, time(hh, mm), tz).astimezone(UTC)


async def assert_quiet_until(st: Stack, h: WorkflowHandle[Any, Any], at: datetime, *, next_timer: datetime | None,
                            absent: tuple[str, ...] = ("First response due",)) -> None:
    """Move the server to `at`, wait until the request has handled everything due by then
    (tests/clock.py: nothing in flight, no timer due) and prove that no mail of `absent` went out:
    the one thing the request still waits for is its timer at `next_timer` (None: no timer)."""
    await st.sleep_until(at)
    quiet = await settled(h, st.env)
    # A timer fires at its start event's time plus its duration: within a second of the instant
    # the workflow asked for (the event is written a few milliseconds after the workflow's now).
    expected = [next_timer] if next_timer else []
    assert len(quiet.timers) == len(expected) and all(
        abs(t - e) < timedelta(seconds=1) for t, e in zip(quiet.timers, expected, strict=True)), (
        f"at {at.isoformat()} the request waits for timers at {[t.isoformat() for t in quiet.timers]}, "
        f"expected {[e.isoformat() for e in expected]}")
    for needle in absent:
        assert not st.mails(needle), f"{needle!r} mail by {at.isoformat()}: {subjects(st)}"


def scenario(now: datetime, filed_at: datetime, s: RequestStatus, tz: ZoneInfo) -> str:
    """How a calendar scenario placed itself, for the run's figures (it depends on the server's now)."""
    assert s.first_response_deadline is not None
    return (f"{now:%Y-%m-%d %H:%M} UTC: filed {filed_at.astimezone(tz):%a %Y-%m-%d %H:%M %z}, "
            f"due {s.first_response_deadline.astimezone(tz):%a %Y-%m-%d %H:%M %z}")


def subjects(st: Stack) -> list[str]:
    return [str(m["Subject"]) for m in st.sink.messages]


def sent_to(st: Stack, needle: str, address: str) -> list[EmailMessage]:
    return [m for m in st.mails(needle) if address in str(m["To"])]


async def sla_kinds(st: Stack, number: str, h: WorkflowHandle[Any, Any]) -> list[str]:
    """The request's SLA events as stored, once it has handled everything due (they are written by an
    activity after the state the Update or query shows)."""
    await settled(h, st.env)
    async with st.sessions() as s:
        return [e.kind for e in await repo.list_sla_events(s, tracking_number=number)]


async def search_attributes(h: WorkflowHandle[Any, Any]) -> TypedSearchAttributes:
    return (await h.describe()).typed_search_attributes
