"""The audit log: who did what, through which interface, to which customer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.activities import AuditEntry
from storage.repositories.clock import as_utc
from storage.repositories.common import Inserted, fresh, insert_ignore, one_by, rows
from storage.tables import AuditLogRow


async def append_audit(
    session: AsyncSession, entry: AuditEntry, *, idempotency_key: str | None = None,
) -> Inserted[AuditLogRow]:
    """Append an entry; with a key, a retried writer finds its entry instead of adding another."""
    values: dict[str, Any] = {
        "at": as_utc(entry.at), "actor": entry.actor, "role": entry.role, "action": entry.action,
        "customer_id": entry.customer_id, "interface": entry.interface, "detail": entry.detail,
        "idempotency_key": idempotency_key,
    }
    if idempotency_key is None:
        row = AuditLogRow(**values)
        session.add(row)
        await session.flush()
        return Inserted(row, True)
    created = await insert_ignore(session, AuditLogRow, values, ["idempotency_key"])
    return Inserted(await one_by(session, AuditLogRow, AuditLogRow.idempotency_key, idempotency_key), created)


async def list_audit(
    session: AsyncSession, customer_id: str, *, limit: int | None = None,
) -> list[AuditLogRow]:
    """Newest first."""
    stmt = fresh(select(AuditLogRow).where(AuditLogRow.customer_id == customer_id)
                 .order_by(AuditLogRow.at.desc(), AuditLogRow.id.desc()))
    if limit is not None:
        stmt = stmt.limit(limit)
    return await rows(session, stmt)
