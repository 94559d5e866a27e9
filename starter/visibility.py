"""Lists from Temporal visibility (the search attributes of domain/naming.py): programmes, open steps, requests.

Rows are plain dicts, ready for a table, `--json` or a page.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from domain.cycle import CycleStatus
from domain.naming import (
    SA_CUSTOMER_ID,
    SA_OPEN_STEPS,
    SA_PROGRAM_PHASE,
    SA_REQUEST_STATE,
    SA_SLA_BREACHED,
    SA_TECHNICAL_LEAD,
    request_workflow_id,
)
from domain.program import ProgramStatus

# What a request's workflow ID adds to its tracking number.
_REQUEST_ID_PREFIX = request_workflow_id("")


def quote(value: str) -> str:
    """A value inside a visibility query's single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def list_programs(client: Client, phase: str | None = None, tl: str | None = None) -> list[dict[str, Any]]:
    """Running programmes, optionally of one phase or one Technical Lead."""
    query = "WorkflowType = 'ProgramWorkflow' AND ExecutionStatus = 'Running'"
    if phase:
        query += f" AND ProgramPhase = '{quote(phase)}'"
    if tl:
        query += f" AND TechnicalLead = '{quote(tl)}'"
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query):
        sa = wf.typed_search_attributes
        rows.append({"workflow_id": wf.id, "customer_id": sa.get(SA_CUSTOMER_ID),
                     "technical_lead": sa.get(SA_TECHNICAL_LEAD), "phase": sa.get(SA_PROGRAM_PHASE),
                     "open_steps": [str(x) for x in sa.get(SA_OPEN_STEPS) or []]})
    return rows


async def list_open_steps(client: Client, tl: str | None = None) -> list[dict[str, Any]]:
    """Open steps across programmes and monthly cycles, overdue first (the TL inbox; CLI and portal).

    A visibility query on the search attributes finds the workflows, a `get_status` query
    on each gives the steps with their due dates.
    """
    query = "ExecutionStatus = 'Running' AND OpenSteps IS NOT NULL"
    if tl:
        query += f" AND TechnicalLead = '{quote(tl)}'"
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query):
        handle = client.get_workflow_handle(wf.id)
        if wf.workflow_type == "ProgramWorkflow":
            ps = await handle.query("get_status", result_type=ProgramStatus)
            steps, customer = ps.open_steps(), ps.customer_id
        else:
            cs = await handle.query("get_status", result_type=CycleStatus)
            steps, customer = [st for st in cs.steps if st.status == "open"], cs.customer_id
        for st in steps:
            rows.append({"customer_id": customer, "workflow_id": wf.id, "step": st.step, "title": st.title,
                         "rule": st.rule, "due_on": st.due_on, "overdue": st.escalated})
    rows.sort(key=lambda r: (not r["overdue"], str(r["due_on"])))
    return rows


async def list_requests(client: Client, customer: str | None = None, state: str | None = None,
                        tl: str | None = None, breached: bool = False) -> list[dict[str, Any]]:
    """Support requests by tracking number: the support desk's and the TL's inbox."""
    query = "WorkflowType = 'SupportRequestWorkflow'"
    if customer:
        query += f" AND CustomerId = '{quote(customer)}'"
    if state:
        query += f" AND RequestState = '{quote(state)}'"
    if tl:
        query += f" AND TechnicalLead = '{quote(tl)}'"
    if breached:
        query += " AND SlaBreached = true"
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query):
        sa = wf.typed_search_attributes
        rows.append({"tracking_number": wf.id.removeprefix(_REQUEST_ID_PREFIX), "workflow_id": wf.id,
                     "customer_id": sa.get(SA_CUSTOMER_ID), "state": sa.get(SA_REQUEST_STATE),
                     "sla_breached": bool(sa.get(SA_SLA_BREACHED)), "technical_lead": sa.get(SA_TECHNICAL_LEAD),
                     "opened_at": wf.start_time})
    rows.sort(key=lambda r: str(r["tracking_number"]))
    return rows


__all__ = ["list_open_steps", "list_programs", "list_requests", "quote"]
