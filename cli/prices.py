"""`techconnect prices ...`: OT's price list, which billable extras are priced from (rule C3)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli import runtime
from cli.runtime import emit, run_async, who
from config.settings import Settings
from domain.errors import Refused
from starter.database import database

prices_app = typer.Typer(help="OT's price list for billable extras (rule C3)", no_args_is_help=True)


@prices_app.command("import")
@run_async
async def prices_import(
    file: Path = typer.Argument(..., help="CSV: kind, basis, unit_price, currency, effective_from, description"),
    by: str = typer.Option(None, "--by", help="Who imports it (default: the login name)", show_default=False),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import prices (all or nothing): new lines are added, an unchanged line is left as it is."""
    from domain.prices import PriceListError
    from storage.price_import import import_price_list_csv

    async with database(Settings()) as sessions:
        try:
            report = await import_price_list_csv(file, sessions, by=by or who())
        except PriceListError as exc:
            # rule C3: every refused line, one a line, so the file is fixed in one go.
            lines = "\n".join(f"  {issue}" for issue in exc.issues)
            raise Refused(f"{file}: price list refused, nothing was imported:\n{lines}") from None
        except OSError as exc:
            raise Refused(f"cannot read {file}: {exc.strerror or exc}; nothing was imported") from None
    data = report.model_dump()
    emit(data, as_json, lambda: runtime.out.print(
        f"imported {escape(str(file))}: {data['inserted']} new, {data['replaced']} replaced, "
        f"{data['unchanged']} unchanged"))


@prices_app.command("list")
@run_async
async def prices_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every price, by kind and date; `in force` marks the one that prices an extra recorded today (UTC)."""
    from domain.prices import price_on
    from storage.ledger import plain
    from storage.repositories.clock import as_utc
    from storage.repositories.prices import entry_of, list_price_rows

    async with database(Settings()) as sessions, sessions() as session:
        rows = await list_price_rows(session)
    entries = [entry_of(r) for r in rows]
    today = datetime.now(UTC).date()
    current = {id(e) for e in (price_on(entries, kind, today) for kind in {e.kind for e in entries}) if e}
    data: list[dict[str, Any]] = [
        {"kind": e.kind.value, "basis": e.basis, "unit_price": plain(e.unit_price), "currency": e.currency,
         "effective_from": e.effective_from.isoformat(), "description": e.description, "in_force": id(e) in current,
         "imported_at": as_utc(r.imported_at).isoformat(timespec="seconds"), "imported_by": r.imported_by}
        for e, r in zip(entries, rows, strict=True)]

    def human() -> None:
        if not data:
            runtime.out.print("the price list is empty: import one with `techconnect prices import FILE.csv`")
            return
        t = Table("kind", "basis", "unit price", "currency", "from", "in force", "description")
        for d in data:
            t.add_row(d["kind"], d["basis"], d["unit_price"], d["currency"], d["effective_from"],
                      "yes" if d["in_force"] else "", escape(d["description"]))
        runtime.out.print(t)

    emit(data, as_json, human)


__all__ = ["prices_app"]
