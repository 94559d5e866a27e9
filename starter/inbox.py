"""The inbox and the programme list, from the application database (issue 16): a page of 50 with its total,
in a bounded number of SQL queries whatever the number of programmes. The CLI and the portal both read here.

The workflows keep the rows up to date (domain/inbox.py, written by the activity that records each change);
`starter.projection.check_projection` compares them with the workflows, which stay the authority.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from config.settings import Settings
from domain.errors import Refused
from domain.inbox import PAGE_SIZE
from starter.database import database

if TYPE_CHECKING:
    from storage.db import SessionFactory
    from storage.repositories.open_steps import InboxPage, Page, ProgrammeListed


def page_offset(page: int) -> int:
    """The first row of page `page` (1-based)."""
    if page < 1:
        raise Refused(f"page: must be 1 or more, not {page}")
    return (page - 1) * PAGE_SIZE


def page_count(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))


def page_line(page: int, total: int, what: str) -> str:
    """`page 2 of 7, 320 open step(s); next: --page 3`: the line under a page the CLI prints."""
    pages = page_count(total)
    more = f"; next: --page {page + 1}" if page < pages else ""
    return f"page {page} of {pages}, {total} {what}{more}"


async def open_steps(settings: Settings, *, tl: str | None = None, page: int = 1,
                     customer_ids: Collection[str] | None = None, customers_led_by: str | None = None,
                     sessions: SessionFactory | None = None) -> InboxPage:
    """Open steps across programmes and monthly cycles, overdue first, then by due date: the TL inbox."""
    from storage.repositories.open_steps import open_steps_page

    offset = page_offset(page)
    async with database(settings, sessions) as opened, opened() as session:
        return await open_steps_page(session, technical_lead_id=tl, customer_ids=customer_ids,
                                     customers_led_by=customers_led_by, offset=offset)


async def programmes(settings: Settings, *, phase: str | None = None, tl: str | None = None, page: int = 1,
                     customer_ids: Collection[str] | None = None,
                     sessions: SessionFactory | None = None) -> Page[ProgrammeListed]:
    """Programmes not ended, by customer ID, optionally of one phase or one Technical Lead."""
    from storage.repositories.open_steps import programmes_page

    offset = page_offset(page)
    async with database(settings, sessions) as opened, opened() as session:
        return await programmes_page(session, phase=phase, technical_lead_id=tl, customer_ids=customer_ids,
                                     offset=offset)


__all__ = ["open_steps", "page_count", "page_offset", "programmes"]
