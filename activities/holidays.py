"""Where the calendar activities get holidays from (rule A1: the TL works except on holidays published by OT).

`PackageHolidays` reads the `holidays` package directly: the default when nothing is injected (tests, tools)
and the seed of the published lists. `DatabaseHolidays` (what worker.py injects) reads OT's published list of
the calendar's region from the database; a year of a country's list nobody published yet is seeded from the
package on first use, so the list is in the database, and editable, before any deadline depends on it. Every
call checks the list's version, so a list imported a moment ago counts for the next deadline; deadlines
already computed are activity results in history and never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from importlib.metadata import version
from typing import Protocol

import holidays as holidays_lib

from domain.calendar import HOLIDAY_REGION_RE, HOLIDAY_REGION_RULE, BusinessCalendar
from domain.holidays import (
    NAME_MAX,
    SEEDED_BY,
    Holiday,
    PublishedHolidays,
    fallback_list_name,
    list_name,
    package_source,
)
from storage.db import SessionFactory
from storage.repositories.holidays import StoredHolidays, list_version, seed_years, stored_holidays


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


@dataclass(frozen=True)
class _Cached:
    """What this process read of one region's list at one version: per year its days, None for a year the
    list does not define (at that version: defining a year bumps the version)."""

    version: int
    years: dict[int, frozenset[date] | None]

    def covers(self, version: int, years: range) -> bool:
        return self.version == version and all(y in self.years for y in years)

    def stored(self, years: range) -> StoredHolidays:
        by_year = {y: days for y in years if (days := self.years[y]) is not None}
        return StoredHolidays(version=self.version, by_year=by_year,
                              missing_years=[y for y in years if self.years[y] is None])


def _own_region(cal: BusinessCalendar) -> str:
    """The region of the calendar's country[-subdivision], whose list is seeded from the package."""
    return cal.model_copy(update={"holiday_region": None}).holiday_list_region


class DatabaseHolidays:
    """OT's published list of the calendar's region (`BusinessCalendar.holiday_list_region`).

    The calendar's own country[-subdivision] list is seeded from the package for the years nobody published
    yet. A named OT region (e.g. OT-EMEA) is never seeded: what it would hold depends on OT, not on which
    calendar asked first. For a year it does not define, the calendar's own list stands in and the name
    returned says so ("OT list FR v2 (no OT-EMEA list for 2027)"), so no deadline fails for a missing list.

    Request opening computes a deadline in a local activity, so reads are cached per process by (region,
    year) with the list's version: a call costs one version query while the version is unchanged, and reads
    the days again as soon as an import (which bumps the version) changed it. Every answer is one version.
    """

    def __init__(self, session_factory: SessionFactory, package: PackageHolidays | None = None) -> None:
        self._sessions = session_factory
        self._package = package or PackageHolidays()
        self._cache: dict[str, _Cached] = {}

    async def holidays(self, cal: BusinessCalendar, first_year: int, last_year: int) -> PublishedHolidays:
        region, own = cal.holiday_list_region, _own_region(cal)
        if not HOLIDAY_REGION_RE.match(region):
            raise NoHolidayData(f"rule A1: holiday region {region!r}: {HOLIDAY_REGION_RULE}")
        years = _years(first_year, last_year)
        stored = await self._read(region, years, cal if region == own else None)
        if not stored.missing_years:
            return PublishedHolidays(days=stored.days, list_name=list_name(region, stored.version))
        missing = stored.missing_years
        stand_in = await self._read(own, range(missing[0], missing[-1] + 1), cal)
        days = stored.days.union(*(stand_in.by_year.get(y, frozenset()) for y in missing))
        return PublishedHolidays(days=days, list_name=fallback_list_name(
            region, stored.version, own, stand_in.version, missing, none_defined=not stored.by_year))

    async def _read(self, region: str, years: range, seed_from: BusinessCalendar | None) -> StoredHolidays:
        """The region's list for `years` at one version, from the cache when its version is current; the
        undefined years seeded from the package first when `seed_from` is given."""
        first, last = years.start, years.stop - 1
        async with self._sessions() as session:
            cached = self._cache.get(region)
            if cached is not None and cached.covers(await list_version(session, region), years):
                return cached.stored(years)
            stored = await stored_holidays(session, region, first, last)
        if stored.missing_years and seed_from is not None:
            cal = seed_from
            seed = {y: [Holiday(day=d, name=n) for d, n in sorted(self._package.year(cal.country, cal.subdivision,
                                                                                      y).items())]
                    for y in stored.missing_years}
            async with self._sessions() as session, session.begin():
                await seed_years(session, region, seed, source=self._package.source_name(cal), by=SEEDED_BY)
            async with self._sessions() as session:
                stored = await stored_holidays(session, region, first, last)
            if stored.missing_years:  # an import between the two reads cannot remove a year: a real fault
                raise RuntimeError(f"holiday list {region}: years {stored.missing_years} still undefined after seeding")
        self._remember(region, years, stored)
        return stored

    def _remember(self, region: str, years: range, stored: StoredHolidays) -> None:
        read: dict[int, frozenset[date] | None] = {y: stored.by_year.get(y) for y in years}
        cached = self._cache.get(region)
        if cached is not None and cached.version == stored.version:
            read = cached.years | read
        # A new object, never a change in place: a concurrent call may be reading the old one.
        self._cache[region] = _Cached(version=stored.version, years=read)


__all__ = ["DatabaseHolidays", "HolidaySource", "NoHolidayData", "PackageHolidays"]
