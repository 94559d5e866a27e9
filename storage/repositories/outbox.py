"""The mail outbox, read side: what was (or is to be) sent, for the CLI, the portal and the reports."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.repositories.common import fresh, rows, where_given
from storage.tables import OutboxRow


async def get_outbox(session: AsyncSession, idempotency_key: str) -> OutboxRow | None:
    stmt = fresh(select(OutboxRow).where(OutboxRow.idempotency_key == idempotency_key))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_outbox(
    session: AsyncSession, *, customer_id: str | None = None, status: str | None = None, limit: int | None = None,
) -> list[OutboxRow]:
    """Newest first."""
    stmt = fresh(select(OutboxRow).order_by(OutboxRow.created_at.desc(), OutboxRow.id.desc()))
    stmt = where_given(stmt, (OutboxRow.customer_id, customer_id), (OutboxRow.status, status))
    if limit is not None:
        stmt = stmt.limit(limit)
    return await rows(session, stmt)
