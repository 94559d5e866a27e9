"""OT's published holiday lists (rule A1: the TL works except on holidays published by OT), pure.

A list belongs to a region ("FR", "DE-BY", or an OT name such as "OT-EMEA", see
`BusinessCalendar.holiday_list_region`); each year of it is either seeded from the `holidays` package on
first use or imported by ops. Here: the file formats ops import (CSV `date,name`; ICS all-day VEVENTs),
validated whole so a bad line refuses the file, and the names a deadline records for the list it used.
Reading files and writing rows are storage's (`storage/holiday_import.py`, `storage/repositories/holidays.py`).

    date,name
    2027-05-10,OT company day
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

import icalendar
from pydantic import BaseModel, ConfigDict, Field

from domain.calendar import HOLIDAY_REGION_RE, HOLIDAY_REGION_RULE
from domain.errors import Refused
from domain.file_issues import FileIssue, csv_rows
from domain.prices import iso_day

COLUMNS = ("date", "name")
NAME_MAX = 255  # the `holidays.name` column
# A multi-day ICS event longer than this is a mistake (a DTEND a year out), not a closure.
MAX_EVENT_DAYS = 31
SEEDED_BY = "first use"  # `updated_by` of a year seeded from the `holidays` package


class Holiday(BaseModel):
    """One day of a list. `line` is where it came from in an imported file (not part of the holiday)."""

    model_config = ConfigDict(frozen=True)

    day: date
    name: str = Field(min_length=1, max_length=NAME_MAX)
    line: int | None = Field(default=None, exclude=True)


class HolidayListError(Refused):
    """The file was refused (the CLI exits 2); `issues` lists every bad line. Nothing was written."""

    def __init__(self, issues: list[FileIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(map(str, issues)))


class HolidayYear(BaseModel):
    """Where one year of a region's list came from (the ops page, `techconnect holidays list`)."""

    region: str
    year: int
    version: int
    source: str
    updated_at: datetime
    updated_by: str


class PublishedHolidays(BaseModel):
    """The days of a region's list over some years, and the list's identity a deadline records (rule A1)."""

    days: frozenset[date]
    list_name: str  # e.g. "OT list FR v3" or "holidays package 0.109"


def check_region(region: str) -> str:
    """The region as given, or Refused naming the rule for its form."""
    if not HOLIDAY_REGION_RE.match(region):
        raise Refused(f"region {region!r}: {HOLIDAY_REGION_RULE}")
    return region


def list_name(region: str, version: int) -> str:
    return f"OT list {region} v{version}"


def _year_ranges(years: list[int]) -> str:
    """2026, 2027, 2028, 2030 -> "2026-2028, 2030"."""
    parts: list[str] = []
    start = prev = years[0]
    for year in [*years[1:], None]:
        if year is not None and year == prev + 1:
            prev = year
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if year is not None:
            start = prev = year
    return ", ".join(parts)


def fallback_list_name(region: str, version: int, own_region: str, own_version: int, missing: list[int],
                       *, none_defined: bool) -> str:
    """The name of what a deadline used when the named region (e.g. OT-EMEA) has no list for some years and the
    calendar's own country list stood in for them, e.g. "OT list FR v2 (no OT-EMEA list for 2027)"."""
    gap = f"(no {region} list for {_year_ranges(sorted(missing))})"
    if none_defined:
        return f"{list_name(own_region, own_version)} {gap}"
    return f"{list_name(region, version)} + {own_region} v{own_version} {gap}"


def package_source(version: str, country: str, subdivision: str | None) -> str:
    where = f"{country}-{subdivision}" if subdivision else country
    return f"holidays package {version} ({where})"


def import_source(file_name: str) -> str:
    return f"import {file_name}"[:255]


# ---- the files ---------------------------------------------------------------------------------------------


def _holiday(line: int, raw_day: str, raw_name: str, seen: dict[date, int], issues: list[FileIssue],
             *, date_field: str = "date", name_field: str = "name") -> Holiday | None:
    before = len(issues)
    day = iso_day(raw_day)
    if day is None:
        issues.append(FileIssue(line, date_field, f"{raw_day!r} is not a date (YYYY-MM-DD)"))
    name = raw_name.strip()
    if not name:
        issues.append(FileIssue(line, name_field, "blank: every holiday needs a name"))
    elif len(name) > NAME_MAX:
        issues.append(FileIssue(line, name_field, f"longer than {NAME_MAX} characters"))
    if day is not None:
        if day in seen:
            issues.append(FileIssue(line, date_field, f"{day} already appears on line {seen[day]}"))
        else:
            seen[day] = line
    if len(issues) > before or day is None:
        return None
    return Holiday(day=day, name=name, line=line)


def _checked(holidays: list[Holiday], issues: list[FileIssue]) -> list[Holiday]:
    if issues:
        raise HolidayListError(sorted(issues, key=lambda i: i.line))
    if not holidays:
        raise HolidayListError([FileIssue(1, None, "no holiday in the file: nothing to replace a year's list with")])
    return sorted(holidays, key=lambda h: h.day)


def _csv_header_issue(line: int, names: list[str]) -> FileIssue | None:
    if sorted(names) == sorted(COLUMNS):
        return None
    return FileIssue(line, None, f"header: expected the columns {','.join(COLUMNS)}, found {','.join(names)}")


def parse_holiday_csv(text: str) -> list[Holiday]:
    """Validate the whole CSV file (`date,name`); HolidayListError lists every bad line and field (rule A1)."""
    holidays: list[Holiday] = []
    issues: list[FileIssue] = []
    seen: dict[date, int] = {}
    for line, raw in csv_rows(text, COLUMNS, _csv_header_issue, issues):
        holiday = _holiday(line, raw["date"].strip(), raw["name"], seen, issues)
        if holiday is not None:
            holidays.append(holiday)
    return _checked(holidays, issues)


_QUOTED = re.compile(r"'([^']*)'")


def _event_lines(text: str) -> list[dict[str, int]]:
    """For each VEVENT in file order, the physical line each property starts on ("BEGIN" included); icalendar
    does not keep line numbers and a refusal must name one."""
    events: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw or raw[0] in " \t":  # a folded continuation of the line before
            continue
        prop = re.split(r"[;:]", raw, maxsplit=1)[0].strip().upper()
        if raw.strip().upper() == "BEGIN:VEVENT":
            current = {"BEGIN": number}
            events.append(current)
        elif raw.strip().upper() == "END:VEVENT":
            current = None
        elif current is not None:
            current.setdefault(prop, number)
    return events


def _line_of(text: str, message: str) -> int:
    """The line a whole-file parse error quotes, else 1."""
    for quoted in _QUOTED.findall(message):
        for number, raw in enumerate(text.splitlines(), start=1):
            if quoted and raw.strip() == quoted.strip():
                return number
    return 1


def _event_days(event: icalendar.cal.Component, at: dict[str, int], issues: list[FileIssue]) -> list[date]:
    start_line = at.get("DTSTART", at["BEGIN"])
    errors = dict((name or "", why) for name, why in event.errors)
    if "DTSTART" not in event or "DTSTART" in errors:
        why = errors.get("DTSTART", "missing")
        issues.append(FileIssue(start_line, "DTSTART", f"{why}: every event needs an all-day date "
                                                       "(DTSTART;VALUE=DATE:YYYYMMDD)"))
        return []
    start = event.decoded("DTSTART")
    if isinstance(start, datetime) or not isinstance(start, date):
        issues.append(FileIssue(start_line, "DTSTART", f"{start} is not an all-day date (DTSTART;VALUE=DATE:YYYYMMDD)"))
        return []
    end = start + timedelta(days=1)
    if "DTEND" in event and "DTEND" not in errors:
        raw_end = event.decoded("DTEND")
        end_line = at.get("DTEND", start_line)
        if isinstance(raw_end, datetime) or not isinstance(raw_end, date):
            issues.append(FileIssue(end_line, "DTEND", f"{raw_end} is not an all-day date"))
            return []
        if not start < raw_end <= start + timedelta(days=MAX_EVENT_DAYS):
            issues.append(FileIssue(end_line, "DTEND", f"{raw_end} is not 1 to {MAX_EVENT_DAYS} days after {start} "
                                                       "(all-day DTEND is the day after the last one)"))
            return []
        end = raw_end
    return [start + timedelta(days=i) for i in range((end - start).days)]


def parse_holiday_ics(text: str) -> list[Holiday]:
    """Validate an iCalendar file: each VEVENT an all-day DTSTART (and optional DTEND, exclusive) with a SUMMARY;
    HolidayListError lists every bad event by line and property (rule A1)."""
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise HolidayListError([FileIssue(_line_of(text, str(exc)), None, f"not valid iCalendar ({exc})")]) from None
    lines = _event_lines(text)
    holidays: list[Holiday] = []
    issues: list[FileIssue] = []
    seen: dict[date, int] = {}
    for event, at in zip(calendar.walk("VEVENT"), lines, strict=False):
        for name, why in event.errors:
            if name not in ("DTSTART", "DTEND"):
                issues.append(FileIssue(at.get(name or "", at["BEGIN"]), name, f"not valid iCalendar ({why})"))
        summary = str(event.get("SUMMARY", ""))
        for day in _event_days(event, at, issues):
            holiday = _holiday(at.get("DTSTART", at["BEGIN"]), day.isoformat(), summary, seen, issues,
                               date_field="DTSTART", name_field="SUMMARY")
            if holiday is not None:
                holidays.append(holiday)
    return _checked(holidays, issues)


def describe_list(region: str, version: int | None, years: list[HolidayYear]) -> str:
    """One line saying which holiday list a programme's deadlines use (rule A1), for the programme page."""
    if not version or not years:
        return f"OT list {region}: nothing published yet (seeded from the holidays package on first use)"
    parts = [f"{y.year} {y.source}" + ("" if y.updated_by == SEEDED_BY else
                                      f" by {y.updated_by} on {y.updated_at:%Y-%m-%d}") for y in years]
    return f"OT list {region}, version {version}: " + "; ".join(parts)


__all__ = ["COLUMNS", "SEEDED_BY", "Holiday", "HolidayListError", "HolidayYear", "PublishedHolidays",
           "check_region", "describe_list", "fallback_list_name", "import_source", "list_name", "package_source",
           "parse_holiday_csv", "parse_holiday_ics"]
