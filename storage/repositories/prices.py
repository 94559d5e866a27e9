"""OT's price list (rule C3): imported by ops, read when an extra is recorded and on the ops pages.

An import is all or nothing (the caller's one transaction). A line whose (kind, effective_from) is
already stored:

- the same price (basis, unit price, currency) and description: unchanged;
- another price, while no billable extra has been priced from the stored one: replaced (a typo in a
  price announced ahead is corrected by importing the file again);
- another price, once an extra has been priced from the stored one: refused, the whole file with it.
  The ledger keeps each extra's unit price and the date of the entry it came from, so the list must
  keep saying what those extras were billed at; a new price takes a new `effective_from`.
- another description only: replaced (the ledger does not copy descriptions).

Entries are never deleted by an import: a file that leaves a line out keeps the stored one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.prices import PriceListEntry, PriceListError, PriceListIssue
from domain.step_inputs import BillableExtraKind
from storage.repositories.clock import at_or_now
from storage.repositories.common import fresh
from storage.tables import BillableExtraRow, PriceListRow


@dataclass(frozen=True)
class PriceImportCounts:
    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0


def entry_of(row: PriceListRow) -> PriceListEntry:
    return PriceListEntry(kind=BillableExtraKind(row.kind), basis=row.basis,  # type: ignore[arg-type]
                          unit_price=row.unit_price, currency=row.currency, effective_from=row.effective_from,
                          description=row.description)


async def list_price_rows(session: AsyncSession) -> list[PriceListRow]:
    """Every stored price, by kind then date (with who imported it and when, for the ops page)."""
    stmt = fresh(select(PriceListRow).order_by(PriceListRow.kind, PriceListRow.effective_from))
    return list((await session.execute(stmt)).scalars())


async def list_prices(session: AsyncSession) -> list[PriceListEntry]:
    return [entry_of(row) for row in await list_price_rows(session)]


async def price_effective_on(session: AsyncSession, kind: BillableExtraKind, on: date) -> PriceListEntry | None:
    """The price of `kind` in force on `on` (`domain.prices.price_on` in SQL): the latest entry on or before it."""
    stmt = (select(PriceListRow).where(PriceListRow.kind == kind.value, PriceListRow.effective_from <= on)
            .order_by(PriceListRow.effective_from.desc()).limit(1))
    row = (await session.execute(stmt)).scalar_one_or_none()
    return entry_of(row) if row is not None else None


async def _extras_priced_from(session: AsyncSession, row: PriceListRow) -> int:
    stmt = select(func.count()).select_from(BillableExtraRow).where(
        BillableExtraRow.kind == row.kind, BillableExtraRow.price_effective_from == row.effective_from)
    return int((await session.execute(stmt)).scalar_one())


async def import_prices(session: AsyncSession, entries: list[PriceListEntry], *, by: str,
                        now: datetime | None = None) -> PriceImportCounts:
    """Store `entries` (already validated as a file); raise PriceListError naming every line refused (see the
    module's docstring), having written nothing the caller's rollback does not undo."""
    at = at_or_now(now)
    stored = {(r.kind, r.effective_from): r for r in await list_price_rows(session)}
    issues: list[PriceListIssue] = []
    inserted = replaced = unchanged = 0
    for entry in entries:
        row = stored.get((entry.kind.value, entry.effective_from))
        if row is None:
            session.add(PriceListRow(kind=entry.kind.value, basis=entry.basis, unit_price=entry.unit_price,
                                     currency=entry.currency, effective_from=entry.effective_from,
                                     description=entry.description, imported_at=at, imported_by=by))
            inserted += 1
            continue
        current = entry_of(row)
        if current.same_content(entry):
            unchanged += 1
            continue
        if not current.same_price(entry) and (used := await _extras_priced_from(session, row)):
            issues.append(PriceListIssue(
                entry.line or 0, "unit_price",
                f"{entry.kind.value} from {entry.effective_from} is already {current.unit_price} {current.currency} "
                f"per {current.basis}, and {used} billable extra(s) were priced from it; a new price needs a new "
                f"effective_from (rule C3)"))
            continue
        row.basis, row.unit_price, row.currency = entry.basis, entry.unit_price, entry.currency
        row.description, row.imported_at, row.imported_by = entry.description, at, by
        replaced += 1
    if issues:
        raise PriceListError(issues)
    await session.flush()
    return PriceImportCounts(inserted=inserted, replaced=replaced, unchanged=unchanged)


__all__ = ["PriceImportCounts", "entry_of", "import_prices", "list_price_rows", "list_prices",
           "price_effective_on"]
