"""Import of one region's holiday list (rule A1) from ops' file: `techconnect holidays import FILE --region R`.

CSV (`date,name`) or iCalendar (`.ics`, all-day VEVENTs), validated whole by `domain.holidays`, then written
in one transaction: the region's list is replaced for every year the file covers, other years are kept.
A refused file writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from domain.file_issues import FileIssue
from domain.holidays import HolidayListError, check_region, import_source, parse_holiday_csv, parse_holiday_ics
from storage.db import SessionFactory
from storage.repositories.holidays import replace_years


class HolidayImportReport(BaseModel):
    """JSON-ready (`techconnect holidays import --json` prints `model_dump()`)."""

    path: str
    region: str
    version: int
    years: list[int]
    holidays: int
    removed: int


def read_holiday_file(path: Path) -> str:
    """The file's text; HolidayListError when it is not UTF-8 (OSError when it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HolidayListError([FileIssue(1, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None


async def import_holiday_file(path: Path, region: str, session_factory: SessionFactory, *,
                              by: str) -> HolidayImportReport:
    """Validate `path` whole, then replace the region's years it covers in one transaction (all or nothing)."""
    check_region(region)
    text = read_holiday_file(path)
    holidays = parse_holiday_ics(text) if path.suffix.lower() in (".ics", ".ical") else parse_holiday_csv(text)
    async with session_factory() as session, session.begin():
        counts = await replace_years(session, region, holidays, source=import_source(path.name), by=by)
    return HolidayImportReport(path=str(path), region=region, version=counts.version, years=counts.years,
                               holidays=counts.holidays, removed=counts.removed)


__all__ = ["HolidayImportReport", "import_holiday_file", "read_holiday_file"]
