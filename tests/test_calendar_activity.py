"""CalendarActivities (activities/calendar.py): period plan (rules C2, C14, C16), due dates (C5), SLA (C12)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.calendar import CalendarActivities
from config.calendar import supported_countries
from domain.activities import (
    BusinessDeadline,
    BusinessDeadlineRequest,
    DeadlineItem,
    DeadlineRequest,
    PlanPeriodRequest,
)
from domain.calendar import BusinessCalendar, add_business_days
from domain.policy import ProgramPolicy

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
FR_CAL = BusinessCalendar()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PARIS)


def plan_request(period_start: date = date(2027, 1, 4), term_months: int = 12) -> PlanPeriodRequest:
    return PlanPeriodRequest(
        calendar=FR_CAL, period=1, period_start=period_start, term_months=term_months, policy=ProgramPolicy()
    )


# ---- plan_period -------------------------------------------------------------------------
@pytest.mark.rule("C2", "C14", "C16")
async def test_plan_period_dates_c2_c14_c16() -> None:
    plan = await ActivityEnvironment().run(CalendarActivities().plan_period, plan_request())
    assert plan.period == 1
    assert plan.period_start == date(2027, 1, 4)
    assert plan.period_end == date(2028, 1, 3)  # rule C2
    assert plan.renewal_notice_on == date(2027, 9, 25)  # rule C14: period end - 100 days (policy)
    assert plan.non_renewal_deadline == date(2027, 10, 5)  # rule C16: period end - 90 days
    # rule C16: 7 days before the deadline, after the renewal notice (C14 first).
    assert plan.non_renewal_reminder_on == date(2027, 9, 28)
    assert plan.renewal_notice_on < plan.non_renewal_reminder_on < plan.non_renewal_deadline
    assert plan.invoice_due_on == plan.period_end  # rule C14: the renewal invoice is due on the last day
    assert plan.invoice_escalation_at == utc(2027, 12, 4, 8)  # 30 days before the end, 09:00 CET
    assert plan.maintenance_warning_ats == [utc(2027, 11, 4, 8), utc(2027, 12, 4, 8)]  # rule E1: 60 and 30 days


@pytest.mark.rule("C14", "C16")
async def test_a_carried_policy_never_sends_the_deadline_reminder_before_the_renewal_notice() -> None:
    # A programme started before the settings check carries 14 days, which would put the reminder (21
    # September) before the notice (25 September): the plan moves it to the day after the notice.
    carried = ProgramPolicy(non_renewal_reminder_days_before_deadline=14)
    plan = await CalendarActivities().plan_period(plan_request().model_copy(update={"policy": carried}))
    assert plan.renewal_notice_on == date(2027, 9, 25)
    assert plan.non_renewal_reminder_on == date(2027, 9, 26)


async def test_plan_period_instants_are_local_and_utc() -> None:
    plan = await CalendarActivities().plan_period(plan_request())
    assert plan.period_start_at == utc(2027, 1, 3, 23)  # 4 January 00:00 CET
    assert plan.period_end_at == utc(2028, 1, 3, 23)  # end of 3 January 2028 = 4 January 00:00 CET
    assert plan.renewal_notice_at == utc(2027, 9, 25, 7)  # 09:00 CEST
    assert plan.non_renewal_reminder_at == utc(2027, 9, 28, 7)
    for instant in (plan.period_start_at, plan.period_end_at, plan.renewal_notice_at, plan.non_renewal_deadline_end_at):
        assert instant.utcoffset() == timedelta(0)


@pytest.mark.rule("C16")
async def test_c16_non_renewal_deadline_is_inclusive() -> None:
    # rule C16: a notice on the deadline day, up to local midnight, is on time.
    plan = await CalendarActivities().plan_period(plan_request())
    end = plan.non_renewal_deadline_end_at
    assert end == paris(2027, 10, 6, 0, 0) == utc(2027, 10, 5, 22)
    assert paris(2027, 10, 5, 9, 0) < end
    assert paris(2027, 10, 5, 23, 59, 59) < end  # on time
    assert not paris(2027, 10, 6, 0, 0) < end  # late
    assert end.astimezone(PARIS).date() == plan.non_renewal_deadline + timedelta(days=1)


async def test_plan_period_month_starts() -> None:
    plan = await CalendarActivities().plan_period(plan_request())
    assert len(plan.month_starts) == 12
    assert plan.month_starts[0] == date(2027, 1, 4)
    assert plan.month_starts[-1] == date(2027, 12, 4)
    assert plan.month_start_ats[0] == utc(2027, 1, 4, 8)  # 09:00 CET
    assert plan.month_start_ats[3] == utc(2027, 4, 4, 7)  # 09:00 CEST
    assert [d.astimezone(PARIS).time() for d in plan.month_start_ats] == [time(9)] * 12


async def test_plan_period_month_end_clamping() -> None:
    plan = await CalendarActivities().plan_period(plan_request(date(2027, 1, 31)))
    assert plan.period_end == date(2028, 1, 30)
    assert plan.month_starts[1] == date(2027, 2, 28)
    assert plan.month_starts[2] == date(2027, 3, 31)


@pytest.mark.rule("C14", "C16")
async def test_plan_period_other_time_zone_and_policy() -> None:
    cal = BusinessCalendar(timezone="America/New_York", country="US", subdivision="NY", day_start=time(8, 30))
    policy = ProgramPolicy(renewal_notice_days_before_end=90, non_renewal_notice_days=60)
    req = PlanPeriodRequest(calendar=cal, period=2, period_start=date(2027, 3, 1), term_months=6, policy=policy)
    plan = await CalendarActivities().plan_period(req)
    assert plan.period_end == date(2027, 8, 31)
    assert plan.renewal_notice_on == date(2027, 6, 2)
    assert plan.non_renewal_deadline == date(2027, 7, 2)
    assert plan.non_renewal_deadline_end_at == utc(2027, 7, 3, 4)  # midnight EDT
    assert plan.period_start_at == utc(2027, 3, 1, 5)  # midnight EST
    assert plan.month_start_ats[0] == utc(2027, 3, 1, 13, 30)  # 08:30 EST
    assert plan.month_start_ats[1] == utc(2027, 4, 1, 12, 30)  # 08:30 EDT


# ---- schedule_deadlines: rule C5 ---------------------------------------------------------
@pytest.mark.rule("C5")
async def test_schedule_deadlines_business_days_and_reminders() -> None:
    req = DeadlineRequest(
        calendar=FR_CAL,
        items=[
            DeadlineItem(key="kickoff", business_days_from=date(2027, 1, 4), business_days=5),
            DeadlineItem(key="easter", business_days_from=date(2027, 3, 26), business_days=1),
            DeadlineItem(key="year-end", business_days_from=date(2027, 12, 30), business_days=3),
        ],
    )
    schedule = await ActivityEnvironment().run(CalendarActivities().schedule_deadlines, req)
    by_key = {item.key: item for item in schedule.items}
    assert [item.key for item in schedule.items] == ["kickoff", "easter", "year-end"]

    assert by_key["kickoff"].due_on == date(2027, 1, 11)
    assert by_key["kickoff"].due_at == utc(2027, 1, 11, 16)  # 17:00 CET
    assert by_key["kickoff"].remind_at == utc(2027, 1, 7, 8)  # Thursday 09:00 CET, 2 business days before

    assert by_key["easter"].due_on == date(2027, 3, 30)  # Easter Monday skipped
    assert by_key["easter"].due_at == utc(2027, 3, 30, 15)  # 17:00 CEST
    assert by_key["easter"].remind_at == utc(2027, 3, 25, 8)  # Thursday 25 March 09:00 CET

    assert by_key["year-end"].due_on == date(2028, 1, 4)
    assert by_key["year-end"].remind_at == utc(2027, 12, 31, 8)  # Friday 31 Dec; 1 and 2 Jan are a weekend


@pytest.mark.rule("C5")
async def test_schedule_deadlines_fixed_date_kept_even_on_non_business_day() -> None:
    req = DeadlineRequest(
        calendar=FR_CAL,
        items=[
            DeadlineItem(key="agreed", due_on=date(2027, 3, 29)),  # Easter Monday, kept as agreed
            DeadlineItem(key="saturday", due_on=date(2027, 9, 25)),
        ],
        reminder_business_days=2,
    )
    schedule = await CalendarActivities().schedule_deadlines(req)
    agreed, saturday = schedule.items
    assert agreed.due_on == date(2027, 3, 29)
    assert agreed.due_at == utc(2027, 3, 29, 15)
    assert agreed.remind_at == utc(2027, 3, 25, 8)
    assert saturday.due_on == date(2027, 9, 25)
    assert saturday.remind_at == utc(2027, 9, 23, 7)  # Thursday 09:00 CEST


@pytest.mark.rule("C5")
async def test_schedule_deadlines_zero_reminder_days_uses_last_business_day() -> None:
    req = DeadlineRequest(
        calendar=FR_CAL,
        items=[DeadlineItem(key="a", due_on=date(2027, 9, 25)), DeadlineItem(key="b", due_on=date(2027, 9, 22))],
        reminder_business_days=0,
    )
    a, b = (await CalendarActivities().schedule_deadlines(req)).items
    assert a.remind_at == utc(2027, 9, 24, 7)  # Saturday due: reminded Friday morning
    assert b.remind_at == utc(2027, 9, 22, 7)  # business day due: reminded that morning


@pytest.mark.rule("C5")
async def test_schedule_deadlines_far_ahead_loads_more_holiday_years() -> None:
    # 600 business days run into 2029: the activity must load those years' holidays too.
    item = DeadlineItem(key="far", business_days_from=date(2027, 1, 4), business_days=600)
    schedule = await CalendarActivities().schedule_deadlines(DeadlineRequest(calendar=FR_CAL, items=[item]))
    all_holidays = set(holidays_lib.country_holidays("FR", years=range(2025, 2032)).keys())
    expected = add_business_days(date(2027, 1, 4), 600, FR_CAL, all_holidays)
    assert expected.year == 2029
    assert schedule.items[0].due_on == expected


async def test_schedule_deadlines_needs_a_date() -> None:
    req = DeadlineRequest(calendar=FR_CAL, items=[DeadlineItem(key="none", business_days=3)])
    with pytest.raises(ApplicationError) as info:
        await CalendarActivities().schedule_deadlines(req)
    assert info.value.non_retryable


# ---- business_deadline: rule C12 ---------------------------------------------------------
async def deadline(start: datetime, minutes: int, calendar: BusinessCalendar = FR_CAL, **kw: Any) -> BusinessDeadline:
    request = BusinessDeadlineRequest(calendar=calendar, start=start, minutes=minutes, **kw)
    return await CalendarActivities().business_deadline(request)


@pytest.mark.rule("C12")
async def test_c12_business_deadline_with_warning() -> None:
    req = BusinessDeadlineRequest(calendar=FR_CAL, start=paris(2027, 3, 26, 16, 30), minutes=60, warning_minutes=15)
    result = await ActivityEnvironment().run(CalendarActivities().business_deadline, req)
    assert result.deadline == utc(2027, 3, 30, 7, 30)  # Tuesday 09:30 CEST, after Easter Monday
    assert result.warning_at == utc(2027, 3, 30, 7, 15)


@pytest.mark.rule("C12")
async def test_c12_warning_before_weekend() -> None:
    # Filed Friday 16:00 with a 75-minute SLA: 60 minutes on Friday + 15 on Monday = Monday 09:15.
    # The 30-minute warning goes back 15 minutes on Monday and 15 on Friday = Friday 16:45.
    result = await deadline(paris(2027, 1, 8, 16, 0), 75, warning_minutes=30)
    assert result.deadline == paris(2027, 1, 11, 9, 15)
    assert result.warning_at == paris(2027, 1, 8, 16, 45)


@pytest.mark.rule("C12")
async def test_c12_no_warning_when_zero() -> None:
    result = await deadline(paris(2027, 1, 8, 10, 0), 60)
    assert result.deadline == paris(2027, 1, 8, 11, 0)
    assert result.warning_at is None


@pytest.mark.rule("C12", "C5")
async def test_c12_round_the_clock_from_request() -> None:
    result = await deadline(paris(2027, 3, 26, 16, 30), 60, warning_minutes=15, round_the_clock=True)
    assert result.deadline == paris(2027, 3, 26, 17, 30)
    assert result.warning_at == paris(2027, 3, 26, 17, 15)


@pytest.mark.rule("C12", "C5")
async def test_c12_out_of_hours_agreement_makes_clock_24x7() -> None:
    cal = FR_CAL.model_copy(update={"out_of_hours_agreement_ref": "OOH-2027-001"})
    result = await deadline(paris(2027, 3, 27, 3, 0), 60, warning_minutes=15, calendar=cal)
    assert result.deadline == paris(2027, 3, 27, 4, 0)  # Saturday night, no business hours needed
    assert result.warning_at == paris(2027, 3, 27, 3, 45)


@pytest.mark.rule("C12")
async def test_c12_warning_longer_than_sla_is_clamped_to_start() -> None:
    start = paris(2027, 1, 9, 11, 0)  # Saturday
    result = await deadline(start, 10, warning_minutes=15)
    assert result.deadline == paris(2027, 1, 11, 9, 10)
    assert result.warning_at == start


@pytest.mark.rule("C12")
async def test_c12_new_york_observed_holiday_and_subdivision() -> None:
    cal = BusinessCalendar(timezone="America/New_York", country="US", subdivision="NY")
    start = datetime(2027, 7, 2, 16, 30, tzinfo=NEW_YORK)  # Friday; Monday 5 July is Independence Day observed
    result = await deadline(start, 60, warning_minutes=15, calendar=cal)
    assert result.deadline == utc(2027, 7, 6, 13, 30)  # Tuesday 09:30 EDT
    assert result.warning_at == utc(2027, 7, 6, 13, 15)


@pytest.mark.rule("C12")
async def test_c12_business_deadline_across_new_year() -> None:
    # Friday 31 December 2027 16:30 -> 1 January 2028 (Saturday) and the weekend -> Monday 3 January 09:30.
    result = await deadline(paris(2027, 12, 31, 16, 30), 60)
    assert result.deadline == paris(2028, 1, 3, 9, 30)


async def test_c12_naive_start_is_refused() -> None:
    req = BusinessDeadlineRequest(calendar=FR_CAL, start=datetime(2027, 1, 8, 16, 30), minutes=60)
    with pytest.raises(ApplicationError) as info:
        await CalendarActivities().business_deadline(req)
    assert info.value.non_retryable


# ---- holidays and bad calendars ----------------------------------------------------------
async def test_unknown_country_is_non_retryable() -> None:
    cal = BusinessCalendar(country="XX")
    req = BusinessDeadlineRequest(calendar=cal, start=paris(2027, 1, 8, 16, 30), minutes=60)
    with pytest.raises(ApplicationError) as info:
        await CalendarActivities().business_deadline(req)
    assert info.value.non_retryable
    assert "C5" in str(info.value)


async def test_unknown_time_zone_is_non_retryable() -> None:
    cal = BusinessCalendar(timezone="Mars/Olympus_Mons")
    with pytest.raises(ApplicationError) as info:
        await CalendarActivities().plan_period(
            PlanPeriodRequest(
                calendar=cal, period=1, period_start=date(2027, 1, 4), term_months=12, policy=ProgramPolicy()
            )
        )
    assert info.value.non_retryable


def test_holidays_are_cached_per_country_subdivision_year() -> None:
    acts = CalendarActivities()
    first = acts.holidays_for(FR_CAL, 2026, 2028)
    assert date(2027, 3, 29) in first
    assert set(acts._cache) == {("FR", None, 2026), ("FR", None, 2027), ("FR", None, 2028)}
    assert acts.holidays_for(FR_CAL, 2027, 2027) == {d for d in first if d.year == 2027}
    alsace = BusinessCalendar(country="FR", subdivision="57")  # Moselle: Good Friday and 26 December
    assert date(2027, 3, 26) in acts.holidays_for(alsace, 2027, 2027)
    assert date(2027, 3, 26) not in first


def test_supported_countries() -> None:
    countries = supported_countries()
    assert {"FR", "US", "DE", "GB"} <= countries
    assert "XX" not in countries
    countries.add("XX")  # a copy: callers cannot corrupt the cached set
    assert "XX" not in supported_countries()
