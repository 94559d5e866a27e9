"""`techconnect projection check [--fix]`: the inbox projection against the workflows (issue 16).

The workflows are the authority. For each running programme and monthly cycle, its `get_status` query gives the
open steps it would project (the same pure functions the activities use, domain/inbox.py); the database gives
what was written. A difference seen twice is reported, and written over with `fix` (the day a projection write
is lost, or for cycles started before they wrote their own). Rows of workflows no longer running are extra.
This is the one list that asks every workflow: it is a repair tool, not a page.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from temporalio.client import Client

from domain.inbox import OpenStep, StepDifference, compare_steps
from starter.visibility import expected_open_steps

if TYPE_CHECKING:
    from storage.db import SessionFactory

RUNNING = ("(WorkflowType = 'ProgramWorkflow' OR WorkflowType = 'MonthlyCycleWorkflow') "
           "AND ExecutionStatus = 'Running'")
# Queries in flight at once: each may replay a workflow on a worker.
CONCURRENCY = 8


class ProjectionReport(BaseModel):
    checked: int = 0  # workflows compared
    differences: list[StepDifference] = Field(default_factory=list)
    fixed: int = 0  # workflows whose rows were written over


async def running_workflow_ids(client: Client) -> list[str]:
    return [wf.id async for wf in client.list_workflows(RUNNING)]


async def check_projection(client: Client, sessions: SessionFactory, *, fix: bool = False,
                           workflow_ids: list[str] | None = None,
                           progress: Callable[[int, int], None] | None = None) -> ProjectionReport:
    """Compare (and with `fix`, repair) the projection of `workflow_ids`, or of every running programme and
    cycle plus every workflow the projection holds rows of."""
    from storage.repositories.open_steps import projected_open_steps, replace_open_steps

    async with sessions() as session:
        held = await projected_open_steps(session, workflow_ids)
    ids = sorted(set(workflow_ids) if workflow_ids is not None else set(await running_workflow_ids(client)) | set(held))
    gate = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def differs(wid: str) -> tuple[StepDifference, list[OpenStep]] | None:
        nonlocal done
        async with gate:
            expected: list[OpenStep] = []
            customer = ""
            for _attempt in range(2):  # a workflow changing between the two reads is seen again
                running = await _is_running(client, wid)
                customer, expected = await expected_open_steps(client, wid) if running else ("", [])
                async with sessions() as session:
                    projected = (await projected_open_steps(session, [wid])).get(wid, [])
                diff = compare_steps(wid, customer or (projected[0].customer_id if projected else ""),
                                     expected, projected)
                if diff is None:
                    break
            done += 1
            if progress is not None:
                progress(done, len(ids))
            return (diff, expected) if diff is not None else None

    found = [d for d in await asyncio.gather(*(differs(w) for w in ids)) if d is not None]
    report = ProjectionReport(checked=len(ids), differences=[d for d, _ in found])
    if fix and found:
        async with sessions() as session, session.begin():
            for diff, expected in found:
                await replace_open_steps(session, diff.workflow_id, expected)
        report.fixed = len(found)
    return report


async def _is_running(client: Client, workflow_id: str) -> bool:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False  # never started, or gone with its retention period
    return desc.status == WorkflowExecutionStatus.RUNNING


__all__ = ["ProjectionReport", "check_projection", "expected_open_steps", "running_workflow_ids"]
