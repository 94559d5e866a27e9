"""What the portal asks of Temporal, through the client layer every face uses (starter/): the same
client, the same models, the same Updates as the command line.

Refusals (an Update's validator, a rule checked before starting) are the domain family
(domain/errors.py), carrying the rule's message and violations, which pages show at the top
of the form. The routers catch its root, `RuleRefused`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from temporalio.client import Client

from config.settings import Settings
from domain.enrolment import Enrolment
from domain.errors import NotFound
from domain.program import ProgramStatus
from domain.request import NewRequest, RequestStatus
from starter import programs, requests
from storage.db import SessionFactory


def step_model(step: str) -> type[BaseModel] | None:
    return programs.step_model(step)


async def programme_status(client: Client, customer_id: str) -> ProgramStatus | None:
    try:
        return await programs.fetch_status(client, customer_id)
    except NotFound:
        return None


async def complete_step(client: Client, customer_id: str, step: str, by: str, payload: dict[str, Any],
                        month: int | None = None) -> dict[str, Any]:
    return await programs.execute_step(client, customer_id, step, by, payload, month, via="portal")


async def start_programme(client: Client, settings: Settings, sessions: SessionFactory, enrolment: Enrolment,
                          by: str) -> str:
    await programs.precheck_enrolment(settings, enrolment, sessions)
    return await programs.start_program(client, settings, enrolment, started_by=by)


async def open_request(client: Client, settings: Settings, sessions: SessionFactory, new: NewRequest) -> str:
    return await requests.open_request(client, settings, new, sessions=sessions)


async def request_status(client: Client, tracking_number: str) -> RequestStatus | None:
    try:
        return await requests.request_status(client, tracking_number)
    except NotFound:
        return None


async def request_update(client: Client, tracking_number: str, update: str, arg: BaseModel) -> RequestStatus:
    """An Update of `request-<tracking>` (accept_resolution, approve_dispatch ...)."""
    if "via" in type(arg).model_fields:
        arg = arg.model_copy(update={"via": "portal"})  # the interface, for the audit log
    return await requests.update_request(client, tracking_number, update, arg)


def today_in(timezone: str) -> date:
    """The programme's own date (rule C16 counts days in the programme's time zone)."""
    return datetime.now(ZoneInfo(timezone)).date()
