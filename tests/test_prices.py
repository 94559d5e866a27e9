"""OT's price list (rule C3) and the billable-extras ledger priced from it: the file, the import (all or
nothing), the price in force on a day, and the activity pricing an extra as it stores it, on SQLite and
PostgreSQL. Dates are fixed inside the data: nothing here depends on the day it runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activities.db import DatabaseActivities
from domain.activities import ExtraRecord
from domain.money import Money
from domain.prices import PriceListEntry, PriceListError, parse_price_list_csv, price_extra, price_on
from domain.program import BillableExtra
from domain.step_inputs import EXTRA_RULES, BillableExtraKind
from storage import repositories as repo
from storage.db import SessionFactory
from storage.price_import import import_price_list_csv
from storage.tables import BillableExtraRow, PriceListRow

HEADER = "kind,basis,unit_price,currency,effective_from,description\n"
PRICES = HEADER + (
    "on_site_dispatch,unit,1450.00,EUR,2026-01-01,One engineer on site for a day\n"
    "on_site_dispatch,unit,1520.00,EUR,2026-07-01,One engineer on site for a day (new list)\n"
    "optional_coverage,month,2400.00,EUR,2026-01-01,TL coverage outside the programme\n"
    "extra_call,unit,333.33,EUR,2026-01-01,A second follow-up call in a month\n"
)


def write(tmp_path: Path, body: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


async def stored(sessions: SessionFactory) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(PriceListRow))).scalar_one())


async def seed_customer(sessions: SessionFactory, customer_id: str = "acme") -> None:
    async with sessions() as s, s.begin():
        await repo.upsert_customer(s, customer_id, "ACME Corp", "SMP-1001", now=datetime(2026, 1, 1, tzinfo=UTC))


def extra(kind: BillableExtraKind, at: datetime, *, quantity: str = "1", amount: Money | None = None,
          reason: str | None = None) -> BillableExtra:
    return BillableExtra(kind=kind, rule=EXTRA_RULES[kind], description=f"{kind.value} on {at:%Y-%m-%d}",
                         agreement_ref="AGR-2026-7", quantity=Decimal(quantity), amount=amount,
                         override_reason=reason, recorded_at=at, recorded_by="ops-olga")


# ---- the file ------------------------------------------------------------------------------------------


def test_a_good_file_parses_with_every_field() -> None:
    entries = parse_price_list_csv("\ufeff" + PRICES)  # a spreadsheet's byte-order mark is read through
    assert [(e.kind, e.basis, e.unit_price, e.effective_from, e.line) for e in entries][:2] == [
        (BillableExtraKind.on_site_dispatch, "unit", Decimal("1450.00"), date(2026, 1, 1), 2),
        (BillableExtraKind.on_site_dispatch, "unit", Decimal("1520.00"), date(2026, 7, 1), 3)]
    assert entries[2].basis == "month" and entries[2].description == "TL coverage outside the programme"


@pytest.mark.parametrize(("line", "expected"), [
    ("meals,unit,10.00,EUR,2026-01-01,x", "line 2, field kind: 'meals' is not a kind of billable extra"),
    ("extra_call,week,10.00,EUR,2026-01-01,x", "line 2, field basis: 'week' is not a basis (unit | month | period)"),
    ("extra_call,unit,-10.00,EUR,2026-01-01,x", "line 2, field unit_price: '-10.00' is negative"),
    ("extra_call,unit,ten,EUR,2026-01-01,x", "line 2, field unit_price: 'ten' is not a price"),
    ("extra_call,unit,10.001,EUR,2026-01-01,x", "line 2, field unit_price: '10.001' is not a price"),
    ("extra_call,unit,10.00,euro,2026-01-01,x", "line 2, field currency: 'euro' is not a currency code"),
    ("extra_call,unit,10.00,eur,2026-01-01,x", "line 2, field currency: 'eur' is not a currency code"),
    ("extra_call,unit,10.00,EUR,01/02/2026,x", "line 2, field effective_from: '01/02/2026' is not a date (YYYY-MM-DD)"),
    ("extra_call,unit,10.00,EUR,20260101,x", "line 2, field effective_from: '20260101' is not a date (YYYY-MM-DD)"),
    ("extra_call,unit,10.00,EUR,2026-02-30,x", "line 2, field effective_from: '2026-02-30' is not a date"),
    ("extra_call,unit,10.00,EUR", "line 2: expected 6 fields, found 4"),
])
def test_each_kind_of_bad_line_is_refused_naming_line_and_field(line: str, expected: str) -> None:
    with pytest.raises(PriceListError) as info:
        parse_price_list_csv(HEADER + line + "\n")
    assert str(info.value).startswith(expected), str(info.value)
    assert [i.line for i in info.value.issues] == [2]


def test_a_missing_header_or_a_duplicate_price_is_refused() -> None:
    with pytest.raises(PriceListError) as info:
        parse_price_list_csv("extra_call,unit,10.00,EUR,2026-01-01,x\n")
    assert "line 1: header: missing column(s) kind, basis, unit_price, currency, effective_from" in str(info.value)
    with pytest.raises(PriceListError) as info:
        parse_price_list_csv("")
    assert str(info.value) == f"line 1: empty file; expected a header {HEADER.strip()}"
    # The same kind from the same day twice: which one would price an extra?
    with pytest.raises(PriceListError) as info:
        parse_price_list_csv(HEADER + "extra_call,unit,10.00,EUR,2026-01-01,a\n\n"
                                      "extra_call,unit,12.00,EUR,2026-01-01,b\n")
    assert str(info.value) == "line 4, field effective_from: extra_call from 2026-01-01 already appears on line 2"


# ---- prices ------------------------------------------------------------------------------------------


def test_the_price_in_force_is_the_latest_from_on_or_before_the_day() -> None:
    entries = parse_price_list_csv(PRICES)
    dispatch = BillableExtraKind.on_site_dispatch
    assert price_on(entries, dispatch, date(2025, 12, 31)) is None  # before the first price
    assert price_on(entries, dispatch, date(2026, 1, 1)).unit_price == Decimal("1450.00")  # type: ignore[union-attr]
    assert price_on(entries, dispatch, date(2026, 6, 30)).unit_price == Decimal("1450.00")  # type: ignore[union-attr]
    assert price_on(entries, dispatch, date(2026, 7, 1)).unit_price == Decimal("1520.00")  # type: ignore[union-attr]
    assert price_on(entries, BillableExtraKind.customisation, date(2026, 7, 1)) is None


def test_amount_is_quantity_times_unit_price_to_the_cent_half_up_or_the_override() -> None:
    call = PriceListEntry(kind=BillableExtraKind.extra_call, basis="unit", unit_price=Decimal("333.33"),
                          currency="EUR", effective_from=date(2026, 1, 1))
    priced = price_extra(Decimal("1.50"), call)
    assert (priced.amount, priced.currency, priced.unit_price, priced.basis) == (
        Decimal("500.00"), "EUR", Decimal("333.33"), "unit")  # 499.995 rounds half up
    assert price_extra(Decimal("0.05"), call).amount == Decimal("16.67")  # 16.6665
    override = price_extra(Decimal("2"), call, Money(amount=Decimal("600.00"), currency="EUR"))
    assert (override.amount, override.unit_price) == (Decimal("600.00"), Decimal("333.33"))  # the list kept beside
    unpriced = price_extra(Decimal("2"), None)
    assert not unpriced.priced and unpriced.amount is None and unpriced.unit_price is None


# ---- import: all or nothing --------------------------------------------------------------------------


@pytest.mark.rule("C3")
async def test_a_price_list_with_one_bad_line_is_refused_whole_and_writes_nothing(
    sessions: SessionFactory, tmp_path: Path,
) -> None:
    """Rule C3: extras follow OT's price list; a list half imported would price them from a mix."""
    bad = write(tmp_path, PRICES + "customisation,unit,12OO.00,EUR,2026-01-01,Custom work per day\n"
                                   "other,unit,50.00,EUR,2026-01-01,Other work\n")
    with pytest.raises(PriceListError) as info:
        await import_price_list_csv(bad, sessions, by="ops-olga")
    assert str(info.value).startswith("line 6, field unit_price: '12OO.00' is not a price")
    assert [(i.line, i.field) for i in info.value.issues] == [(6, "unit_price")]
    assert await stored(sessions) == 0

    report = await import_price_list_csv(write(tmp_path, PRICES, "good.csv"), sessions, by="ops-olga")
    assert (report.inserted, report.replaced, report.unchanged, report.total) == (4, 0, 0, 4)
    assert await stored(sessions) == 4
    # A second bad file keeps the list imported before.
    with pytest.raises(PriceListError):
        await import_price_list_csv(bad, sessions, by="ops-olga")
    async with sessions() as s:
        assert [(e.kind.value, e.unit_price) for e in await repo.list_prices(s)][:2] == [
            ("extra_call", Decimal("333.33")), ("on_site_dispatch", Decimal("1450.00"))]
        rows = await repo.list_price_rows(s)
    assert {r.imported_by for r in rows} == {"ops-olga"}


async def test_reimport_keeps_unchanged_lines_and_replaces_a_price_no_extra_used(
    sessions: SessionFactory, tmp_path: Path,
) -> None:
    await import_price_list_csv(write(tmp_path, PRICES), sessions, by="ops-olga")
    fixed = PRICES.replace("1520.00,EUR,2026-07-01", "1502.00,EUR,2026-07-01") + \
        "customisation,unit,1200.00,EUR,2026-01-01,Custom work per day\n"
    report = await import_price_list_csv(write(tmp_path, fixed, "fixed.csv"), sessions, by="ops-sam")
    assert (report.inserted, report.replaced, report.unchanged) == (1, 1, 3)
    async with sessions() as s:
        entry = await repo.price_effective_on(s, BillableExtraKind.on_site_dispatch, date(2026, 8, 1))
    assert entry is not None and entry.unit_price == Decimal("1502.00")


async def test_a_price_that_priced_an_extra_cannot_change_and_the_file_is_refused(
    sessions: SessionFactory, tmp_path: Path,
) -> None:
    await seed_customer(sessions)
    await import_price_list_csv(write(tmp_path, PRICES), sessions, by="ops-olga")
    await DatabaseActivities(sessions).record_billable_extra(ExtraRecord(
        customer_id="acme", period=1, idempotency_key="program-acme:p1:extra:1",
        extra=extra(BillableExtraKind.on_site_dispatch, datetime(2026, 3, 2, 9, 0, tzinfo=UTC))))
    changed = PRICES.replace("1450.00,EUR,2026-01-01", "1400.00,EUR,2026-01-01") + \
        "other,unit,50.00,EUR,2026-01-01,Other work\n"
    with pytest.raises(PriceListError) as info:
        await import_price_list_csv(write(tmp_path, changed, "changed.csv"), sessions, by="ops-olga")
    assert str(info.value).startswith("line 2, field unit_price: on_site_dispatch from 2026-01-01 is already "
                                      "1450.00 EUR per unit, and 1 billable extra(s) were priced from it")
    assert await stored(sessions) == 4  # nor the new "other" line


async def test_the_price_effective_on_a_day_from_the_database(sessions: SessionFactory, tmp_path: Path) -> None:
    await import_price_list_csv(write(tmp_path, PRICES), sessions, by="ops-olga")
    kind = BillableExtraKind.on_site_dispatch
    async with sessions() as s:
        found = [await repo.price_effective_on(s, kind, day)
                 for day in (date(2025, 12, 31), date(2026, 1, 1), date(2026, 6, 30), date(2026, 7, 1))]
        entries = await repo.list_prices(s)
    assert [e.unit_price if e else None for e in found] == [None, Decimal("1450.00"), Decimal("1450.00"),
                                                            Decimal("1520.00")]
    # The SQL and the pure function agree.
    assert [price_on(entries, kind, d) for d in (date(2026, 1, 1), date(2026, 7, 1))] == found[1::2]


# ---- the activity prices the extra as it stores it ---------------------------------------------------------


@pytest.mark.rule("C3")
async def test_the_activity_prices_extras_from_the_list_in_force_on_their_day(
    sessions: SessionFactory, tmp_path: Path,
) -> None:
    """Rule C3: quantity × the list price in force on the (UTC) day the extra is recorded; a price change applies
    to extras recorded from its effective date; an override with its reason wins; no price: unpriced."""
    await seed_customer(sessions)
    await import_price_list_csv(write(tmp_path, PRICES), sessions, by="ops-olga")
    acts = DatabaseActivities(sessions)
    dispatch, coverage = BillableExtraKind.on_site_dispatch, BillableExtraKind.optional_coverage
    records = [
        ("before", extra(dispatch, datetime(2026, 6, 30, 23, 59, tzinfo=UTC), quantity="2")),
        ("after", extra(dispatch, datetime(2026, 7, 1, 0, 1, tzinfo=UTC), quantity="2")),
        ("override", extra(coverage, datetime(2026, 7, 2, 9, 0, tzinfo=UTC), quantity="3",
                           amount=Money(amount=Decimal("6000.00")), reason="bundle agreed in AGR-2026-7")),
        ("unpriced", extra(BillableExtraKind.customisation, datetime(2026, 7, 3, 9, 0, tzinfo=UTC))),
    ]
    acks = [await acts.record_billable_extra(ExtraRecord(customer_id="acme", period=1, extra=x,
                                                         idempotency_key=f"program-acme:p1:extra:{name}"))
            for name, x in records]
    assert [a.detail.split(" (", 1)[1] for a in acks] == [
        "EUR 2900.00) recorded", "EUR 3040.00) recorded", "EUR 6000.00, override) recorded", "unpriced) recorded"]
    async with sessions() as s:
        rows = await repo.list_billable_extras(s, "acme")
    got = [(r.quantity, r.unit_price, r.price_basis, r.price_effective_from, r.amount, r.currency, r.override_reason)
           for r in rows]
    assert got == [
        (Decimal("2.00"), Decimal("1450.00"), "unit", date(2026, 1, 1), Decimal("2900.00"), "EUR", None),
        (Decimal("2.00"), Decimal("1520.00"), "unit", date(2026, 7, 1), Decimal("3040.00"), "EUR", None),
        (Decimal("3.00"), Decimal("2400.00"), "month", date(2026, 1, 1), Decimal("6000.00"), "EUR",
         "bundle agreed in AGR-2026-7"),
        (Decimal("1.00"), None, None, None, None, None, None),
    ]

    # A retried activity (the worker died after the commit) adds no row and keeps the first price, even if
    # the list changed in between.
    await import_price_list_csv(write(tmp_path, HEADER + "customisation,unit,900.00,EUR,2026-01-01,x\n", "more.csv"),
                                sessions, by="ops-olga")
    retry = await acts.record_billable_extra(ExtraRecord(customer_id="acme", period=1, extra=records[3][1],
                                                         idempotency_key="program-acme:p1:extra:unpriced"))
    assert retry.detail.endswith("(unpriced) already recorded")
    async with sessions() as s:
        assert int((await s.execute(select(func.count()).select_from(BillableExtraRow))).scalar_one()) == 4
