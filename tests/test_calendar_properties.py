"""Property tests for domain/calendar.py (rules C5, C12).

The reference below counts business minutes one minute at a time from the wall clock,
independently of the interval arithmetic in domain/calendar.py. Business hours are
drawn between 06:00 and 20:00 so no DST change (02:00-03:00 local in Europe and the
US) falls inside them; starts cluster around DST weekends and holidays.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    business_deadline,
    business_instant_before,
    is_business_day,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MINUTE = timedelta(minutes=1)

TIMEZONES = ["Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Tokyo"]
FR_HOLIDAYS: frozenset[date] = frozenset(holidays_lib.country_holidays("FR", years=range(2025, 2031)).keys())
# Instants around which starts cluster: DST changes (Paris, New York, Sydney) and French holidays.
HOT_SPOTS = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2027, 3, 14, 7, tzinfo=UTC),
    datetime(2027, 11, 7, 6, tzinfo=UTC),
    datetime(2027, 3, 28, 1, tzinfo=UTC),
    datetime(2027, 4, 3, 16, tzinfo=UTC),
    datetime(2027, 12, 24, 12, tzinfo=UTC),
]
BASE = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    start_h = draw(st.integers(6, 11))
    start_m = draw(st.sampled_from([0, 15, 30]))
    end_h = draw(st.integers(max(start_h + 1, 12), 20))
    end_m = draw(st.sampled_from([0, 30, 45]))
    weekdays = draw(st.sets(st.integers(1, 7), min_size=2, max_size=7))
    return BusinessCalendar(
        timezone=draw(st.sampled_from(TIMEZONES)),
        day_start=time(start_h, start_m),
        day_end=time(end_h, end_m),
        weekdays=sorted(weekdays),
    )


holiday_sets = st.one_of(
    st.just(set(FR_HOLIDAYS)),
    st.sets(st.dates(date(2025, 12, 1), date(2029, 1, 31)), max_size=40),
)

starts = st.one_of(
    st.integers(0, 3 * 365 * 24 * 60).map(lambda m: BASE + m * MINUTE),
    st.builds(lambda spot, m: spot + m * MINUTE, st.sampled_from(HOT_SPOTS), st.integers(-4 * 24 * 60, 4 * 24 * 60)),
)
business_dates = st.dates(date(2026, 1, 1), date(2028, 12, 31))


@st.composite
def boundary_starts(draw: st.DrawFn, cal: BusinessCalendar) -> datetime:
    """Starts a few minutes around the local opening or closing of some day (DST-aware)."""
    d = draw(st.one_of(business_dates, st.sampled_from([h.date() for h in HOT_SPOTS])))
    anchor = draw(st.sampled_from([cal.day_start, cal.day_end]))
    local = datetime.combine(d, anchor, tzinfo=ZoneInfo(cal.timezone))
    return local.astimezone(UTC) + draw(st.integers(-90, 90)) * MINUTE


@st.composite
def cases(draw: st.DrawFn, max_minutes: int) -> tuple[BusinessCalendar, set[date], datetime, int]:
    """(calendar, holidays, start, minutes); minutes sometimes run exactly to the day's closing."""
    cal = draw(calendars())
    holidays = draw(holiday_sets)
    start = draw(st.one_of(starts, boundary_starts(cal)))
    minutes = draw(st.integers(0, max_minutes))
    if draw(st.booleans()):
        local = start.astimezone(ZoneInfo(cal.timezone))
        to_close = datetime.combine(local.date(), cal.day_end, tzinfo=ZoneInfo(cal.timezone)) - local
        if timedelta(0) <= to_close <= max_minutes * MINUTE:
            minutes = int(to_close / MINUTE)
    return cal, holidays, start, minutes


def is_business_minute(t: datetime, cal: BusinessCalendar, holidays: set[date]) -> bool:
    """Reference: the minute starting at `t` is a business minute (rule C5), by the wall clock."""
    local = t.astimezone(ZoneInfo(cal.timezone))
    return is_business_day(local.date(), cal, holidays) and cal.day_start <= local.time() < cal.day_end


def count_business_minutes(a: datetime, b: datetime, cal: BusinessCalendar, holidays: set[date]) -> int:
    """Reference: business minutes in [a, b), stepping one minute at a time (a, b minute-aligned).

    Whole non-business calendar days are skipped in one step (a pure speed-up: no
    minute of such a day can count).
    """
    tz = ZoneInfo(cal.timezone)
    count, t = 0, a
    while t < b:
        local = t.astimezone(tz)
        if not is_business_day(local.date(), cal, holidays):
            next_midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
            t = min(max(next_midnight, t + MINUTE), b)
            continue
        if cal.day_start <= local.time() < cal.day_end:
            count += 1
        t += MINUTE
    return count


def in_business_hours(t: datetime, cal: BusinessCalendar, holidays: set[date], *, closed_end: bool) -> bool:
    local = t.astimezone(ZoneInfo(cal.timezone))
    if not is_business_day(local.date(), cal, holidays):
        return False
    if closed_end:  # (day_start, day_end]
        return cal.day_start < local.time() <= cal.day_end
    return cal.day_start <= local.time() < cal.day_end  # [day_start, day_end)


# ---- business_deadline: rule C12 ---------------------------------------------------------
@pytest.mark.rule("C12")
@SETTINGS
@given(calendars(), holiday_sets, starts, st.integers(0, 600), st.booleans())
def test_c12_deadline_never_before_start(
    cal: BusinessCalendar, holidays: set[date], start: datetime, minutes: int, round_the_clock: bool
) -> None:
    deadline = business_deadline(start, minutes, cal, holidays, round_the_clock=round_the_clock)
    assert deadline >= start
    assert deadline.utcoffset() == timedelta(0)
    if round_the_clock:
        assert deadline == start + minutes * MINUTE


@pytest.mark.rule("C12")
@SETTINGS
@given(cases(600))
def test_c12_deadline_inside_business_hours(case: tuple[BusinessCalendar, set[date], datetime, int]) -> None:
    cal, holidays, start, minutes = case
    deadline = business_deadline(start, minutes, cal, holidays)
    # minutes > 0: the earliest instant with enough minutes, in (day_start, day_end];
    # minutes == 0: the start itself or the next opening, in [day_start, day_end).
    assert in_business_hours(deadline, cal, holidays, closed_end=minutes > 0)


@pytest.mark.rule("C12")
@SETTINGS
@given(cases(300))
def test_c12_business_minutes_match_reference(case: tuple[BusinessCalendar, set[date], datetime, int]) -> None:
    cal, holidays, start, minutes = case
    deadline = business_deadline(start, minutes, cal, holidays)
    assert count_business_minutes(start, deadline, cal, holidays) == minutes
    if minutes > 0:
        # Earliest such instant: the last minute before the deadline is a business minute.
        assert is_business_minute(deadline - MINUTE, cal, holidays)
    elif deadline > start:
        # Zero minutes from out of hours: nothing between start and the next opening counts.
        assert not is_business_minute(start, cal, holidays)
        assert is_business_minute(deadline, cal, holidays)


@pytest.mark.rule("C12")
@SETTINGS
@given(calendars(), holiday_sets, starts, starts, st.integers(0, 600))
def test_c12_deadline_monotonic_in_start(
    cal: BusinessCalendar, holidays: set[date], a: datetime, b: datetime, minutes: int
) -> None:
    early, late = min(a, b), max(a, b)
    assert business_deadline(early, minutes, cal, holidays) <= business_deadline(late, minutes, cal, holidays)


@pytest.mark.rule("C12")
@SETTINGS
@given(calendars(), holiday_sets, starts, st.integers(0, 600), st.integers(0, 600))
def test_c12_deadline_monotonic_in_minutes(
    cal: BusinessCalendar, holidays: set[date], start: datetime, m1: int, m2: int
) -> None:
    small, large = min(m1, m2), max(m1, m2)
    assert business_deadline(start, small, cal, holidays) <= business_deadline(start, large, cal, holidays)


@pytest.mark.rule("C12")
@SETTINGS
@given(cases(300))
def test_c12_warning_matches_reference(case: tuple[BusinessCalendar, set[date], datetime, int]) -> None:
    cal, holidays, deadline, minutes = case
    warning = business_instant_before(deadline, minutes, cal, holidays)
    assert warning <= deadline
    assert count_business_minutes(warning, deadline, cal, holidays) == minutes
    if minutes > 0:
        # Latest such instant: it starts a business minute, inside [day_start, day_end).
        assert is_business_minute(warning, cal, holidays)
        assert in_business_hours(warning, cal, holidays, closed_end=False)


@pytest.mark.rule("C12")
@SETTINGS
@given(cases(900))
def test_c12_warning_inverts_deadline_inside_hours(case: tuple[BusinessCalendar, set[date], datetime, int]) -> None:
    cal, holidays, start, minutes = case
    minutes = max(minutes, 1)
    # From a start inside business hours, going back the same business minutes lands on the start.
    opening = business_deadline(start, 0, cal, holidays)  # start, or the next opening
    deadline = business_deadline(opening, minutes, cal, holidays)
    assert business_instant_before(deadline, minutes, cal, holidays) == opening
    assert business_deadline(start, minutes, cal, holidays) == deadline


# ---- add_business_days: rule C5 ----------------------------------------------------------
@pytest.mark.rule("C5")
@SETTINGS
@given(calendars(), holiday_sets, business_dates, st.integers(-40, 40))
def test_c5_add_business_days_result_is_business_day(
    cal: BusinessCalendar, holidays: set[date], start: date, days: int
) -> None:
    result = add_business_days(start, days, cal, holidays)
    assert is_business_day(result, cal, holidays)
    # Reference: count business days strictly between start and result (plus result itself).
    if days > 0:
        assert result > start
        assert (
            sum(is_business_day(start + timedelta(i), cal, holidays) for i in range(1, (result - start).days + 1))
            == days
        )
    elif days < 0:
        assert result < start
        assert sum(is_business_day(result + timedelta(i), cal, holidays) for i in range((start - result).days)) == -days
    else:
        assert result >= start
        assert all(not is_business_day(start + timedelta(i), cal, holidays) for i in range((result - start).days))


@pytest.mark.rule("C5")
@SETTINGS
@given(calendars(), holiday_sets, business_dates, st.integers(-40, 40))
def test_c5_add_business_days_round_trip(cal: BusinessCalendar, holidays: set[date], start: date, days: int) -> None:
    d = add_business_days(start, 0, cal, holidays)  # a business day
    assert add_business_days(add_business_days(d, days, cal, holidays), -days, cal, holidays) == d


@pytest.mark.rule("C5")
@SETTINGS
@given(calendars(), holiday_sets, business_dates, business_dates, st.integers(-40, 40))
def test_c5_add_business_days_monotonic_in_start(
    cal: BusinessCalendar, holidays: set[date], a: date, b: date, days: int
) -> None:
    early, late = min(a, b), max(a, b)
    assert add_business_days(early, days, cal, holidays) <= add_business_days(late, days, cal, holidays)
