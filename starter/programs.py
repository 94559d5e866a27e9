"""Programmes and their monthly cycles, for every face: enrol, start, query, and complete steps by Update.

Refusals are the domain family (domain/errors.py): the enrolment rules (`EnrolmentRefused`), a second
programme (`Refused`), no such programme (`NotFound`), a refused Update (`UpdateRefused`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from config.settings import Settings
from domain.cycle import CycleStatus
from domain.enrolment import Enrolment, check_enrolment
from domain.errors import EnrolmentRefused, NotFound, Refused, RuleViolation
from domain.naming import SA_CUSTOMER_ID, SA_TECHNICAL_LEAD, program_workflow_id
from domain.program import ProgramInput, ProgramStatus
from domain.steps import Workflow, spec, updates_of
from starter.database import database
from starter.errors import parse_model, temporal_refusals

if TYPE_CHECKING:  # SQLAlchemy only when the database is read: the CLI starts fast.
    from storage.db import SessionFactory

# Update name -> payload model. Programme Updates go to `program-<customer>`,
# cycle Updates to the month's child workflow.
PROGRAM_UPDATES: dict[str, type[BaseModel]] = dict(updates_of(Workflow.program))
CYCLE_UPDATES: dict[str, type[BaseModel]] = dict(updates_of(Workflow.cycle))


def step_model(step: str) -> type[BaseModel] | None:
    """The payload model of a programme or cycle step; None for an unknown name."""
    return PROGRAM_UPDATES.get(step) or CYCLE_UPDATES.get(step)


async def enrolment_violations(settings: Settings, enrolment: Enrolment,
                               sessions: SessionFactory | None = None) -> list[RuleViolation]:
    """The rules the workflow checks at enrolment, checked now (CLI and portal); `sessions` reuses a factory."""
    from config.calendar import supported_countries
    from storage.repositories import get_subscription, subscription_model
    from storage.repositories.customers import registry_contact_count

    async with database(settings, sessions) as opened, opened() as session:
        row = await get_subscription(session, enrolment.customer.maintenance_subscription_id)
        sub = subscription_model(row) if row else None
        registry = await registry_contact_count(session, enrolment.customer.id, enrolment.period_start)
    return check_enrolment(enrolment, sub, settings.policy, known_countries=supported_countries(),
                           registry_contacts=registry)


async def precheck_enrolment(settings: Settings, enrolment: Enrolment,
                             sessions: SessionFactory | None = None) -> None:
    """The same rules the workflow checks, so a refusal shows at once (`EnrolmentRefused`)."""
    violations = await enrolment_violations(settings, enrolment, sessions)
    if violations:
        raise EnrolmentRefused(violations)


async def start_program(client: Client, settings: Settings, enrolment: Enrolment, started_by: str = "ops") -> str:
    wid = program_workflow_id(enrolment.customer.id)
    second = Refused(f"customer {enrolment.customer.id} already has a live programme (workflow {wid}); "
                     f"one active programme per customer")
    with temporal_refusals(already_started=lambda: second):
        await client.start_workflow(
            "ProgramWorkflow",  # by name, like every face: the client layer does not load workflows/
            ProgramInput(enrolment=enrolment, policy=settings.policy, started_by=started_by),
            id=wid,
            task_queue=settings.task_queue,
            # One live programme per customer: Temporal refuses a second run with this ID.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"TechConnect programme of {enrolment.customer.name} ({enrolment.customer.id})",
            static_details=(
                f"Period from {enrolment.period_start}, {enrolment.term_months} months; "
                f"TL {enrolment.technical_lead.name}; products "
                + ", ".join(f"{p.name} {p.version}" for p in enrolment.products)
            ),
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(SA_CUSTOMER_ID, enrolment.customer.id),
                SearchAttributePair(SA_TECHNICAL_LEAD, enrolment.technical_lead.id),
            ]),
        )
    return wid


async def fetch_status(client: Client, customer_id: str) -> ProgramStatus:
    """The programme's status (query `get_status`); `NotFound` when the customer has none."""
    handle = client.get_workflow_handle(program_workflow_id(customer_id))
    with temporal_refusals(missing=lambda: NotFound(f"no programme for customer {customer_id}")):
        status: ProgramStatus = await handle.query("get_status", result_type=ProgramStatus)
    return status


async def cycle_for_step(client: Client, customer_id: str, step: str, month: int | None) -> str:
    """The running monthly cycle that has `step` open (of `month`, when given)."""
    status = await fetch_status(client, customer_id)
    running = [c for c in status.cycles if c.status == "running" and (month is None or c.month == month)]
    for c in running:
        cs = await client.get_workflow_handle(c.workflow_id).query("get_status", result_type=CycleStatus)
        # The extras (C10: record_extra_call, record_extra_report) are no to-do: any running cycle takes them.
        # A report sent back (D7) goes to the cycle whose report waits for approval, maybe last month's.
        wanted = "approve_report" if step == "send_back_report" else step
        if (not spec(step).tracked and wanted == step) or any(
                st.step == wanted and st.status == "open" for st in cs.steps):
            return c.workflow_id
    raise Refused(f"no running monthly cycle of {customer_id} has step {step} open"
                  + (f" for month {month}" if month else ""))


def prepare_step(step: str, by: str, payload: dict[str, Any], via: str = "cli") -> BaseModel:
    """The Update's argument, checked before anything talks to Temporal (a bad step or payload is refused).

    `via` names the interface in the audit log (the portal passes "portal")."""
    model = step_model(step)
    if model is None:
        known = sorted([*PROGRAM_UPDATES, *CYCLE_UPDATES])
        raise Refused(f"unknown step {step!r}; known steps: {', '.join(known)}")
    return parse_model(model, {**payload, "by": by, "via": via}, f"payload of {step}")


async def execute_step(client: Client, customer_id: str, step: str, by: str, payload: dict[str, Any],
                       month: int | None = None, via: str = "cli") -> dict[str, Any]:
    """Complete a programme or cycle step with its Update; returns the workflow's new status."""
    arg = prepare_step(step, by, payload, via)
    result_type: type[BaseModel]
    if step in PROGRAM_UPDATES:
        wid, result_type = program_workflow_id(customer_id), ProgramStatus
    else:
        result_type = CycleStatus
        wid = await cycle_for_step(client, customer_id, step, month)
    with temporal_refusals(update=step, missing=lambda: NotFound(f"no live workflow {wid}")):
        result = await client.get_workflow_handle(wid).execute_update(step, arg, result_type=result_type)
    data: dict[str, Any] = result.model_dump(mode="json")
    return {"workflow_id": wid, "step": step, "status": data}


async def agree_call_frequency(client: Client, customer_id: str, by: str, months: int, agreement_ref: str,
                               reason: str = "", via: str = "cli") -> dict[str, Any]:
    """Rule C10: a follow-up cycle every `months` months from the coming months on, under `agreement_ref`
    (Update `agree_call_frequency`); returns the programme's new status."""
    return await execute_step(client, customer_id, "agree_call_frequency", by,
                              {"months": months, "agreement_ref": agreement_ref, "reason": reason}, via=via)


async def record_extra_report(client: Client, customer_id: str, by: str, delivered_on: str, description: str,
                              agreement_ref: str, month: int | None = None, via: str = "cli") -> dict[str, Any]:
    """Rule C10: a report beyond the cycle's included one, a billable extra (Update `record_extra_report` of the
    running cycle, of `month` when given); returns the cycle's new status."""
    return await execute_step(client, customer_id, "record_extra_report", by,
                              {"delivered_on": delivered_on, "description": description,
                               "agreement_ref": agreement_ref}, month, via)


__all__ = [
    "CYCLE_UPDATES",
    "PROGRAM_UPDATES",
    "agree_call_frequency",
    "cycle_for_step",
    "enrolment_violations",
    "execute_step",
    "fetch_status",
    "precheck_enrolment",
    "prepare_step",
    "record_extra_report",
    "start_program",
    "step_model",
]
