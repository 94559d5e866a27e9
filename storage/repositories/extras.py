"""Billable extras (rules C1, C3, C4, C6, C10, C11, C13, A4): each carries its agreement reference and its
price (rule C3: from OT's price list, or an override with its reason; NULL amount: unpriced)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.prices import ExtraPrice, price_extra
from domain.program import BillableExtra
from storage.repositories.clock import as_utc
from storage.repositories.common import Inserted, fresh, insert_ignore, one_by, rows
from storage.tables import BillableExtraRow


async def insert_billable_extra(
    session: AsyncSession, *, customer_id: str, period: int, extra: BillableExtra, idempotency_key: str,
    price: ExtraPrice | None = None,
) -> Inserted[BillableExtraRow]:
    """Store the extra once per key. `price` is what the activity found on the price list; without it, only
    the extra's own override prices it."""
    price = price or price_extra(extra.quantity, None, extra.amount, extra.months)
    created = await insert_ignore(session, BillableExtraRow, {
        "customer_id": customer_id, "period": period, "kind": str(extra.kind), "rule": extra.rule,
        "description": extra.description, "agreement_ref": extra.agreement_ref,  # rule C3
        "quantity": price.quantity, "unit_price": price.unit_price, "price_basis": price.basis,
        "price_effective_from": price.effective_from,
        # A reason without an amount overrides nothing: the row keeps reasons of overrides only.
        "override_reason": extra.override_reason if extra.amount is not None else None,
        "amount": price.amount, "currency": price.currency,
        "recorded_by": extra.recorded_by, "recorded_at": as_utc(extra.recorded_at),
        "idempotency_key": idempotency_key,
    }, ["idempotency_key"])
    row = await one_by(session, BillableExtraRow, BillableExtraRow.idempotency_key, idempotency_key)
    return Inserted(row, created)


async def list_billable_extras(
    session: AsyncSession, customer_id: str, *, period: int | None = None,
) -> list[BillableExtraRow]:
    stmt = fresh(select(BillableExtraRow).where(BillableExtraRow.customer_id == customer_id)
                 .order_by(BillableExtraRow.recorded_at, BillableExtraRow.id))
    return await rows(session, stmt, (BillableExtraRow.period, period))


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else datetime(year, month + 1, 1, tzinfo=UTC)
    return start, end


async def list_billable_extras_by_month(
    session: AsyncSession, year: int, month: int, *, customer_id: str | None = None,
) -> list[BillableExtraRow]:
    """Extras recorded in a calendar month (UTC), for invoicing."""
    start, end = _month_bounds(year, month)
    stmt = fresh(select(BillableExtraRow)
                 .where(BillableExtraRow.recorded_at >= start, BillableExtraRow.recorded_at < end)
                 .order_by(BillableExtraRow.customer_id, BillableExtraRow.recorded_at, BillableExtraRow.id))
    return await rows(session, stmt, (BillableExtraRow.customer_id, customer_id))


async def list_billable_extras_between(
    session: AsyncSession, first: date, last: date, *, customer_id: str | None = None,
) -> list[BillableExtraRow]:
    """Extras recorded from `first` to `last` inclusive (UTC days), for the ledger's export."""
    stmt = select(BillableExtraRow).where(BillableExtraRow.recorded_at >= datetime.combine(first, time(), UTC))
    if last < date.max:  # the day after the last one, unless there is none
        stmt = stmt.where(BillableExtraRow.recorded_at < datetime.combine(last + timedelta(days=1), time(), UTC))
    stmt = fresh(stmt.order_by(BillableExtraRow.recorded_at, BillableExtraRow.id))
    return await rows(session, stmt, (BillableExtraRow.customer_id, customer_id))
