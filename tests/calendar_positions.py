"""Calendar positions a scenario needs (a Friday before Easter Monday, the Friday before the
clocks go forward, a plain Friday), found after a given instant: the server's "now".

Scenarios on a time-skipping server take their "now" from the server and ask here for the
next such day after it, so they run the same whatever the date (and with
TECHCONNECT_TEST_NOW, tests/clock.py, for any "now" you like). Pure functions: no clock here.

Easter comes from `dateutil.easter` (Western Easter); public holidays from the `holidays`
package; daylight-saving changes from the time zone database (`zoneinfo`), not from a rule
written here, so "the second Sunday of March" in New York and "the last Sunday of March" in
Paris are whatever the tz database says for that year.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from dateutil.easter import easter

UTC = ZoneInfo("UTC")
FRIDAY, SUNDAY = 5, 7  # isoweekday


def at_local(d: date, hh: int, mm: int, tz: ZoneInfo) -> datetime:
    """`d` at hh:mm wall-clock time in `tz`, as a UTC instant."""
    return datetime.combine(d, time(hh, mm), tz).astimezone(UTC)


def public_holidays(country: str, first_year: int, last_year: int, subdivision: str | None = None) -> set[date]:
    return set(holidays.country_holidays(country, subdiv=subdivision, years=range(first_year, last_year + 1)))


def next_business_day(after: date, country: str, subdivision: str | None = None) -> date:
    """The first Monday-to-Friday day after `after` that is not a public holiday of `country`."""
    days = public_holidays(country, after.year, after.year + 1, subdivision)
    d = after + timedelta(days=1)
    while d.isoweekday() > FRIDAY or d in days:
        d += timedelta(days=1)
    return d


def next_plain_friday(after: datetime, tz: ZoneInfo, country: str) -> date:
    """The next Friday (from the day after `after`, local) with no public holiday on it nor on
    the Monday after: a Friday request is then due on that Monday."""
    days = public_holidays(country, after.year, after.year + 1)
    d = after.astimezone(tz).date() + timedelta(days=1)
    while d.isoweekday() != FRIDAY or d in days or d + timedelta(days=3) in days:
        d += timedelta(days=1)
    return d


def next_friday_before_easter_monday(after: datetime, tz: ZoneInfo, country: str, opens_at: time = time(10)) -> date:
    """The next Friday before Easter Monday whose `opens_at` (local) is later than `after`.

    Checked against the holidays package: Easter Monday is a public holiday of `country`, and
    neither that Friday nor the Tuesday after is one (in France Good Friday is a holiday only in
    Alsace-Moselle), so a Friday-afternoon request there is due on the Tuesday."""
    year = after.astimezone(tz).year
    while True:
        friday: date = easter(year) - timedelta(days=2)
        if datetime.combine(friday, opens_at, tz) > after:
            break
        year += 1
    days = public_holidays(country, year, year)
    monday = friday + timedelta(days=3)
    assert monday in days and friday not in days and monday + timedelta(days=1) not in days, (
        f"{country} {year}: Easter Monday {monday} holiday={monday in days}, Good Friday holiday={friday in days}")
    return friday


def summer_time_start(year: int, tz: ZoneInfo) -> date:
    """The day in the first half of `year` on which `tz` moves its clocks forward (its UTC offset
    at noon grows), as the tz database has it."""
    d = date(year, 1, 2)
    while d < date(year, 7, 1):
        before = datetime.combine(d - timedelta(days=1), time(12), tz).utcoffset()
        after = datetime.combine(d, time(12), tz).utcoffset()
        assert before is not None and after is not None
        if after > before:
            return d
        d += timedelta(days=1)
    raise AssertionError(f"{tz.key} does not move its clocks forward in the first half of {year}")


def next_friday_before_summer_time(after: datetime, tz: ZoneInfo, opens_at: time = time(10)) -> date:
    """The Friday before the next spring change to summer time in `tz` whose `opens_at` (local)
    is later than `after`. The change is on a Sunday (asserted), so a request filed that
    Friday afternoon is answered after it, at the new UTC offset."""
    year = after.astimezone(tz).year
    while True:
        sunday = summer_time_start(year, tz)
        assert sunday.isoweekday() == SUNDAY, f"{tz.key} moves its clocks on {sunday:%A %d %B %Y}, not a Sunday"
        friday = sunday - timedelta(days=2)
        if datetime.combine(friday, opens_at, tz) > after:
            return friday
        year += 1
