"""Concrete examples for domain/calendar.py (rules C5, C12, C14, C16).

Holiday dates below were checked against the `holidays` package (FR, US-NY):
Easter Monday 2027 is Monday 29 March 2027, Europe's DST 2027 starts Sunday 28 March,
so the Easter example also crosses a DST change. Europe's DST 2026 starts Sunday
29 March 2026 (Easter Monday 2026 is 6 April) and ends Sunday 25 October 2026.
America/New_York DST 2027 starts Sunday 14 March and ends Sunday 7 November.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import pytest

from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    business_deadline,
    business_instant_before,
    end_of_business_day,
    is_business_day,
    period_end_date,
    start_of_day,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
FR_CAL = BusinessCalendar()  # Europe/Paris, FR, 09:00-17:00, Monday-Friday (rule C5 defaults)
NY_CAL = BusinessCalendar(timezone="America/New_York", country="US", subdivision="NY")
FR_HOLIDAYS: set[date] = set(holidays_lib.country_holidays("FR", years=range(2025, 2030)).keys())
NY_HOLIDAYS: set[date] = set(holidays_lib.country_holidays("US", subdiv="NY", years=range(2025, 2030)).keys())


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)


def new_york(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_holiday_facts_used_by_these_tests() -> None:
    # rule C5: the examples rely on these dates; fail loudly if the package ever disagrees.
    assert date(2027, 3, 29) in FR_HOLIDAYS  # Easter Monday 2027
    assert date(2026, 4, 6) in FR_HOLIDAYS  # Easter Monday 2026
    assert date(2026, 3, 30) not in FR_HOLIDAYS
    assert date(2027, 11, 1) in FR_HOLIDAYS  # All Saints' Day, a Monday in 2027
    assert date(2027, 5, 6) in FR_HOLIDAYS  # Ascension Day 2027 (Thursday)
    assert date(2027, 7, 5) in NY_HOLIDAYS  # Independence Day observed (Monday)
    assert paris(2027, 3, 26, 12).utcoffset() == timedelta(hours=1)
    assert paris(2027, 3, 29, 12).utcoffset() == timedelta(hours=2)
    assert paris(2026, 3, 27, 12).utcoffset() == timedelta(hours=1)
    assert paris(2026, 3, 30, 12).utcoffset() == timedelta(hours=2)


# ---- business_deadline: rule C12 first response within one business hour -----------------
@pytest.mark.rule("C12")
def test_c12_friday_afternoon_rolls_to_monday() -> None:
    # rule C12: Friday 16:30 + 60 business minutes = 30 min Friday + 30 min Monday.
    deadline = business_deadline(paris(2027, 1, 8, 16, 30), 60, FR_CAL, FR_HOLIDAYS)
    assert deadline == paris(2027, 1, 11, 9, 30)
    assert deadline.tzinfo is not None and deadline.utcoffset() == timedelta(0)


@pytest.mark.rule("C12")
def test_c12_evening_request_counts_from_next_opening() -> None:
    # rule C12: filed Thursday 20:00, the clock starts Friday 09:00.
    assert business_deadline(paris(2027, 1, 7, 20, 0), 60, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 8, 10, 0)


@pytest.mark.rule("C12")
def test_c12_early_morning_request_counts_from_opening() -> None:
    assert business_deadline(paris(2027, 1, 12, 7, 0), 60, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 12, 10, 0)


@pytest.mark.rule("C12")
def test_c12_inside_hours() -> None:
    assert business_deadline(paris(2027, 1, 12, 10, 15), 60, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 12, 11, 15)


@pytest.mark.rule("C12")
def test_c12_deadline_may_fall_exactly_at_closing() -> None:
    # rule C12: 16:00 + 60 business minutes is 17:00 the same day (the earliest instant).
    assert business_deadline(paris(2027, 1, 12, 16, 0), 60, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 12, 17, 0)


@pytest.mark.rule("C12")
def test_c12_request_at_closing_counts_from_next_day() -> None:
    # rule C5: business hours are [day_start, day_end), so 17:00 is already out of hours.
    assert business_deadline(paris(2027, 1, 12, 17, 0), 60, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 13, 10, 0)


@pytest.mark.rule("C12")
def test_c12_easter_weekend_and_dst_change() -> None:
    # rule C12 + C5: Friday 26 March 2027 16:30 CET; Easter Monday 29 March is a holiday and
    # DST starts on Sunday 28 March, so the deadline is Tuesday 30 March 09:30 CEST (07:30 UTC).
    deadline = business_deadline(paris(2027, 3, 26, 16, 30), 60, FR_CAL, FR_HOLIDAYS)
    assert deadline == paris(2027, 3, 30, 9, 30)
    assert deadline == utc(2027, 3, 30, 7, 30)


@pytest.mark.rule("C12")
def test_c12_round_the_clock_is_plain_elapsed_time() -> None:
    # rule C12: with an out-of-hours agreement the clock runs 24x7.
    start = paris(2027, 3, 26, 16, 30)
    assert business_deadline(start, 60, FR_CAL, FR_HOLIDAYS, round_the_clock=True) == paris(2027, 3, 26, 17, 30)
    # Even across the DST change: 24 h of elapsed time, not 24 h of wall clock.
    assert business_deadline(paris(2027, 3, 27, 12), 24 * 60, FR_CAL, FR_HOLIDAYS, round_the_clock=True) == paris(
        2027, 3, 28, 13
    )


@pytest.mark.rule("C12")
def test_c12_dst_spring_forward_paris() -> None:
    # rule C12: Friday 27 March 2026 16:30 CET (15:30 UTC), DST starts Sunday 29 March 2026:
    # Monday 30 March 09:30 local is 07:30 UTC.
    start = paris(2026, 3, 27, 16, 30)
    assert start == utc(2026, 3, 27, 15, 30)
    deadline = business_deadline(start, 60, FR_CAL, FR_HOLIDAYS)
    assert deadline == utc(2026, 3, 30, 7, 30)
    assert deadline.astimezone(PARIS).time() == time(9, 30)


@pytest.mark.rule("C12")
def test_c12_dst_fall_back_paris() -> None:
    # DST ends Sunday 25 October 2026: Monday 26 October 09:30 CET is 08:30 UTC.
    deadline = business_deadline(paris(2026, 10, 23, 16, 30), 60, FR_CAL, FR_HOLIDAYS)
    assert deadline == utc(2026, 10, 26, 8, 30)
    assert deadline.astimezone(PARIS).time() == time(9, 30)


@pytest.mark.rule("C12")
def test_c12_dst_fall_back_then_all_saints_paris() -> None:
    # DST ends Sunday 31 October 2027 and Monday 1 November 2027 is All Saints' Day.
    deadline = business_deadline(paris(2027, 10, 29, 16, 30), 60, FR_CAL, FR_HOLIDAYS)
    assert deadline == paris(2027, 11, 2, 9, 30)
    assert deadline == utc(2027, 11, 2, 8, 30)


@pytest.mark.rule("C12")
def test_c12_dst_spring_forward_new_york() -> None:
    # US DST starts Sunday 14 March 2027: Friday 16:30 EST (21:30 UTC) -> Monday 09:30 EDT (13:30 UTC).
    start = new_york(2027, 3, 12, 16, 30)
    assert start == utc(2027, 3, 12, 21, 30)
    assert business_deadline(start, 60, NY_CAL, NY_HOLIDAYS) == utc(2027, 3, 15, 13, 30)


@pytest.mark.rule("C12")
def test_c12_dst_fall_back_new_york() -> None:
    # US DST ends Sunday 7 November 2027: Friday 16:30 EDT -> Monday 09:30 EST (14:30 UTC).
    assert business_deadline(new_york(2027, 11, 5, 16, 30), 60, NY_CAL, NY_HOLIDAYS) == utc(2027, 11, 8, 14, 30)


@pytest.mark.rule("C12")
def test_c12_new_york_observed_holiday() -> None:
    # Independence Day 2027 is a Sunday, observed Monday 5 July (US-NY).
    assert business_deadline(new_york(2027, 7, 2, 16, 30), 60, NY_CAL, NY_HOLIDAYS) == new_york(2027, 7, 6, 9, 30)


@pytest.mark.rule("C12")
def test_c12_start_in_another_time_zone_gives_the_same_instant() -> None:
    start = paris(2027, 1, 8, 16, 30)
    assert business_deadline(start.astimezone(UTC), 60, FR_CAL, FR_HOLIDAYS) == business_deadline(
        start.astimezone(NEW_YORK), 60, FR_CAL, FR_HOLIDAYS
    )


@pytest.mark.rule("C12")
def test_c12_zero_minutes_is_next_opening_or_start() -> None:
    assert business_deadline(paris(2027, 1, 9, 11, 0), 0, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 11, 9, 0)
    assert business_deadline(paris(2027, 1, 11, 11, 0), 0, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 11, 11, 0)


@pytest.mark.rule("C5")
def test_c5_full_business_week() -> None:
    # rule C5: 5 x 8 business hours from Monday 09:00 end on Friday 17:00.
    assert business_deadline(paris(2027, 1, 11, 9), 5 * 8 * 60, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 15, 17)


@pytest.mark.rule("C5")
def test_c5_custom_hours_and_weekdays() -> None:
    # A Sunday-Thursday calendar with 08:00-16:00 hours.
    cal = BusinessCalendar(day_start=time(8), day_end=time(16), weekdays=[7, 1, 2, 3, 4], country="FR")
    # Thursday 15:30 + 60 -> Sunday 08:30.
    assert business_deadline(paris(2027, 1, 7, 15, 30), 60, cal, set()) == paris(2027, 1, 10, 8, 30)


def test_business_deadline_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        business_deadline(datetime(2027, 1, 8, 16, 30), 60, FR_CAL, FR_HOLIDAYS)
    with pytest.raises(ValueError, match="minutes"):
        business_deadline(paris(2027, 1, 8, 16, 30), -1, FR_CAL, FR_HOLIDAYS)
    with pytest.raises(ValueError, match="business day"):
        business_deadline(paris(2027, 1, 8, 16, 30), 60, FR_CAL.model_copy(update={"weekdays": []}), set())
    with pytest.raises(ValueError, match="day_start"):
        business_deadline(paris(2027, 1, 8, 16, 30), 60, FR_CAL.model_copy(update={"day_end": time(8)}), set())


# ---- business_instant_before: rule C12 warning --------------------------------------------
@pytest.mark.rule("C12")
def test_c12_warning_same_morning() -> None:
    assert business_instant_before(paris(2027, 1, 11, 9, 30), 15, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 11, 9, 15)


@pytest.mark.rule("C12")
def test_c12_warning_goes_back_over_the_weekend() -> None:
    assert business_instant_before(paris(2027, 1, 11, 9, 0), 15, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 8, 16, 45)


@pytest.mark.rule("C12")
def test_c12_warning_goes_back_over_easter_and_dst() -> None:
    # Tuesday 30 March 2027 09:05 CEST; Easter Monday is skipped; Friday 16:50 CET (15:50 UTC).
    warning = business_instant_before(paris(2027, 3, 30, 9, 5), 15, FR_CAL, FR_HOLIDAYS)
    assert warning == paris(2027, 3, 26, 16, 50)
    assert warning == utc(2027, 3, 26, 15, 50)


@pytest.mark.rule("C12")
def test_c12_warning_from_out_of_hours_deadline() -> None:
    # A deadline at 20:00 counts back from the 17:00 closing.
    assert business_instant_before(paris(2027, 1, 12, 20, 0), 15, FR_CAL, FR_HOLIDAYS) == paris(2027, 1, 12, 16, 45)


@pytest.mark.rule("C12")
def test_c12_warning_inverts_deadline() -> None:
    start = paris(2027, 3, 26, 16, 30)
    deadline = business_deadline(start, 60, FR_CAL, FR_HOLIDAYS)
    assert business_instant_before(deadline, 60, FR_CAL, FR_HOLIDAYS) == start


# ---- end_of_business_day, start_of_day ---------------------------------------------------
@pytest.mark.rule("C5")
def test_end_of_business_day_is_dst_correct() -> None:
    assert end_of_business_day(date(2027, 3, 26), FR_CAL) == utc(2027, 3, 26, 16)
    assert end_of_business_day(date(2027, 3, 29), FR_CAL) == utc(2027, 3, 29, 15)
    assert end_of_business_day(date(2027, 3, 12), NY_CAL) == utc(2027, 3, 12, 22)
    assert end_of_business_day(date(2027, 3, 15), NY_CAL) == utc(2027, 3, 15, 21)
    assert end_of_business_day(date(2027, 3, 15), NY_CAL).tzinfo is not None


def test_start_of_day_local_midnight() -> None:
    assert start_of_day(date(2027, 1, 4), FR_CAL) == utc(2027, 1, 3, 23)
    assert start_of_day(date(2027, 7, 4), FR_CAL) == utc(2027, 7, 3, 22)


# ---- add_business_days: rule C5 ----------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (date(2027, 1, 11), 5, date(2027, 1, 18)),  # Monday + 5 = next Monday
        (date(2027, 1, 11), 0, date(2027, 1, 11)),  # business day: itself
        (date(2027, 1, 9), 0, date(2027, 1, 11)),  # Saturday: next business day
        (date(2027, 3, 29), 0, date(2027, 3, 30)),  # Easter Monday: Tuesday
        (date(2027, 3, 26), 1, date(2027, 3, 30)),  # Friday + 1 skips the weekend and Easter Monday
        (date(2027, 3, 30), -1, date(2027, 3, 26)),  # and back
        (date(2027, 1, 9), 1, date(2027, 1, 11)),  # Saturday + 1 = Monday
        (date(2027, 1, 9), -1, date(2027, 1, 8)),  # Saturday - 1 = Friday
        (date(2027, 5, 5), 1, date(2027, 5, 7)),  # Wednesday before Ascension Thursday
        (date(2027, 4, 30), 1, date(2027, 5, 3)),  # 1 May 2027 is a Saturday anyway
        (date(2027, 12, 23), 5, date(2027, 12, 30)),  # Christmas 2027 on a Saturday, FR has no 24 Dec holiday
        (date(2027, 12, 30), 3, date(2028, 1, 4)),  # across the year and New Year's Day (a Saturday)
        (date(2028, 1, 4), -3, date(2027, 12, 30)),
        (date(2027, 10, 29), 1, date(2027, 11, 2)),  # Friday + 1 skips All Saints' Monday
    ],
)
@pytest.mark.rule("C5")
def test_c5_add_business_days_fr(start: date, days: int, expected: date) -> None:
    result = add_business_days(start, days, FR_CAL, FR_HOLIDAYS)
    assert result == expected
    assert is_business_day(result, FR_CAL, FR_HOLIDAYS)


@pytest.mark.rule("C5")
def test_c5_add_business_days_ny_observed_holidays() -> None:
    # Christmas 2027 (Saturday) observed Friday 24 December; New Year 2028 observed Friday 31 December.
    assert add_business_days(date(2027, 12, 23), 1, NY_CAL, NY_HOLIDAYS) == date(2027, 12, 27)
    assert add_business_days(date(2027, 12, 30), 1, NY_CAL, NY_HOLIDAYS) == date(2028, 1, 3)


@pytest.mark.rule("C5")
def test_c5_add_business_days_without_any_business_day() -> None:
    with pytest.raises(ValueError, match="business day"):
        add_business_days(date(2027, 1, 4), 1, FR_CAL.model_copy(update={"weekdays": []}), set())


# ---- rule C2 / C14 / C16 dates -------------------------------------------------------------
@pytest.mark.rule("C2", "C14", "C16")
def test_c2_period_end_and_c16_deadline_is_inclusive() -> None:
    period_end = period_end_date(date(2027, 1, 4), 12)
    assert period_end == date(2028, 1, 3)
    deadline = period_end - timedelta(days=90)  # rule C16
    assert deadline == date(2027, 10, 5)
    assert period_end - timedelta(days=100) == date(2027, 9, 25)  # rule C14 (policy: 100 days)
    # rule C16: a notice on the deadline day, late in the evening local time, is on time...
    closes = start_of_day(deadline + timedelta(days=1), FR_CAL)
    assert paris(2027, 10, 5, 23, 59, 59) < closes
    # ...and one at local midnight after it is late, even though it is still 5 October in UTC.
    assert paris(2027, 10, 6, 0, 0) >= closes
    assert closes == utc(2027, 10, 5, 22)
