"""OT's holiday lists (rule A1): per region, which years are defined and from where, and their days.

A year of a region is written whole, either seeded from the `holidays` package on first use
(`seed_years`, only years nobody wrote yet) or replaced by an ops import (`replace_years`). Every change
bumps the region's `version` under a lock on its `holiday_lists` row, so two writers of one region take
turns and a deadline can record the version it was computed from. Functions never commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.holidays import Holiday, HolidayYear
from storage.repositories.clock import as_utc, at_or_now
from storage.repositories.common import fresh, insert_ignore
from storage.tables import HolidayListRow, HolidayRow, HolidayYearRow


@dataclass(frozen=True)
class StoredHolidays:
    """What a region's list holds for some years at one version (0: no list yet): the days of each year
    defined, and the years not defined."""

    version: int
    by_year: dict[int, frozenset[date]]
    missing_years: list[int]

    @property
    def days(self) -> frozenset[date]:
        return frozenset().union(*self.by_year.values())


class HolidayListChanging(RuntimeError):
    """The list kept changing while it was read (imports back to back): retrying later will do."""


@dataclass(frozen=True)
class ReplaceCounts:
    version: int
    years: list[int]
    holidays: int
    removed: int


def _year_span(first_year: int, last_year: int) -> tuple[date, date]:
    return date(first_year, 1, 1), date(last_year, 12, 31)


async def list_version(session: AsyncSession, region: str) -> int:
    """The region's list version (0: no list yet): one cheap query that says whether anything changed."""
    found = (await session.execute(
        select(HolidayListRow.version).where(HolidayListRow.region == region))).scalar_one_or_none()
    return int(found or 0)


async def stored_holidays(session: AsyncSession, region: str, first_year: int, last_year: int, *,
                          attempts: int = 5) -> StoredHolidays:
    """The years' days and which years are undefined, all at one version of the list.

    The reads are separate statements and PostgreSQL's READ COMMITTED gives each its own snapshot, so an import
    committed in between could mix two versions. Every write bumps the version in the same transaction as its
    rows, so the same version before and after the reads means nothing committed in between; otherwise they
    are read again, in a new transaction, up to `attempts` times.
    """
    lo, hi = _year_span(first_year, last_year)
    for _ in range(attempts):
        version = await list_version(session, region)
        defined = set((await session.execute(select(HolidayYearRow.year).where(
            HolidayYearRow.region == region, HolidayYearRow.year.between(first_year, last_year)))).scalars())
        rows = list((await session.execute(select(HolidayRow.day).where(
            HolidayRow.region == region, HolidayRow.day.between(lo, hi)))).scalars())
        if await list_version(session, region) == version:
            by_year: dict[int, set[date]] = {y: set() for y in defined}
            for day in rows:
                by_year.setdefault(day.year, set()).add(day)
            return StoredHolidays(version=version, by_year={y: frozenset(d) for y, d in by_year.items()},
                                  missing_years=[y for y in range(first_year, last_year + 1) if y not in defined])
        await session.rollback()  # a fresh transaction (and, on SQLite, a fresh snapshot) for the next attempt
    raise HolidayListChanging(f"holiday list {region}: the version changed during each of {attempts} reads")


async def _lock_list(session: AsyncSession, region: str, source: str, by: str, at: datetime) -> None:
    """Create the region's list row if needed, then hold it until the caller's transaction ends."""
    await insert_ignore(session, HolidayListRow, {"region": region, "version": 0, "source": source,
                                                  "updated_at": at, "updated_by": by}, ["region"])
    await session.execute(select(HolidayListRow.region).where(HolidayListRow.region == region).with_for_update())


async def _bump(session: AsyncSession, region: str, source: str, by: str, at: datetime) -> int:
    await session.execute(update(HolidayListRow).where(HolidayListRow.region == region).values(
        version=HolidayListRow.version + 1, source=source, updated_at=at, updated_by=by))
    return int((await session.execute(
        select(HolidayListRow.version).where(HolidayListRow.region == region))).scalar_one())


def _write_year(session: AsyncSession, region: str, year: int, days: list[Holiday], version: int, source: str,
                by: str, at: datetime) -> None:
    session.add(HolidayYearRow(region=region, year=year, version=version, source=source, updated_at=at,
                               updated_by=by))
    session.add_all(HolidayRow(region=region, day=h.day, name=h.name) for h in days)


async def seed_years(session: AsyncSession, region: str, by_year: Mapping[int, list[Holiday]], *, source: str,
                     by: str, now: datetime | None = None) -> int:
    """Write the years of `by_year` that are still undefined (another worker may have written them since the
    caller looked); the region's version after it."""
    at = at_or_now(now)
    await _lock_list(session, region, source, by, at)
    defined = set((await session.execute(select(HolidayYearRow.year).where(
        HolidayYearRow.region == region, HolidayYearRow.year.in_(list(by_year))))).scalars())
    todo = [y for y in sorted(by_year) if y not in defined]
    if not todo:
        return int((await session.execute(
            select(HolidayListRow.version).where(HolidayListRow.region == region))).scalar_one())
    version = await _bump(session, region, source, by, at)
    for year in todo:
        _write_year(session, region, year, by_year[year], version, source, by, at)
    await session.flush()
    return version


async def replace_years(session: AsyncSession, region: str, holidays: list[Holiday], *, source: str, by: str,
                        now: datetime | None = None) -> ReplaceCounts:
    """Replace the region's list for every year `holidays` falls in (an ops import, validated whole)."""
    at = at_or_now(now)
    years = sorted({h.day.year for h in holidays})
    await _lock_list(session, region, source, by, at)
    version = await _bump(session, region, source, by, at)
    removed = 0
    for year in years:
        lo, hi = _year_span(year, year)
        result = await session.execute(delete(HolidayRow).where(HolidayRow.region == region,
                                                                HolidayRow.day.between(lo, hi)))
        removed += int(getattr(result, "rowcount", 0) or 0)
        await session.execute(delete(HolidayYearRow).where(HolidayYearRow.region == region,
                                                           HolidayYearRow.year == year))
    for year in years:
        _write_year(session, region, year, [h for h in holidays if h.day.year == year], version, source, by, at)
    await session.flush()
    return ReplaceCounts(version=version, years=years, holidays=len(holidays), removed=removed)


async def list_holiday_lists(session: AsyncSession) -> list[HolidayListRow]:
    return list((await session.execute(fresh(select(HolidayListRow).order_by(HolidayListRow.region)))).scalars())


async def get_holiday_list(session: AsyncSession, region: str) -> HolidayListRow | None:
    return (await session.execute(
        fresh(select(HolidayListRow).where(HolidayListRow.region == region)))).scalar_one_or_none()


async def list_holiday_years(session: AsyncSession, region: str | None = None) -> list[HolidayYear]:
    stmt = select(HolidayYearRow).order_by(HolidayYearRow.region, HolidayYearRow.year)
    if region is not None:
        stmt = stmt.where(HolidayYearRow.region == region)
    rows = (await session.execute(fresh(stmt))).scalars()
    return [HolidayYear(region=r.region, year=r.year, version=r.version, source=r.source,
                        updated_at=as_utc(r.updated_at), updated_by=r.updated_by) for r in rows]


async def list_holidays(session: AsyncSession, region: str, year: int) -> list[Holiday]:
    lo, hi = _year_span(year, year)
    rows = (await session.execute(select(HolidayRow).where(HolidayRow.region == region, HolidayRow.day.between(lo, hi))
                                  .order_by(HolidayRow.day))).scalars()
    return [Holiday(day=r.day, name=r.name) for r in rows]


__all__ = ["HolidayListChanging", "ReplaceCounts", "StoredHolidays", "get_holiday_list", "list_holiday_lists",
           "list_holiday_years", "list_holidays", "list_version", "replace_years", "seed_years", "stored_holidays"]
