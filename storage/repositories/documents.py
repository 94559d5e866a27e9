"""Documents filed in a customer's workspace (D10/A9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.repositories.clock import at_or_now
from storage.repositories.common import Inserted, fresh, insert_ignore, one_by, rows
from storage.tables import DocumentRow

# Rule D7: a month-end report's draft, waiting for the TL's approval. Staff read it; a customer never does
# (not in the workspace's list, not by its URL, not by the API), until approval makes it a `monthly_report`.
MONTHLY_REPORT_DRAFT = "monthly_report_draft"
DRAFT_KINDS = frozenset({MONTHLY_REPORT_DRAFT})


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
    session: AsyncSession, document_id: int, *, customer_id: str | None = None, drafts: bool = False,
) -> DocumentRow | None:
    """`customer_id`, when given, must own the document: workspaces are private (A9). A draft (D7) only
    with `drafts=True` (staff)."""
    row = await session.get(DocumentRow, document_id, populate_existing=True)
    if row is None or (customer_id is not None and row.customer_id != customer_id):
        return None
    if row.kind in DRAFT_KINDS and not drafts:
        return None
    return row


async def list_documents(
    session: AsyncSession, customer_id: str, *, period: int | None = None, kind: str | None = None,
    drafts: bool = False,
) -> list[DocumentRow]:
    """Drafts (D7) only with `drafts=True` (staff)."""
    stmt = select(DocumentRow).where(DocumentRow.customer_id == customer_id)
    if not drafts:
        stmt = stmt.where(DocumentRow.kind.not_in(DRAFT_KINDS))
    stmt = fresh(stmt.order_by(DocumentRow.created_at, DocumentRow.id))
    return await rows(session, stmt, (DocumentRow.period, period), (DocumentRow.kind, kind))
