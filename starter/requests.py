"""Support requests for every face: open one (rules A4, C12, C13, E1), query it, take it through its Updates.

`open_request` checks the customer has a live TechConnect programme, refuses a
customisation without an agreement (C13) before anything starts, allocates the
tracking number in the database (A4) and starts `SupportRequestWorkflow`. Refusals
are the domain family (domain/errors.py) naming the rule; faces turn them into exit code 2,
a form error or a 409.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCStatusCode

from config.settings import Settings
from domain.errors import NotFound, Refused, RuleRefused
from domain.naming import (
    SA_CUSTOMER_ID,
    SA_REQUEST_STATE,
    SA_SLA_BREACHED,
    SA_TECHNICAL_LEAD,
    program_workflow_id,
    request_workflow_id,
)
from domain.program import ProgramStatus
from domain.refusal import violation
from domain.request import TRACKING_RE, NewRequest, RequestInput, RequestState, RequestStatus
from domain.rules_program import NOT_LIVE_PHASES
from domain.rules_request import check_customisation as customisation_violations
from starter.database import database
from starter.errors import temporal_refusals

if TYPE_CHECKING:  # SQLAlchemy is imported only when a number is allocated: the CLI starts fast.
    from storage.db import SessionFactory


def check_customisation(new: NewRequest) -> None:
    """Rule C13, refused before anything starts."""
    if violations := customisation_violations(new):
        raise RuleRefused(violations)


async def live_programme(client: Client, customer_id: str, sessions: SessionFactory) -> ProgramStatus:
    """The customer's running programme, or RuleRefused (E1/C12) naming why there is none.

    Temporal says whether the programme's run is open (`describe`, answered by the server alone). Its state comes
    from the projection when that says the programme is live: the workflow saves it before each Update returns
    and after each change, and it costs no activation of the programme's run (a `get_status` query for every
    request was a tenth of the worker's time while requests opened). A projection that is missing or says the
    programme is not live (a write lost, a closed period's row not yet replaced by the renewed run's) is not
    trusted: the workflow is asked."""
    def refused(why: str = "") -> RuleRefused:
        return RuleRefused.single("E1/C12", f"customer {customer_id} has no live TechConnect programme{why}",
                                  "customer_id")

    handle = client.get_workflow_handle(program_workflow_id(customer_id))
    with temporal_refusals(missing=refused):
        desc = await handle.describe()
    if desc.status != WorkflowExecutionStatus.RUNNING:
        state = desc.status.name.lower() if desc.status else "unknown"
        raise refused(f" (its programme workflow is {state})")
    status = await _projected_live(sessions, customer_id)
    if status is None:
        status = await handle.query("get_status", result_type=ProgramStatus)
    if status.phase in NOT_LIVE_PHASES:
        raise refused(f" (programme phase: {status.phase.value})")
    return status


_NOT_LIVE_PHASE_VALUES = frozenset(p.value for p in NOT_LIVE_PHASES)


async def _projected_live(sessions: SessionFactory, customer_id: str) -> ProgramStatus | None:
    """The programme's projected state when it says live; None otherwise. The row's phase column is written
    from the same status as its JSON (`upsert_programme`), and the workflow ID is the customer's in every run."""
    from storage.repositories import get_programme

    async with sessions() as session:
        row = await get_programme(session, customer_id)
    if row is None or row.phase in _NOT_LIVE_PHASE_VALUES:
        return None
    return ProgramStatus.model_validate(row.status)


async def _allocate(sessions: SessionFactory, customer_id: str, year: int) -> str:
    from storage.repositories import allocate_tracking_number

    async with sessions() as session, session.begin():
        return await allocate_tracking_number(session, customer_id, year)


async def open_request(
    client: Client, settings: Settings, new: NewRequest, *, now: datetime | None = None,
    sessions: SessionFactory | None = None,
) -> str:
    """Open a request; returns its tracking number (A4), e.g. `TC-ACME-2027-0001`.

    `now` is the filing instant (default: the clock); tests on the time-skipping server
    pass the server's time. `sessions` reuses a session factory instead of opening one.
    """
    check_customisation(new)  # rule C13, before anything starts
    async with database(settings, sessions) as opened:
        programme = await live_programme(client, new.customer_id, opened)
        opened_at = (now or datetime.now(UTC)).astimezone(UTC)
        # rule A4: numbered per customer and year, the year as the programme's time zone has it.
        year = opened_at.astimezone(ZoneInfo(programme.calendar.timezone)).year
        number = await _allocate(opened, new.customer_id, year)
    assert TRACKING_RE.match(number), number
    tl = programme.technical_lead
    await client.start_workflow(
        "SupportRequestWorkflow",
        RequestInput(tracking_number=number, request=new, customer_name=programme.customer_name,
                     period=programme.period, calendar=programme.calendar, technical_lead=tl,
                     contacts=programme.contacts, policy=settings.policy, opened_at=opened_at),
        id=request_workflow_id(number),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        static_summary=f"{number}: {new.priority.value} {new.kind.value} request of {programme.customer_name}",
        static_details=(f"{new.summary}\n\nFiled by {new.filed_by} via {new.channel.value}; TL {tl.name} ({tl.id}); "
                        f"programme period {programme.period}"
                        + ("; customisation, agreement " + str(new.agreement_ref) if new.customisation else "")),
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(SA_CUSTOMER_ID, new.customer_id),
            SearchAttributePair(SA_TECHNICAL_LEAD, tl.id),
            SearchAttributePair(SA_REQUEST_STATE, RequestState.open.value),
            SearchAttributePair(SA_SLA_BREACHED, False),
        ]),
    )
    return number


def check_tracking_number(tracking_number: str) -> str:
    """The number as the workflow ID has it (upper case), or a refusal (rule A4) before any call."""
    number = tracking_number.strip().upper()
    if not TRACKING_RE.match(number):
        raise Refused(f"{tracking_number!r} is not a tracking number (e.g. TC-ACME-2027-0001, rule A4)")
    return number


def request_handle(client: Client, tracking_number: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(request_workflow_id(tracking_number))


async def request_status(client: Client, tracking_number: str) -> RequestStatus:
    """The request's state (query `get_status`); `NotFound` (rule A4) when there is no such request."""
    unknown = violation("A4", f"no request with tracking number {tracking_number}", "tracking_number")
    with temporal_refusals(missing=lambda: NotFound(str(unknown), [unknown])):
        status: RequestStatus = await request_handle(client, tracking_number).query(
            "get_status", result_type=RequestStatus)
    return status


async def update_request(client: Client, tracking_number: str, update: str, arg: BaseModel,
                         missing_statuses: tuple[RPCStatusCode, ...] = (RPCStatusCode.NOT_FOUND,),
                         update_id: str | None = None) -> RequestStatus:
    """Update `update` of `request-<tracking_number>` (respond, accept_resolution ...): its new status.

    `UpdateRefused` when the workflow refuses; `NotFound` when there is no live workflow (no such
    request, or an RPC status in `missing_statuses`, e.g. FAILED_PRECONDITION for a completed run).
    The same `update_id` twice is one Update: Temporal answers the second with the first's result.
    """
    gone = NotFound(f"request {tracking_number} has no live workflow")
    with temporal_refusals(update=update, missing=lambda: gone, missing_statuses=missing_statuses):
        result: RequestStatus = await request_handle(client, tracking_number).execute_update(
            update, arg, id=update_id, result_type=RequestStatus)
    return result


__all__ = [
    "NOT_LIVE_PHASES",
    "check_customisation",
    "check_tracking_number",
    "live_programme",
    "open_request",
    "request_handle",
    "request_status",
    "update_request",
]
