"""The portal's billable-extras ledger and OT's price list (rule C3), over HTTP on the ASGI app with SQLite
and no Temporal: quantity, unit price and amount per extra, totals per customer and period, the CSV
download (the columns of `techconnect extras export`), the read-only price list page and who sees it,
and the extra form's override check. Dates are fixed inside the data."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from activities.db import DatabaseActivities
from config.settings import Settings
from domain.activities import ExtraRecord
from domain.money import Money
from domain.program import BillableExtra
from domain.step_inputs import EXTRA_RULES, BillableExtraKind
from portal.app import create_app
from storage import repositories as repo
from storage.db import SessionFactory
from storage.ledger import LEDGER_COLUMNS, ledger_csv
from storage.price_import import import_price_list_csv
from storage.users import Role
from testing.databases import migrated_sessions
from tests.portal_fixtures import InProcess, UnreachableTemporal, add_staff, seed_tenant, sign_in

PRICES = (
    "kind,basis,unit_price,currency,effective_from,description\n"
    "on_site_dispatch,unit,1450.00,EUR,2026-01-01,One engineer on site for a day\n"
    "optional_coverage,month,2400.00,EUR,2026-01-01,TL coverage outside the programme\n"
)
OPS, MANAGER, ADMIN = "ops@techconnect.example", "manager@techconnect.example", "admin@techconnect.example"


@dataclass
class Portal(InProcess):
    app: Any
    sessions: SessionFactory
    temporal: UnreachableTemporal
    tl_email: str
    contact_email: str


def _extra(kind: BillableExtraKind, at: datetime, quantity: str = "1", amount: str | None = None,
           reason: str | None = None) -> BillableExtra:
    return BillableExtra(kind=kind, rule=EXTRA_RULES[kind], description=f"{kind.value} <b>{at:%d %b}</b>",
                         agreement_ref="AGR-7", quantity=Decimal(quantity), recorded_at=at, recorded_by="ops-olga",
                         amount=Money(amount=Decimal(amount)) if amount else None, override_reason=reason)


LEDGER = [
    ("acme", 1, _extra(BillableExtraKind.on_site_dispatch, datetime(2026, 3, 2, 9, 30, tzinfo=UTC), "2")),
    ("acme", 1, _extra(BillableExtraKind.optional_coverage, datetime(2026, 3, 10, 14, 0, tzinfo=UTC), "1",
                       "2000.00", "first month at the trial rate")),
    ("acme", 1, _extra(BillableExtraKind.customisation, datetime(2026, 3, 12, 9, 0, tzinfo=UTC))),
    ("globex", 1, _extra(BillableExtraKind.on_site_dispatch, datetime(2026, 4, 2, 9, 0, tzinfo=UTC))),
]


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    async with migrated_sessions(sqlite_url) as sessions:
        mine = await seed_tenant(sessions, "acme", "tl-alice")
        await seed_tenant(sessions, "globex", "tl-bob")
        for email, role in ((OPS, Role.ops), (MANAGER, Role.support_manager), (ADMIN, Role.admin)):
            await add_staff(sessions, email, role)
        (tmp_path / "prices.csv").write_text(PRICES, encoding="utf-8")
        await import_price_list_csv(tmp_path / "prices.csv", sessions, by="ops-olga")
        acts = DatabaseActivities(sessions)
        for n, (customer, period, extra) in enumerate(LEDGER, 1):
            await acts.record_billable_extra(ExtraRecord(customer_id=customer, period=period, extra=extra,
                                                         idempotency_key=f"program-{customer}:extra:{n}"))
        temporal = UnreachableTemporal()
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=temporal)  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            yield Portal(app, sessions, temporal, mine.tl_email, mine.contact_email)


def _row(html: str, marker: str) -> str:
    start = html.index(marker)
    return html[start:html.index("</tr>", start)]


async def test_the_extras_page_shows_each_price_and_the_totals_per_customer_and_period(portal: Portal) -> None:
    async with portal.client() as http:
        await sign_in(http, OPS)
        page = await http.get("/ops/extras")
    assert page.status_code == 200
    html = page.text
    async with portal.sessions() as s:
        ids = {r.kind: r.id for r in await repo.list_billable_extras(s, "acme")}
    dispatch = _row(html, f'data-extra="{ids["on_site_dispatch"]}"')
    assert ">2<" in dispatch and "1,450.00 / unit" in dispatch and "EUR 2,900.00" in dispatch
    coverage = _row(html, f'data-extra="{ids["optional_coverage"]}"')
    assert "2,400.00 / month" in coverage and "EUR 2,000.00" in coverage and "first month at the trial rate" in coverage
    custom = _row(html, f'data-extra="{ids["customisation"]}"')
    assert "unpriced" in custom and "no list price" in custom
    assert "&lt;b&gt;" in custom  # a description is text, never markup
    # Totals: acme's first period adds the priced extras and counts the unpriced one apart.
    acme = _row(html, 'data-total="acme-1"')
    assert "<td>3</td>" in acme and "EUR 4,900.00" in acme and "1 unpriced" in acme
    globex = _row(html, 'data-total="globex-1"')
    assert "EUR 1,450.00" in globex and "<td>0</td>" in globex
    # The form says where the price comes from, and asks for the override's reason.
    assert "the price comes from OT&#39;s price list" in html and 'name="override_reason"' in html
    assert 'name="quantity"' in html and 'href="/ops/prices"' in html


async def test_the_csv_download_is_the_ledger_with_the_cli_exports_columns(portal: Portal) -> None:
    async with portal.client() as http:
        await sign_in(http, MANAGER)  # everyone with the operations pages
        everything = await http.get("/ops/extras.csv")
        march = await http.get("/ops/extras.csv", params={"from": "2026-03-01", "to": "2026-03-31"})
        bad = await http.get("/ops/extras.csv", params={"from": "2026-W10-1"})
        backwards = await http.get("/ops/extras.csv", params={"from": "2026-03-31", "to": "2026-03-01"})
    assert everything.status_code == 200 and everything.headers["content-type"].startswith("text/csv")
    assert everything.headers["content-disposition"] == 'attachment; filename="billable-extras-start-to-now.csv"'
    table = list(csv.reader(io.StringIO(march.text, newline="")))
    assert tuple(table[0]) == LEDGER_COLUMNS
    rows = [dict(zip(table[0], r, strict=True)) for r in table[1:]]
    assert [(r["customer_id"], r["kind"], r["quantity"], r["unit_price"], r["amount"], r["override_reason"])
            for r in rows] == [
        ("acme", "on_site_dispatch", "2", "1450.00", "2900.00", ""),
        ("acme", "optional_coverage", "1", "2400.00", "2000.00", "first month at the trial rate"),
        ("acme", "customisation", "1", "", "unpriced", "")]
    assert len(everything.text.splitlines()) == 1 + len(LEDGER)
    # The very function the command line writes with.
    async with portal.sessions() as s:
        stored = await repo.list_billable_extras_between(s, date(2026, 3, 1), date(2026, 3, 31))
    assert march.text == ledger_csv(stored)
    assert bad.status_code == 422 and backwards.status_code == 422
    assert portal.temporal.calls == []


@pytest.mark.parametrize(("who", "status"), [(OPS, 200), (ADMIN, 200), (MANAGER, 403), ("tl", 403), ("contact", 403)])
async def test_the_price_list_page_is_for_operations_and_admins(portal: Portal, who: str, status: int) -> None:
    email = {"tl": portal.tl_email, "contact": portal.contact_email}.get(who, who)
    async with portal.client() as http:
        await sign_in(http, email)
        page = await http.get("/ops/prices")
        account = await http.get("/account")
    assert page.status_code == status
    assert ('href="/ops/prices"' in account.text) == (status == 200)  # the nav link only where the page opens
    if status == 200:
        dispatch = _row(page.text, 'data-price="on_site_dispatch-2026-01-01"')
        assert "EUR 1,450.00" in dispatch and "unit" in dispatch and "A4" in dispatch and "ops-olga" in dispatch
        assert "in force" in dispatch  # 1 Jan 2026 is past, whatever the day the test runs
        assert 'data-price="optional_coverage-2026-01-01"' in page.text


@pytest.mark.rule("C3")
async def test_an_amount_without_its_reason_is_refused_beside_the_field_before_temporal(portal: Portal) -> None:
    """Rule C3: the price comes from OT's list; an amount typed over it needs its reason."""
    async with portal.client() as http:
        csrf = await sign_in(http, OPS)
        response = await http.post("/ops/extras", data={
            "csrf_token": csrf, "customer_id": "acme", "kind": "on_site_dispatch", "agreement_ref": "AGR-8",
            "description": "Second day on site", "quantity": "1", "amount.amount": "1000.00",
            "amount.currency": "EUR", "override_reason": " "})
    assert response.status_code == 409
    html = response.text
    error = html[html.index('data-error-for="override_reason"'):]
    assert "Rule C3: an amount other than OT&#39;s price list needs its reason" in error[:400]
    assert portal.temporal.calls == []  # refused here: nothing reached the workflow
