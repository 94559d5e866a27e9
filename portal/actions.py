"""What the portal asks of Temporal, through the command line's own functions (starter/cli.py,
starter/requests.py): the same client, the same models, the same Updates.

Refusals (an Update's validator, a rule checked before starting) become `ActionRefused`
carrying the rule's message, which pages show at the top of the form.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from domain.enrolment import Enrolment
from domain.errors import RuleRefused, RuleViolation
from domain.naming import request_workflow_id
from domain.program import ProgramStatus
from domain.request import NewRequest, RequestStatus
from starter import cli
from starter.settings import Settings
from storage.db import SessionFactory

_CYCLE_ID = re.compile(r"-p(\d+)-m(\d+)$")


class ActionRefused(Exception):
    def __init__(self, message: str, violations: list[RuleViolation] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations or []


def month_of(workflow_id: str) -> int | None:
    """`program-acme-p1-m03` -> 3 (a monthly cycle's step); None for the programme's own steps."""
    found = _CYCLE_ID.search(workflow_id)
    return int(found.group(2)) if found else None


def step_model(step: str) -> type[BaseModel] | None:
    return cli.PROGRAM_UPDATES.get(step) or cli.CYCLE_UPDATES.get(step)


async def programme_status(client: Client, customer_id: str) -> ProgramStatus | None:
    try:
        return await cli.fetch_status(client, customer_id)
    except cli.Refused:
        return None


async def open_steps(client: Client, tl: str | None) -> list[dict[str, Any]]:
    """The inbox rows of `techconnect step list`, plus the month of cycle steps."""
    rows = await cli.list_open_steps(client, tl)
    for row in rows:
        row["month"] = month_of(str(row["workflow_id"]))
    return rows


async def complete_step(client: Client, customer_id: str, step: str, by: str, payload: dict[str, Any],
                        month: int | None = None) -> dict[str, Any]:
    try:
        return await cli.execute_step(client, customer_id, step, by, payload, month, via="portal")
    except cli.Refused as exc:
        raise ActionRefused(str(exc)) from None


async def start_programme(client: Client, settings: Settings, sessions: SessionFactory, enrolment: Enrolment,
                          by: str) -> str:
    violations = await cli.enrolment_violations(settings, enrolment, sessions)
    if violations:
        raise ActionRefused("enrolment refused", violations)
    try:
        return await cli.start_program(client, settings, enrolment, started_by=by)
    except cli.Refused as exc:
        raise ActionRefused(str(exc)) from None


async def open_request(client: Client, settings: Settings, sessions: SessionFactory, new: NewRequest) -> str:
    from starter.requests import open_request as start_request

    try:
        return await start_request(client, settings, new, sessions=sessions)
    except RuleRefused as exc:
        raise ActionRefused(str(exc), exc.violations) from None


async def request_status(client: Client, tracking_number: str) -> RequestStatus | None:
    try:
        status: RequestStatus = await client.get_workflow_handle(request_workflow_id(tracking_number)).query(
            "get_status", result_type=RequestStatus)
        return status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def request_update(client: Client, tracking_number: str, update: str, arg: BaseModel) -> RequestStatus:
    """An Update of `request-<tracking>` (accept_resolution, approve_dispatch ...)."""
    handle = client.get_workflow_handle(request_workflow_id(tracking_number))
    if "via" in type(arg).model_fields:
        arg = arg.model_copy(update={"via": "portal"})  # the interface, for the audit log
    try:
        result: RequestStatus = await handle.execute_update(update, arg, result_type=RequestStatus)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise ActionRefused(f"{update} refused: {getattr(cause, 'message', None) or cause or exc}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ActionRefused(f"request {tracking_number} has no live workflow") from None
        raise


def today_in(timezone: str) -> date:
    """The programme's own date (rule C16 counts days in the programme's time zone)."""
    return datetime.now(ZoneInfo(timezone)).date()
