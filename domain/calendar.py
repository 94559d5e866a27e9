"""Business-calendar maths (rule C5, C12), pure functions.

Holidays arrive as a set of dates computed outside (activities/calendar.py uses the
`holidays` package), so these functions are deterministic and property-testable.
Workflow code never calls them: deadlines are computed in an activity and the result
is recorded in history.
"""

from __future__ import annotations

import calendar as _stdcal
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator

_UTC = ZoneInfo("UTC")
# Guard against calendars with no business day at all (empty weekdays, or every day a
# holiday): no search walks further than this many calendar days.
_MAX_SCAN_DAYS = 366 * 20
# A holiday list's region (rule A1): a country, country-subdivision ("DE-BY", "FR-Zone A") or an OT name
# ("OT-EMEA"); it keys the `holiday_lists` table (32 characters).
HOLIDAY_REGION_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _.-]{0,30}[A-Za-z0-9])?$")
HOLIDAY_REGION_RULE = ("a holiday region is 1 to 32 letters, digits, '-', '_', '.' or spaces, starting and ending "
                       "with a letter or digit (e.g. FR, DE-BY, OT-EMEA)")


class BusinessCalendar(BaseModel):
    """A programme's working calendar: rule C5 (and C12 for the 24x7 case)."""

    timezone: str = "Europe/Paris"
    country: str = "FR"
    subdivision: str | None = None
    day_start: time = time(9, 0)
    day_end: time = time(17, 0)
    # ISO weekdays, Monday=1 .. Sunday=7 (rule C5: Monday to Friday).
    weekdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    # Rule C12: an out-of-hours agreement makes the first-response clock 24x7.
    out_of_hours_agreement_ref: str | None = None
    # Rule A1: the holiday list OT publishes that this calendar follows, e.g. "OT-EMEA"; None: the list of its
    # country[-subdivision] ("FR", "FR-57"). Either is seeded from the `holidays` package on first use.
    holiday_region: str | None = None

    @property
    def holiday_list_region(self) -> str:
        """The region whose published holiday list counts (rule A1)."""
        if self.holiday_region is not None:
            return self.holiday_region
        return f"{self.country}-{self.subdivision}" if self.subdivision else self.country

    @field_validator("holiday_region")
    @classmethod
    def _region_name(cls, value: str | None) -> str | None:
        if value is not None and not HOLIDAY_REGION_RE.match(value):
            raise ValueError(HOLIDAY_REGION_RULE)
        return value

    @field_validator("day_start", "day_end")
    @classmethod
    def _local_time_of_day(cls, value: time) -> time:
        # A time of day in `timezone`; with a UTC offset it would not compare with the other one
        # (found by tests/test_portal_schemathesis.py: "09:26:26+03:42" made the enrolment check crash).
        if value.tzinfo is not None:
            raise ValueError("a time of day in the calendar's time zone, without a UTC offset (e.g. 09:00)")
        return value


def add_months(d: date, months: int) -> date:
    """Same day-of-month `months` later, clamped to the month's last day."""
    total = d.month - 1 + months
    year, month = d.year + total // 12, total % 12 + 1
    return date(year, month, min(d.day, _stdcal.monthrange(year, month)[1]))


def period_end_date(period_start: date, term_months: int) -> date:
    """Last day (inclusive) of a period of `term_months` months (rule C2)."""
    return add_months(period_start, term_months) - timedelta(days=1)


def is_business_day(d: date, cal: BusinessCalendar, holidays: set[date]) -> bool:
    return d.isoweekday() in cal.weekdays and d not in holidays


def add_business_days(start: date, days: int, cal: BusinessCalendar, holidays: set[date]) -> date:
    """The business day `days` business days after `start` (before it when negative).

    `days == 0` returns `start` itself when it is a business day, else the next one.
    """
    if days == 0:
        return next_business_day_on_or_after(start, cal, holidays)
    step = 1 if days > 0 else -1
    d = start
    for _ in range(abs(days)):
        d = _scan_business_day(d + timedelta(days=step), step, cal, holidays)
    return d


def next_business_day_on_or_after(d: date, cal: BusinessCalendar, holidays: set[date]) -> date:
    """`d` itself when it is a business day, else the next business day."""
    return _scan_business_day(d, 1, cal, holidays)


def previous_business_day_on_or_before(d: date, cal: BusinessCalendar, holidays: set[date]) -> date:
    """`d` itself when it is a business day, else the previous business day."""
    return _scan_business_day(d, -1, cal, holidays)


def _scan_business_day(d: date, step: int, cal: BusinessCalendar, holidays: set[date]) -> date:
    for _ in range(_MAX_SCAN_DAYS):
        if is_business_day(d, cal, holidays):
            return d
        d += timedelta(days=step)
    raise ValueError(f"no business day within {_MAX_SCAN_DAYS} days: check the calendar's weekdays and holidays")


def local_instant(d: date, t: time, cal: BusinessCalendar) -> datetime:
    """`d` at local wall time `t` in the calendar's time zone, as an aware UTC datetime.

    A wall time inside a DST gap is read with the offset in force before the change
    (zoneinfo's fold=0), i.e. it lands just after the gap.
    """
    return datetime.combine(d, t, tzinfo=ZoneInfo(cal.timezone)).astimezone(_UTC)


def start_of_business_day(d: date, cal: BusinessCalendar) -> datetime:
    """`d` at the calendar's day start, as an aware UTC datetime (DST-correct)."""
    return local_instant(d, cal.day_start, cal)


def business_window(d: date, cal: BusinessCalendar) -> tuple[datetime, datetime]:
    """Business hours of day `d` as the half-open UTC interval [day_start, day_end) (rule C5)."""
    if cal.day_start >= cal.day_end:
        raise ValueError(f"calendar day_start {cal.day_start} must be before day_end {cal.day_end}")
    return local_instant(d, cal.day_start, cal), local_instant(d, cal.day_end, cal)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


def end_of_business_day(d: date, cal: BusinessCalendar) -> datetime:
    """`d` at the calendar's day end, as an aware UTC datetime (DST-correct)."""
    return local_instant(d, cal.day_end, cal)


def start_of_day(d: date, cal: BusinessCalendar) -> datetime:
    """`d` at local midnight, as an aware UTC datetime."""
    return datetime.combine(d, time(0, 0), tzinfo=ZoneInfo(cal.timezone)).astimezone(ZoneInfo("UTC"))


def business_deadline(
    start: datetime, minutes: int, cal: BusinessCalendar, holidays: set[date], *, round_the_clock: bool = False
) -> datetime:
    """The instant `minutes` business minutes after `start` (aware), in UTC.

    Counting runs only inside business hours of business days (rule C12: "within one
    hour" on the programme calendar); a start outside hours counts from the next
    opening. With `round_the_clock`, plain elapsed minutes (out-of-hours agreement).

    Business minutes are real elapsed minutes inside [day_start, day_end) local time
    of business days. With `minutes > 0` the result is the earliest instant by which
    that many business minutes have elapsed, so it lies in (day_start, day_end] of a
    business day (a request at 16:00 with 60 minutes is due at 17:00 that day). With
    `minutes == 0` it is the start itself when inside business hours, else the next opening.
    """
    cur = _utc_instant(start, "start", minutes)
    if round_the_clock:  # rule C12: out-of-hours agreement, 24x7 clock
        return cur + timedelta(minutes=minutes)
    return _walk_business_minutes(cur, minutes, cal, holidays, forward=True)


def business_instant_before(deadline: datetime, minutes: int, cal: BusinessCalendar, holidays: set[date]) -> datetime:
    """The instant `minutes` business minutes before `deadline` (for SLA warnings).

    Mirror of `business_deadline`: the latest instant from which `minutes` business
    minutes run up to `deadline`, so with `minutes > 0` it lies in [day_start, day_end)
    of a business day (a Monday 09:00 deadline with 15 minutes gives Friday 16:45).
    With `minutes == 0` it is `deadline` itself when that is in (day_start, day_end] of
    a business day, else the previous closing.
    """
    return _walk_business_minutes(_utc_instant(deadline, "deadline", minutes), minutes, cal, holidays, forward=False)


def _utc_instant(at: datetime, what: str, minutes: int) -> datetime:
    _require_aware(at, what)
    if minutes < 0:
        raise ValueError(f"minutes must be >= 0, got {minutes}")
    return at.astimezone(_UTC)


def _walk_business_minutes(cur: datetime, minutes: int, cal: BusinessCalendar, holidays: set[date],
                           forward: bool) -> datetime:
    """Walk `minutes` business minutes from `cur` (UTC), forward (a deadline) or back (its warning), day by
    day through the business windows; one walk for both, so they stay each other's mirror."""
    remaining = timedelta(minutes=minutes)
    d = cur.astimezone(ZoneInfo(cal.timezone)).date()
    while True:
        if forward:
            d = next_business_day_on_or_after(d, cal, holidays)
        else:
            d = previous_business_day_on_or_before(d, cal, holidays)
        opens, closes = business_window(d, cal)
        cur = max(cur, opens) if forward else min(cur, closes)
        room = closes - cur if forward else cur - opens  # business time left that day, in the walk's direction
        if room > timedelta(0):
            if remaining <= room:
                return cur + remaining if forward else cur - remaining
            remaining -= room
        d += timedelta(days=1 if forward else -1)
