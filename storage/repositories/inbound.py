"""Inbound mail (replies to request mails): stored raw first, then marked posted or quarantined."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from storage.repositories.common import Inserted, fresh, insert_ignore, one_by, rows
from storage.tables import InboundMessageRow


async def store_inbound(session: AsyncSession, *, message_id: str, mail_from: str, rcpt_to: list[str],
                        raw: bytes, received_at: datetime | None = None) -> Inserted[InboundMessageRow]:
    """The raw message, once per Message-ID: a second delivery finds the first row (created False)."""
    created = await insert_ignore(session, InboundMessageRow, {
        "message_id": message_id, "received_at": received_at or datetime.now(UTC), "mail_from": mail_from[:320],
        "rcpt_to": ", ".join(rcpt_to), "size": len(raw), "raw": raw, "status": "received", "reason": "",
    }, ["message_id"])
    return Inserted(await one_by(session, InboundMessageRow, InboundMessageRow.message_id, message_id), created)


async def mark_inbound(session: AsyncSession, row_id: int, *, status: str, reason: str = "",
                       tracking_number: str | None = None) -> None:
    await session.execute(update(InboundMessageRow).where(InboundMessageRow.id == row_id).values(
        status=status, reason=reason, tracking_number=tracking_number, processed_at=datetime.now(UTC)))


async def list_inbound(session: AsyncSession, status: str | None = None, limit: int = 200,
                       with_raw: bool = False) -> list[InboundMessageRow]:
    """Newest first; `status` "received": those not processed yet (a receiver stopped in between)."""
    # The raw messages stay in the database: a list does not need them (each may be megabytes).
    stmt = select(InboundMessageRow)
    if not with_raw:
        stmt = stmt.options(defer(InboundMessageRow.raw, raiseload=True))
    stmt = stmt.order_by(InboundMessageRow.received_at.desc(), InboundMessageRow.id.desc()).limit(limit)
    return await rows(session, fresh(stmt), (InboundMessageRow.status, status))

