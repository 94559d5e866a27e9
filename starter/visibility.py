"""Lists from Temporal itself: requests by visibility (the search attributes of domain/naming.py), and the
inbox as each workflow's `get_status` gives it, which the inbox projection is checked against (issue 16).
"""

from __future__ import annotations

import re
from typing import Any

from temporalio.client import Client

from domain.cycle import CycleStatus
from domain.inbox import OpenStep, cycle_open_steps, programme_open_steps
from domain.naming import (
    SA_CUSTOMER_ID,
    SA_REQUEST_STATE,
    SA_SLA_BREACHED,
    SA_TECHNICAL_LEAD,
    request_workflow_id,
)
from domain.program import ProgramStatus

_CYCLE_ID = re.compile(r"-p\d+-m\d+$")
# What a request's workflow ID adds to its tracking number.
_REQUEST_ID_PREFIX = request_workflow_id("")


def quote(value: str) -> str:
    """A value inside a visibility query's single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def expected_open_steps(client: Client, workflow_id: str) -> tuple[str, list[OpenStep]]:
    """(customer ID, open steps) as the workflow's own `get_status` gives them (domain/inbox.py's rows)."""
    handle = client.get_workflow_handle(workflow_id)
    if _CYCLE_ID.search(workflow_id):
        cs = await handle.query("get_status", result_type=CycleStatus)
        return cs.customer_id, cycle_open_steps(cs)
    ps = await handle.query("get_status", result_type=ProgramStatus)
    return ps.customer_id, programme_open_steps(ps)


def inbox_order(step: OpenStep) -> tuple[bool, bool, str, str, str, str]:
    """The inbox's order (storage/repositories/open_steps.py sorts the same in SQL): overdue first, then by due
    date, none last."""
    return (not step.overdue, step.due_on is None, str(step.due_on or ""), step.customer_id, step.workflow_id,
            step.step)


async def open_steps_by_query(client: Client, workflow_ids: list[str], tl: str | None = None) -> list[OpenStep]:
    """The inbox built by asking each workflow (one query each): what the projection must equal."""
    rows: list[OpenStep] = []
    for wid in workflow_ids:
        _, steps = await expected_open_steps(client, wid)
        rows += [st for st in steps if tl is None or st.technical_lead_id == tl]
    return sorted(rows, key=inbox_order)


async def list_open_steps(client: Client, tl: str | None = None) -> list[OpenStep]:
    """The inbox as the first version built it: a visibility query finds the running workflows, a `get_status`
    query on each gives its steps. Grows with every programme and costs a replay for each workflow out of a
    worker's cache: the portal and the CLI read the projection instead (starter/inbox.py); this stays as the
    reference the projection is checked against."""
    query = "ExecutionStatus = 'Running' AND OpenSteps IS NOT NULL"
    if tl:
        query += f" AND TechnicalLead = '{quote(tl)}'"
    return await open_steps_by_query(client, [wf.id async for wf in client.list_workflows(query)], tl)


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


__all__ = ["expected_open_steps", "inbox_order", "list_open_steps", "list_requests",
           "open_steps_by_query", "quote"]
