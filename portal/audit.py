"""The audit log, for operations and admins: who did what to which customer, from which interface.

Rows come from the workflows (ProgramWorkflow's `save_projection`, SupportRequestWorkflow's
`save_request`: every step, notice, extra and request action, with the interface the Update
came from: cli, portal, temporal, signal) and from the portal itself (starting a programme).

The page `/ops/audit` and the API `GET /api/audit` take the same filters: customer, actor
(part of the name, any case), action, interface. Access as everywhere (portal/access.py):
a customer filter goes through `customer_in_reach` first (an unknown or out-of-reach
customer answers 404), then the role (operations and admins; others 403); no credentials
answer 401 on the API and send the page to the sign-in form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from portal import access
from portal.access import Action
from portal.api import api_user
from portal.auth import Principal, check_csrf, require_user
from portal.rendering import render
from portal.state import get_state
from storage.repositories import as_utc
from storage.tables import AuditLogRow

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
api_router = APIRouter(prefix="/api", dependencies=[Depends(check_csrf)])

PAGE_SIZE = 100
MAX_LIMIT = 500


@dataclass(frozen=True)
class AuditFilters:
    customer_id: str | None = None
    actor: str | None = None
    action: str | None = None
    interface: str | None = None

    @classmethod
    def of(cls, customer_id: str | None, actor: str | None, action: str | None,
           interface: str | None) -> AuditFilters:
        def clean(value: str | None) -> str | None:
            return (value or "").strip() or None

        return cls(clean(customer_id), clean(actor), clean(action), clean(interface))

    def query(self) -> dict[str, str]:
        return {k: v for k, v in (("customer", self.customer_id), ("actor", self.actor), ("action", self.action),
                                  ("interface", self.interface)) if v}


def _filtered(stmt: Select[Any], f: AuditFilters) -> Select[Any]:
    if f.customer_id:
        stmt = stmt.where(AuditLogRow.customer_id == f.customer_id)
    if f.actor:
        stmt = stmt.where(func.lower(AuditLogRow.actor).contains(f.actor.lower(), autoescape=True))
    if f.action:
        stmt = stmt.where(AuditLogRow.action == f.action)
    if f.interface:
        stmt = stmt.where(AuditLogRow.interface == f.interface)
    return stmt


async def entries(session: AsyncSession, f: AuditFilters, *, limit: int = PAGE_SIZE,
                  offset: int = 0) -> tuple[list[AuditLogRow], int]:
    """Newest first, with the number of entries matching the filters."""
    total = int(await session.scalar(_filtered(select(func.count()).select_from(AuditLogRow), f)) or 0)
    stmt = _filtered(select(AuditLogRow), f).order_by(AuditLogRow.at.desc(), AuditLogRow.id.desc())
    rows = list((await session.execute(stmt.limit(limit).offset(offset)
                                       .execution_options(populate_existing=True))).scalars())
    return rows, total


async def facets(session: AsyncSession) -> tuple[list[str], list[str], list[str]]:
    """Customers, actions and interfaces present in the log (the filter choices)."""
    out: list[list[str]] = []
    for column in (AuditLogRow.customer_id, AuditLogRow.action, AuditLogRow.interface):
        out.append([str(v) for v in (await session.execute(select(column).distinct().order_by(column))).scalars()])
    return out[0], out[1], out[2]


async def _allowed(session: AsyncSession, principal: Principal, customer_id: str | None) -> None:
    if customer_id:
        await access.customer_in_reach(session, principal, customer_id)  # 404, never a hint it exists
    access.require(principal, Action.audit_log)


# ---- page ---------------------------------------------------------------------------------------------------


def _page_number(raw: str | None) -> int:
    return max(1, int(raw)) if raw and raw.isdigit() and len(raw) < 7 else 1


@router.get("/ops/audit")
async def audit_page(request: Request, principal: Principal = Depends(require_user)) -> Response:
    q = request.query_params
    f = AuditFilters.of(q.get("customer"), q.get("actor"), q.get("action"), q.get("interface"))
    page = _page_number(q.get("page"))
    async with get_state(request).sessions() as session:
        await _allowed(session, principal, f.customer_id)
        rows, total = await entries(session, f, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        customers, actions, interfaces = await facets(session)
    pages = max(1, -(-total // PAGE_SIZE))
    return render(request, "audit.html.j2", {
        "rows": rows, "total": total, "filters": f, "page": page, "pages": pages, "page_size": PAGE_SIZE,
        "customers": customers, "actions": actions, "interfaces": interfaces, "query": f.query(),
    }, title="Audit log")


# ---- API ----------------------------------------------------------------------------------------------------


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    customer_id: str
    interface: str = Field(description="Where the action came from: cli, portal, temporal, signal")
    detail: dict[str, Any]


class AuditPage(BaseModel):
    total: int = Field(description="Entries matching the filters")
    limit: int
    offset: int
    entries: list[AuditEntryOut]


@api_router.get("/audit", response_model=AuditPage, responses={404: {"description": "No such customer"}})
async def audit_api(
    request: Request,
    principal: Principal = Depends(api_user),
    customer_id: str | None = Query(None, max_length=63, description="Only this customer"),
    actor: str | None = Query(None, max_length=128, description="Actor contains this text (any case)"),
    action: str | None = Query(None, max_length=64, description="Exactly this action, e.g. accept_resolution"),
    interface: str | None = Query(None, max_length=32, description="cli, portal, temporal or signal"),
    limit: int = Query(PAGE_SIZE, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> AuditPage:
    """The audit log, newest first (operations and admins)."""
    f = AuditFilters.of(customer_id, actor, action, interface)
    async with get_state(request).sessions() as session:
        await _allowed(session, principal, f.customer_id)
        rows, total = await entries(session, f, limit=limit, offset=offset)
    return AuditPage(total=total, limit=limit, offset=offset, entries=[AuditEntryOut(
        id=r.id, at=as_utc(r.at), actor=r.actor, role=r.role, action=r.action, customer_id=r.customer_id,
        interface=r.interface, detail=r.detail or {}) for r in rows])
