"""Business-calendar maths (rule C5, C12), pure functions.

Holidays arrive as a set of dates computed outside (activities/calendar.py uses the
`holidays` package), so these functions are deterministic and property-testable.
Workflow code never calls them: deadlines are computed in an activity and the result
is recorded in history.
"""

from __future__ import annotations

import calendar as _stdcal
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field


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
    raise NotImplementedError


def end_of_business_day(d: date, cal: BusinessCalendar) -> datetime:
    """`d` at the calendar's day end, as an aware UTC datetime (DST-correct)."""
    raise NotImplementedError


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
    """
    raise NotImplementedError


def business_instant_before(
    deadline: datetime, minutes: int, cal: BusinessCalendar, holidays: set[date]
) -> datetime:
    """The instant `minutes` business minutes before `deadline` (for SLA warnings)."""
    raise NotImplementedError
