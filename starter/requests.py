"""Opening a support request (rules A4, C12, C13, E1), shared by the CLI and the portal.

`open_request` checks the customer has a live TechConnect programme, refuses a
customisation without an agreement (C13) before anything starts, allocates the
tracking number in the database (A4) and starts `SupportRequestWorkflow`. Refusals
are `RuleRefused` naming the rule; callers turn them into exit code 2 or a form error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import RuleRefused
from domain.naming import (
    SA_CUSTOMER_ID,
    SA_REQUEST_STATE,
    SA_SLA_BREACHED,
    SA_TECHNICAL_LEAD,
    program_workflow_id,
    request_workflow_id,
)
from domain.program import Phase, ProgramStatus
from domain.request import TRACKING_RE, NewRequest, RequestInput, RequestState, RequestStatus
from starter.settings import Settings

if TYPE_CHECKING:  # SQLAlchemy is imported only when a number is allocated: the CLI starts fast.
    from storage.db import SessionFactory

# A programme in these phases takes no requests (E1: no programme, no TechConnect support).
# "closing" still takes them: after a non-renewal notice the programme runs to its period end (C16).
NOT_LIVE_PHASES = {Phase.enrolling, Phase.closed, Phase.refused}


def check_customisation(new: NewRequest) -> None:
    """Rule C13: customisations of OT products are not covered without a separate agreement."""
    if new.customisation and not (new.agreement_ref or "").strip():
        raise RuleRefused.single(
            "C13", "customisations of OT products are not covered; a request marked as customisation needs the "
                   "reference of a separate agreement (agreement_ref)", "agreement_ref")


async def live_programme(client: Client, customer_id: str) -> ProgramStatus:
    """The customer's running programme, or RuleRefused (E1/C12) naming why there is none."""
    def refused(why: str = "") -> RuleRefused:
        return RuleRefused.single("E1/C12", f"customer {customer_id} has no live TechConnect programme{why}",
                                  "customer_id")

    handle = client.get_workflow_handle(program_workflow_id(customer_id))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise refused() from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        state = desc.status.name.lower() if desc.status else "unknown"
        raise refused(f" (its programme workflow is {state})")
    status: ProgramStatus = await handle.query("get_status", result_type=ProgramStatus)
    if status.phase in NOT_LIVE_PHASES:
        raise refused(f" (programme phase: {status.phase.value})")
    return status


async def _allocate(settings: Settings, sessions: SessionFactory | None, customer_id: str, year: int) -> str:
    from storage.repositories import allocate_tracking_number

    engine: Any = None
    if sessions is None:
        from storage.db import make_engine, make_session_factory
        from storage.migrate import upgrade

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(settings.effective_database_url)
        engine = make_engine(settings.effective_database_url)
        sessions = make_session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            return await allocate_tracking_number(session, customer_id, year)
    finally:
        if engine is not None:
            await engine.dispose()


async def open_request(
    client: Client, settings: Settings, new: NewRequest, *, now: datetime | None = None,
    sessions: SessionFactory | None = None,
) -> str:
    """Open a request; returns its tracking number (A4), e.g. `TC-ACME-2027-0001`.

    `now` is the filing instant (default: the clock); tests on the time-skipping server
    pass the server's time. `sessions` reuses a session factory instead of opening one.
    """
    check_customisation(new)  # rule C13, before anything starts
    programme = await live_programme(client, new.customer_id)
    opened_at = (now or datetime.now(UTC)).astimezone(UTC)
    # rule A4: numbered per customer and year, the year as the programme's time zone has it.
    year = opened_at.astimezone(ZoneInfo(programme.calendar.timezone)).year
    number = await _allocate(settings, sessions, new.customer_id, year)
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


def request_handle(client: Client, tracking_number: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(request_workflow_id(tracking_number))


async def request_status(client: Client, tracking_number: str) -> RequestStatus:
    """The request's state (query `get_status`); RuleRefused when there is no such request."""
    try:
        status: RequestStatus = await request_handle(client, tracking_number).query(
            "get_status", result_type=RequestStatus)
        return status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RuleRefused.single("A4", f"no request with tracking number {tracking_number}",
                                     "tracking_number") from None
        raise


__all__ = ["NOT_LIVE_PHASES", "check_customisation", "live_programme", "open_request", "request_status"]
