"""The inbox projection (issue 16): open steps per workflow, and the pages the inboxes and lists read.

A workflow's rows are replaced whole in the transaction that records its change, so a page is one query and
its total another, whatever the number of programmes; nothing here asks Temporal.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.inbox import ENDED_PHASES, PAGE_SIZE, OpenStep
from storage.repositories.clock import at_or_now, utc_or_none
from storage.repositories.common import AnySelect, where_given
from storage.tables import CustomerRow, OpenStepRow, ProgrammeRow

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, with the number of rows in the whole list."""

    items: list[T]
    total: int
    offset: int
    limit: int


async def replace_open_steps(session: AsyncSession, workflow_id: str, steps: Sequence[OpenStep], *,
                             now: datetime | None = None) -> None:
    """The workflow's open steps are now exactly `steps` (an empty list clears them)."""
    await session.execute(delete(OpenStepRow).where(OpenStepRow.workflow_id == workflow_id))
    if steps:
        at = at_or_now(now)
        await session.execute(insert(OpenStepRow), [
            {**s.model_dump(), "due_at": utc_or_none(s.due_at), "updated_at": at} for s in steps])


def open_step_of(row: OpenStepRow) -> OpenStep:
    return OpenStep(workflow_id=row.workflow_id, step=row.step, customer_id=row.customer_id,
                    technical_lead_id=row.technical_lead_id, period=row.period, month=row.month, title=row.title,
                    rule=row.rule, status=row.status, due_on=row.due_on, due_at=utc_or_none(row.due_at),
                    overdue=row.overdue)


def _narrowed(stmt: AnySelect, technical_lead_id: str | None, customer_ids: Collection[str] | None,
              customers_led_by: str | None) -> AnySelect:
    stmt = where_given(stmt, (OpenStepRow.technical_lead_id, technical_lead_id))
    if customer_ids is not None:
        stmt = stmt.where(OpenStepRow.customer_id.in_(list(customer_ids)))
    if customers_led_by is not None:
        stmt = stmt.where(OpenStepRow.customer_id.in_(
            select(ProgrammeRow.customer_id).where(ProgrammeRow.technical_lead_id == customers_led_by)))
    return stmt


@dataclass(frozen=True)
class InboxEntry:
    step: OpenStep
    customer_name: str


@dataclass(frozen=True)
class InboxPage(Page[InboxEntry]):
    overdue: int = 0  # overdue steps in the whole list, not only this page


async def open_steps_page(session: AsyncSession, *, technical_lead_id: str | None = None,
                          customer_ids: Collection[str] | None = None, customers_led_by: str | None = None,
                          offset: int = 0, limit: int = PAGE_SIZE) -> InboxPage:
    """Open steps, overdue first, then by due date (none last): a TL's (or everyone's) inbox, one query for
    the page and one for the total. `customer_ids` None: every customer; `customers_led_by`: only the
    customers whose programme that TL leads now."""
    stmt = _narrowed(select(OpenStepRow, CustomerRow.name)
                     .outerjoin(CustomerRow, CustomerRow.id == OpenStepRow.customer_id),
                     technical_lead_id, customer_ids, customers_led_by)
    stmt = stmt.order_by(OpenStepRow.overdue.desc(), OpenStepRow.due_on.is_(None), OpenStepRow.due_on,
                         OpenStepRow.customer_id, OpenStepRow.workflow_id, OpenStepRow.step)
    found = (await session.execute(stmt.offset(offset).limit(limit))).all()
    items = [InboxEntry(open_step_of(row), str(name or row.customer_id)) for row, name in found]
    counted = _narrowed(select(func.count(), func.count().filter(OpenStepRow.overdue)).select_from(OpenStepRow),
                        technical_lead_id, customer_ids, customers_led_by)
    total, overdue = (await session.execute(counted)).one()
    return InboxPage(items=items, total=int(total or 0), offset=offset, limit=limit, overdue=int(overdue or 0))


async def projected_open_steps(session: AsyncSession, workflow_ids: Collection[str] | None = None
                               ) -> dict[str, list[OpenStep]]:
    """The projection's open steps by workflow (all of them, or those of `workflow_ids`)."""
    stmt = select(OpenStepRow).order_by(OpenStepRow.workflow_id, OpenStepRow.step)
    if workflow_ids is not None:
        stmt = stmt.where(OpenStepRow.workflow_id.in_(list(workflow_ids)))
    found: dict[str, list[OpenStep]] = {}
    for row in (await session.execute(stmt)).scalars():
        found.setdefault(row.workflow_id, []).append(open_step_of(row))
    return found


@dataclass(frozen=True)
class ProgrammeListed:
    """A running programme as `program list` and the portal show it."""

    workflow_id: str
    customer_id: str
    technical_lead: str
    phase: str
    open_steps: list[str]


async def programmes_page(session: AsyncSession, *, phase: str | None = None, technical_lead_id: str | None = None,
                          customer_ids: Collection[str] | None = None, offset: int = 0,
                          limit: int = PAGE_SIZE) -> Page[ProgrammeListed]:
    """Running programmes by customer ID, with their own open steps: two queries a page and one for the total."""
    cols = (ProgrammeRow.workflow_id, ProgrammeRow.customer_id, ProgrammeRow.technical_lead_id, ProgrammeRow.phase)

    def narrowed(stmt: AnySelect) -> AnySelect:
        stmt = where_given(stmt.where(ProgrammeRow.phase.not_in(ENDED_PHASES)), (ProgrammeRow.phase, phase),
                           (ProgrammeRow.technical_lead_id, technical_lead_id))
        return stmt.where(ProgrammeRow.customer_id.in_(list(customer_ids))) if customer_ids is not None else stmt

    listed = (await session.execute(narrowed(select(*cols)).order_by(ProgrammeRow.customer_id)
                                    .offset(offset).limit(limit))).all()
    steps: dict[str, list[str]] = {}
    if listed:
        found = await session.execute(
            select(OpenStepRow.workflow_id, OpenStepRow.step).where(OpenStepRow.workflow_id.in_([r[0] for r in listed]))
            .order_by(OpenStepRow.workflow_id, OpenStepRow.due_on.is_(None), OpenStepRow.due_on, OpenStepRow.step))
        for wid, step in found.all():
            steps.setdefault(wid, []).append(step)
    total = await session.scalar(narrowed(select(func.count()).select_from(ProgrammeRow)))
    items = [ProgrammeListed(workflow_id=w, customer_id=c, technical_lead=t, phase=p, open_steps=steps.get(w, []))
             for w, c, t, p in listed]
    return Page(items=items, total=int(total or 0), offset=offset, limit=limit)


__all__ = ["ENDED_PHASES", "InboxEntry", "InboxPage", "Page", "ProgrammeListed", "open_steps_page", "programmes_page",
           "projected_open_steps", "replace_open_steps"]
