"""A programme's projection (ProgramWorkflow's state, for reports and the portal) and its workspace (D10/A9)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.enrolment import Enrolment
from domain.program import ProgramStatus
from storage.repositories.clock import as_utc, at_or_now, utc_or_none
from storage.repositories.common import fresh, insert_ignore, one_by, rows, upsert
from storage.tables import ProgrammeRow, WorkspaceRow

# ---- programmes (projection of ProgramWorkflow) ----------------------------------------


async def upsert_programme(
    session: AsyncSession, status: ProgramStatus, enrolment: Enrolment | None = None, *, now: datetime | None = None,
) -> None:
    """Write the projection of `status`; `enrolment`, when given, replaces the stored one."""
    plan = status.plan
    period_start: date | None = plan.period_start if plan else None
    period_end: date | None = plan.period_end if plan else None
    if plan is None and enrolment is not None:
        period_start, period_end = enrolment.period_start, enrolment.period_end
    values: dict[str, Any] = {
        "customer_id": status.customer_id,
        "workflow_id": status.workflow_id,
        "period": status.period,
        "phase": str(status.phase),
        "technical_lead_id": status.technical_lead.id,
        "period_start": period_start,
        "period_end": period_end,
        "handbook_version": status.handbook_version,  # rule E2
        "handbook_accepted_at": utc_or_none(status.handbook_accepted_at),  # rule E2
        "support_language": enrolment.support_language if enrolment else "en",  # rule C8
        "enrolment": enrolment.model_dump(mode="json") if enrolment else {},
        "status": status.model_dump(mode="json"),
        "updated_at": at_or_now(now),
    }
    update_columns = ["workflow_id", "period", "phase", "technical_lead_id", "period_start", "period_end",
                      "handbook_accepted_at", "status", "updated_at"]
    if status.handbook_version:
        update_columns.append("handbook_version")
    if enrolment is not None:
        update_columns += ["enrolment", "support_language"]
    # A status without a plan or an acceptance time yet must not erase what is recorded.
    await upsert(session, ProgrammeRow, values, ["customer_id"], update_columns,
                 coalesce_columns=["period_start", "period_end", "handbook_accepted_at"])


async def get_programme(session: AsyncSession, customer_id: str) -> ProgrammeRow | None:
    return await session.get(ProgrammeRow, customer_id, populate_existing=True)


async def list_programmes(
    session: AsyncSession, *, phase: str | None = None, technical_lead_id: str | None = None,
) -> list[ProgrammeRow]:
    stmt = fresh(select(ProgrammeRow).order_by(ProgrammeRow.customer_id))
    return await rows(session, stmt, (ProgrammeRow.phase, phase), (ProgrammeRow.technical_lead_id, technical_lead_id))


# ---- workspaces (D10/A9) -----------------------------------------------------------------


def workspace_id_for(customer_id: str) -> str:
    return f"ws-{customer_id}"


async def get_workspace(session: AsyncSession, customer_id: str) -> WorkspaceRow | None:
    stmt = fresh(select(WorkspaceRow).where(WorkspaceRow.customer_id == customer_id))
    return (await session.execute(stmt)).scalar_one_or_none()


async def create_workspace(
    session: AsyncSession, customer_id: str, workspace_id: str | None = None, *, reopen: bool = False,
    now: datetime | None = None,
) -> WorkspaceRow:
    """The customer's one workspace, created on first call; `reopen` revives an archived one."""
    await insert_ignore(session, WorkspaceRow,
                        {"id": workspace_id or workspace_id_for(customer_id), "customer_id": customer_id,
                         "status": "active", "created_at": at_or_now(now), "archived_at": None},
                        ["customer_id"])
    if reopen:
        await session.execute(update(WorkspaceRow)
                              .where(WorkspaceRow.customer_id == customer_id, WorkspaceRow.status != "active")
                              .values(status="active", archived_at=None, access_ends_at=None))
    return await one_by(session, WorkspaceRow, WorkspaceRow.customer_id, customer_id)


async def archive_workspace(
    session: AsyncSession, customer_id: str, *, now: datetime | None = None, readable_for: timedelta = timedelta(0),
) -> WorkspaceRow | None:
    """Archive the workspace, readable by its contacts for `readable_for` more (D10); a second call keeps
    the first archiving."""
    archived_at = at_or_now(now)
    await session.execute(update(WorkspaceRow)
                          .where(WorkspaceRow.customer_id == customer_id, WorkspaceRow.status != "archived")
                          .values(status="archived", archived_at=archived_at,
                                  access_ends_at=archived_at + readable_for))
    return await get_workspace(session, customer_id)


@dataclass(frozen=True)
class ClosedWorkspace:
    """An archived workspace as its contacts meet it (D10): read-only until `access_ends_at`, then gone."""

    closed_at: datetime
    access_ends_at: datetime

    def readable_at(self, now: datetime) -> bool:
        return as_utc(now) < self.access_ends_at


async def closed_workspace(session: AsyncSession, customer_id: str) -> ClosedWorkspace | None:
    """The customer's workspace if it is archived (None while it is open, or when there is none)."""
    row = await get_workspace(session, customer_id)
    if row is None or row.status != "archived":
        return None
    closed_at = as_utc(row.archived_at or row.created_at)
    # Archived before access_ends_at existed: its contacts' access ended when it was archived.
    return ClosedWorkspace(closed_at, as_utc(row.access_ends_at) if row.access_ends_at else closed_at)
