"""Files of a request's thread: a mail reply's attachments (once per message and part) and uploads
from the portal's message form. Served only on their request's page."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.repositories.common import fresh, insert_ignore
from storage.tables import RequestAttachmentRow


async def keep_attachment(session: AsyncSession, *, tracking_number: str, inbound_message_id: int, part: int,
                          filename: str, content_type: str, content: bytes) -> RequestAttachmentRow:
    """An attachment of an inbound message, once per (message, part): a retried import finds its row."""
    await insert_ignore(session, RequestAttachmentRow, {
        "tracking_number": tracking_number, "inbound_message_id": inbound_message_id, "part": part,
        "filename": filename[:255], "content_type": content_type[:127], "size": len(content), "content": content,
        "created_at": datetime.now(UTC),
    }, ["inbound_message_id", "part"])
    stmt = select(RequestAttachmentRow).where(RequestAttachmentRow.inbound_message_id == inbound_message_id,
                                              RequestAttachmentRow.part == part)
    return (await session.execute(fresh(stmt))).scalar_one()


async def get_attachment(session: AsyncSession, tracking_number: str,
                         attachment_id: int) -> RequestAttachmentRow | None:
    """The attachment, only if it belongs to that request (nobody reads another request's file by its id)."""
    row = await session.get(RequestAttachmentRow, attachment_id, populate_existing=True)
    return row if row is not None and row.tracking_number == tracking_number else None


async def add_upload(session: AsyncSession, *, tracking_number: str, filename: str, content_type: str,
                     content: bytes) -> RequestAttachmentRow:
    """A file from the portal's message form (its message is posted right after, or the file deleted)."""
    row = RequestAttachmentRow(tracking_number=tracking_number, inbound_message_id=None, part=0,
                               filename=filename[:255], content_type=content_type[:127], size=len(content),
                               content=content, created_at=datetime.now(UTC))
    session.add(row)
    await session.flush()
    return row


async def delete_attachments(session: AsyncSession, ids: list[int]) -> None:
    """Uploads whose message was refused: nothing of a refused message is kept."""
    if ids:
        await session.execute(delete(RequestAttachmentRow).where(RequestAttachmentRow.id.in_(ids)))


async def drop_attachments_of(session: AsyncSession, inbound_message_id: int) -> None:
    """The files of a mail reply that was quarantined after they were kept: nothing of it is served."""
    await session.execute(delete(RequestAttachmentRow).where(RequestAttachmentRow.inbound_message_id
                                                             == inbound_message_id))
