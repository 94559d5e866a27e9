"""The audit log, for operations and admins: who did what to which customer, from which interface.

Rows come from the workflows (ProgramWorkflow's `save_projection`, SupportRequestWorkflow's
`save_request`: every step, notice, extra and request action, with the interface the Update
came from: cli, portal, temporal, signal) and from the portal itself (starting a programme).

The page `/ops/audit` (portal/routers/operations.py) and the API `GET /api/audit`
(portal/routers/api.py) read it here and take the same filters: customer, actor
(part of the name, any case), action, interface. Access as everywhere (portal/access.py):
a customer filter goes through `customer_in_reach` first (an unknown or out-of-reach
customer answers 404), then the role (operations and admins; others 403); no credentials
answer 401 on the API and send the page to the sign-in form.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import access
from portal.access import Action
from portal.auth import Principal
from storage.repositories.common import AnySelect
from storage.tables import AuditLogRow

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


def _filtered(stmt: AnySelect, f: AuditFilters) -> AnySelect:
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


async def allowed(session: AsyncSession, principal: Principal, customer_id: str | None) -> None:
    if customer_id:
        await access.customer_in_reach(session, principal, customer_id)  # 404, never a hint it exists
    access.require(principal, Action.audit_log)
