"""`techconnect holidays ...`: OT's published holiday lists, which due dates and first-response deadlines
skip (rule A1)."""

from __future__ import annotations

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

holidays_app = typer.Typer(help="OT's holiday lists per region (rule A1)", no_args_is_help=True)


@holidays_app.command("import")
@run_async
async def holidays_import(
    file: Path = typer.Argument(..., help="CSV (date,name) or .ics (all-day VEVENTs with a SUMMARY)"),
    region: str = typer.Option(..., "--region", help="e.g. FR, DE-BY, OT-EMEA"),
    by: str = typer.Option(None, "--by", help="Who imports it (default: the login name)", show_default=False),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replace the region's list for every year the file covers (all or nothing); other years are kept."""
    from domain.holidays import HolidayListError
    from storage.holiday_import import import_holiday_file

    async with database(Settings()) as sessions:
        try:
            report = await import_holiday_file(file, region, sessions, by=by or who())
        except HolidayListError as exc:
            lines = "\n".join(f"  {issue}" for issue in exc.issues)  # every bad line, so the file is fixed in one go
            raise Refused(f"{file}: holiday list refused, nothing was imported:\n{lines}") from None
        except OSError as exc:
            raise Refused(f"cannot read {file}: {exc.strerror or exc}; nothing was imported") from None
    data = report.model_dump()
    emit(data, as_json, lambda: runtime.out.print(
        f"imported {escape(str(file))} as the {escape(region)} list, version {data['version']}: "
        f"{data['holidays']} holiday(s) for {', '.join(map(str, data['years']))} "
        f"(replacing {data['removed']})"))


@holidays_app.command("list")
@run_async
async def holidays_list(
    region: str = typer.Option(..., "--region", help="e.g. FR, DE-BY, OT-EMEA"),
    year: int = typer.Option(..., "--year", min=1, max=9999),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The region's holidays in a year, and where that year's list came from."""
    from domain.holidays import check_region
    from storage.repositories.holidays import get_holiday_list, list_holiday_years, list_holidays

    check_region(region)
    async with database(Settings()) as sessions, sessions() as session:
        head = await get_holiday_list(session, region)
        years = {y.year: y for y in await list_holiday_years(session, region)}
        days = await list_holidays(session, region, year)
    known = years.get(year)
    data: dict[str, Any] = {
        "region": region, "year": year, "version": head.version if head else None,
        "source": known.source if known else None,
        "updated_at": known.updated_at.isoformat(timespec="seconds") if known else None,
        "updated_by": known.updated_by if known else None,
        "holidays": [{"date": h.day.isoformat(), "name": h.name} for h in days]}

    def human() -> None:
        if known is None:
            runtime.out.print(f"no {escape(region)} list for {year} yet: the first deadline computed for it seeds "
                              f"it from the holidays package, or import one with "
                              f"`techconnect holidays import FILE --region {escape(region)}`")
            return
        runtime.out.print(f"{escape(region)} {year}, list version {data['version']}: {escape(known.source)}, "
                          f"{data['updated_at']} by {escape(known.updated_by)}")
        t = Table("date", "day", "name")
        for h in days:
            t.add_row(h.day.isoformat(), h.day.strftime("%A"), escape(h.name))
        runtime.out.print(t)

    emit(data, as_json, human)


__all__ = ["holidays_app"]
