"""`techconnect extras ...`: the billable-extras ledger (rule C3), priced from OT's price list.

`list` shows one customer's extras with their totals; `export` writes the ledger of a date range as
CSV on stdout, in the columns of `storage/ledger.py` (the portal's download is the same file).
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli import runtime
from cli.runtime import emit, run_async
from config.settings import Settings
from domain.errors import Refused
from domain.naming import is_valid_customer_id
from starter.database import database

extras_app = typer.Typer(help="Billable extras and their prices (rule C3)", no_args_is_help=True)


def _human(lines: list[dict[str, Any]], totals: list[Any]) -> None:
    if not lines:
        runtime.out.print("no billable extra")
        return
    t = Table("id", "recorded (UTC)", "period", "kind", "rule", "agreement", "qty", "unit price", "amount", "by")
    for x in lines:
        amount = f"{x['amount']} {x['currency']}" if x["priced"] else "[yellow]unpriced[/]"
        if x["override_reason"]:
            amount += f" (override: {escape(x['override_reason'])})"
        unit = f"{x['unit_price']}/{x['price_basis']}" if x["unit_price"] is not None else ""
        t.add_row(str(x["id"]), x["recorded_at"], str(x["period"]), x["kind"], x["rule"], escape(x["agreement_ref"]),
                  x["quantity"], unit, amount, escape(x["recorded_by"]))
    runtime.out.print(t)
    for total in totals:
        amounts = ", ".join(f"{v:.2f} {c}" for c, v in sorted(total.amounts.items())) or "nothing priced"
        unpriced = f"; {total.unpriced} unpriced" if total.unpriced else ""
        runtime.out.print(f"{total.customer_id} period {total.period}: {total.extras} extra(s), {amounts}{unpriced}")


@extras_app.command("list")
@run_async
async def extras_list(
    customer_id: str = typer.Argument(..., help="Customer ID"),
    period: int | None = typer.Option(None, "--period", min=1, help="Only this programme period"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One customer's extras, oldest first, with quantity, list price, amount (or unpriced) and totals."""
    if not is_valid_customer_id(customer_id):
        raise Refused(f"{customer_id!r} is not a customer ID (lower-case letters, digits and '-', at most 63)")
    from storage.ledger import ledger_line, ledger_totals
    from storage.repositories.extras import list_billable_extras

    async with database(Settings()) as sessions, sessions() as session:
        rows = await list_billable_extras(session, customer_id, period=period)
    lines = [ledger_line(r) for r in rows]
    emit(lines, as_json, lambda: _human(lines, ledger_totals(rows)))


def _day(option: str, value: str) -> date:
    from domain.prices import iso_day

    if (day := iso_day(value)) is None:
        raise Refused(f"{option} {value!r} is not a date (YYYY-MM-DD)")
    return day


@extras_app.command("export")
@run_async
async def extras_export(
    first: str = typer.Option(..., "--from", help="First day recorded, YYYY-MM-DD (UTC)"),
    last: str = typer.Option(..., "--to", help="Last day recorded, YYYY-MM-DD (UTC), included"),
    fmt: str = typer.Option("csv", "--format", help="csv"),
) -> None:
    """Every customer's extras recorded from --from to --to (both included, UTC days), as CSV on stdout."""
    if fmt != "csv":
        raise Refused(f"--format {fmt!r}: the ledger is exported as csv")
    start, end = _day("--from", first), _day("--to", last)
    if end < start:
        raise Refused(f"--to {end} is before --from {start}")
    from storage.ledger import ledger_csv
    from storage.repositories.extras import list_billable_extras_between

    async with database(Settings()) as sessions, sessions() as session:
        rows = await list_billable_extras_between(session, start, end)
    sys.stdout.write(ledger_csv(rows))


__all__ = ["extras_app"]
