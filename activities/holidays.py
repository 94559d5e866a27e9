"""Where the calendar activities get holidays from (rule A1: the TL works except on holidays published by OT).

`PackageHolidays` reads the `holidays` package directly: the default when nothing is injected (tests, tools)
and the seed of the published lists. `DatabaseHolidays` (what worker.py injects) reads OT's published list of
the calendar's region from the database; a year nobody published yet is seeded from the package on first use,
so the list is in the database, and editable, before any deadline depends on it. It reads the database on
every call (no cache), so a list imported a moment ago counts for the next deadline; deadlines already
computed are activity results in history and never recomputed.
"""

from __future__ import annotations

from datetime import date
from importlib.metadata import version
from typing import Protocol

import holidays as holidays_lib

from domain.calendar import HOLIDAY_REGION_RE, HOLIDAY_REGION_RULE, BusinessCalendar
from domain.holidays import NAME_MAX, SEEDED_BY, Holiday, PublishedHolidays, list_name, package_source
from storage.db import SessionFactory
from storage.repositories.holidays import seed_years, stored_holidays


class NoHolidayData(ValueError):
    """No holiday data for the calendar (an unknown country or subdivision, a bad region): it will not get
    better on retry."""


class HolidaySource(Protocol):
    async def holidays(self, cal: BusinessCalendar, first_year: int, last_year: int) -> PublishedHolidays:
        """The holidays of `cal` for the years given (inclusive), and the name of the list they come from."""
        ...


def _years(first_year: int, last_year: int) -> range:
    return range(max(first_year, date.min.year), min(last_year, date.max.year) + 1)


class PackageHolidays:
    """The `holidays` package's public holidays of a country/subdivision, cached per (country, subdivision, year):
    its data only changes with a new release, i.e. a new process."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str | None, int], dict[date, str]] = {}
        self.version = version("holidays")
        self.list_name = f"holidays package {self.version}"

    def source_name(self, cal: BusinessCalendar) -> str:
        return package_source(self.version, cal.country, cal.subdivision)

    def year(self, country: str, subdivision: str | None, year: int) -> dict[date, str]:
        key = (country, subdivision, year)
        found = self.cache.get(key)
        if found is None:
            try:
                raw = holidays_lib.country_holidays(country, subdiv=subdivision, years=year)
            except NotImplementedError as exc:
                raise NoHolidayData(f"rule C5: no public-holiday data for country {country!r}"
                                    f" subdivision {subdivision!r}: {exc}") from exc
            found = {d: (str(name).strip() or "holiday")[:NAME_MAX] for d, name in raw.items()}
            self.cache[key] = found
        return found

    def days(self, cal: BusinessCalendar, first_year: int, last_year: int) -> set[date]:
        result: set[date] = set()
        for year in _years(first_year, last_year):
            result |= self.year(cal.country, cal.subdivision, year).keys()
        return result

    async def holidays(self, cal: BusinessCalendar, first_year: int, last_year: int) -> PublishedHolidays:
        return PublishedHolidays(days=frozenset(self.days(cal, first_year, last_year)), list_name=self.list_name)


class DatabaseHolidays:
    """OT's published list of the calendar's region (`BusinessCalendar.holiday_list_region`), seeded from the
    package for the years nobody published yet."""

    def __init__(self, session_factory: SessionFactory, package: PackageHolidays | None = None) -> None:
        self._sessions = session_factory
        self._package = package or PackageHolidays()

    async def holidays(self, cal: BusinessCalendar, first_year: int, last_year: int) -> PublishedHolidays:
        region = cal.holiday_list_region
        if not HOLIDAY_REGION_RE.match(region):
            raise NoHolidayData(f"rule A1: holiday region {region!r}: {HOLIDAY_REGION_RULE}")
        years = _years(first_year, last_year)
        first_year, last_year = years.start, years.stop - 1
        async with self._sessions() as session:
            stored = await stored_holidays(session, region, first_year, last_year)
        if stored.missing_years:
            seed = {y: [Holiday(day=d, name=n) for d, n in sorted(self._package.year(cal.country, cal.subdivision,
                                                                                      y).items())]
                    for y in stored.missing_years}
            async with self._sessions() as session, session.begin():
                await seed_years(session, region, seed, source=self._package.source_name(cal), by=SEEDED_BY)
            async with self._sessions() as session:
                stored = await stored_holidays(session, region, first_year, last_year)
            if stored.missing_years:  # an import between the two reads cannot remove a year: a real fault
                raise RuntimeError(f"holiday list {region}: years {stored.missing_years} still undefined after seeding")
        return PublishedHolidays(days=stored.days, list_name=list_name(region, stored.version))


__all__ = ["DatabaseHolidays", "HolidaySource", "NoHolidayData", "PackageHolidays"]
