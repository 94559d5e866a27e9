"""Documents filed in a customer's workspace (D10/A9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.repositories.clock import at_or_now
from storage.repositories.common import Inserted, fresh, insert_ignore, one_by, rows
from storage.tables import DocumentRow


async def insert_document(
    session: AsyncSession, *, customer_id: str, period: int, kind: str, title: str, body_text: str, body_html: str,
    idempotency_key: str, data: dict[str, Any] | None = None, version: int = 1, now: datetime | None = None,
) -> Inserted[DocumentRow]:
    created = await insert_ignore(session, DocumentRow, {
        "customer_id": customer_id, "period": period, "kind": kind, "title": title, "version": version,
        "body_text": body_text, "body_html": body_html, "data": data or {}, "idempotency_key": idempotency_key,
        "created_at": at_or_now(now),
    }, ["idempotency_key"])
    return Inserted(await one_by(session, DocumentRow, DocumentRow.idempotency_key, idempotency_key), created)


async def get_document(
    session: AsyncSession, document_id: int, *, customer_id: str | None = None,
) -> DocumentRow | None:
    """`customer_id`, when given, must own the document: workspaces are private (A9)."""
    row = await session.get(DocumentRow, document_id, populate_existing=True)
    if row is None or (customer_id is not None and row.customer_id != customer_id):
        return None
    return row


async def list_documents(
    session: AsyncSession, customer_id: str, *, period: int | None = None, kind: str | None = None,
) -> list[DocumentRow]:
    stmt = fresh(select(DocumentRow).where(DocumentRow.customer_id == customer_id)
                 .order_by(DocumentRow.created_at, DocumentRow.id))
    return await rows(session, stmt, (DocumentRow.period, period), (DocumentRow.kind, kind))
