"""Calendar activities: period plan, business-day due dates, business-hour SLA deadlines.

Holidays come from an injected source (activities/holidays.py): OT's published list of the
calendar's region in the worker (rule A1), the `holidays` package directly by default. Neither can
run in the workflow sandbox and both change over time, so workflows call these activities and
Temporal records the results, with the name and version of the list used, in history: a list
imported later applies to deadlines computed after it and never to one already recorded
(docs/design.md "Business calendar"). The maths lives in `domain.calendar` (pure).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.holidays import HolidaySource, NoHolidayData, PackageHolidays
from domain.activities import (
    BusinessDeadline,
    BusinessDeadlineRequest,
    DeadlineItem,
    DeadlineRequest,
    DeadlineSchedule,
    PlanPeriodRequest,
    ScheduledDeadline,
)
from domain.calendar import (
    BusinessCalendar,
    add_business_days,
    add_months,
    business_deadline,
    business_instant_before,
    end_of_business_day,
    period_end_date,
    previous_business_day_on_or_before,
    start_of_business_day,
    start_of_day,
)
from domain.program import PeriodPlan

T = TypeVar("T")

# A computation whose result lands outside the holiday years loaded so far is redone
# with more years; this bounds how far that may go.
_MAX_YEARS = 200
# An import while a computation runs makes it start over; this bounds how often.
_MAX_LIST_CHANGES = 5


def _invalid(message: str) -> ApplicationError:
    # A bad calendar will not get better on retry: fail the activity for good.
    return ApplicationError(message, type="InvalidCalendar", non_retryable=True)


class _ListChanged(Exception):
    """The list changed between two reads of one activity call: the computation starts again on the new one."""


class _Holidays:
    """The holidays one activity call uses, all from one version of one list, and that list's name (recorded in
    its result). Years read once are kept for the call; a wider range is read whole again, and if the list
    changed meanwhile `_ListChanged` makes the call start over on the new version (`_consistently`)."""

    def __init__(self, source: HolidaySource, cal: BusinessCalendar) -> None:
        self._source, self._cal = source, cal
        self.list_name: str | None = None
        self._days: set[date] = set()
        self._loaded: tuple[int, int] | None = None

    async def __call__(self, first_year: int, last_year: int) -> set[date]:
        if self._loaded is not None:
            lo, hi = self._loaded
            if lo <= first_year and last_year <= hi:
                return self._days
            first_year, last_year = min(first_year, lo), max(last_year, hi)
        try:
            found = await self._source.holidays(self._cal, first_year, last_year)
        except NoHolidayData as exc:
            raise _invalid(str(exc)) from exc
        changed = self.list_name is not None and found.list_name != self.list_name
        self._days, self._loaded, self.list_name = set(found.days), (first_year, last_year), found.list_name
        if changed:
            raise _ListChanged
        return self._days


async def _consistently(compute: Callable[[], Awaitable[T]]) -> T:
    """`compute()`, started over while the list its `_Holidays` reads changes under it (rule A1: the list
    recorded is the one every date of the result comes from)."""
    for _ in range(_MAX_LIST_CHANGES):
        try:
            return await compute()
        except _ListChanged:
            continue  # the _Holidays now holds the new version over every year read so far
    # Imports back to back: retryable, the activity's retry policy tries again later.
    raise ApplicationError(f"the holiday list changed during each of {_MAX_LIST_CHANGES} computations",
                           type="HolidayListChanging")


class CalendarActivities:
    """Activities computing calendar dates from the holidays of `source` (default: the `holidays` package)."""

    def __init__(self, source: HolidaySource | None = None) -> None:
        self._package = PackageHolidays()
        self._source: HolidaySource = source or self._package
        # The package's cache, per (country, subdivision, year).
        self._cache = self._package.cache

    # ---- holidays ---------------------------------------------------------------
    def holidays_for(self, cal: BusinessCalendar, first_year: int, last_year: int) -> set[date]:
        """The `holidays` package's public holidays of the calendar's country/subdivision (rule C5) for the years
        given; what a published list is seeded from."""
        try:
            return self._package.days(cal, first_year, last_year)
        except NoHolidayData as exc:
            raise _invalid(str(exc)) from exc

    async def _solve(
        self, holidays: _Holidays, anchor: date, compute: Callable[[set[date]], T], span: Callable[[T], list[date]]
    ) -> T:
        """Run `compute` with holidays of the years around `anchor`, widened until the result fits.

        Every function in domain.calendar only looks at the days between its input and
        its result, so once the result's (local) dates fall inside the loaded years the
        answer is exact: holidays outside them cannot change it.
        """
        lo, hi = anchor.year - 1, anchor.year + 1
        for _ in range(_MAX_YEARS):
            result = compute(await holidays(lo, hi))
            years = [d.year for d in span(result)]
            if lo <= min(years) and max(years) <= hi:
                return result
            lo, hi = min(lo, min(years) - 1), max(hi, max(years) + 1)
        raise _invalid(f"calendar computation did not converge within {_MAX_YEARS} years")

    # ---- activities -------------------------------------------------------------
    @activity.defn(name="plan_period")
    async def plan_period(self, req: PlanPeriodRequest) -> PeriodPlan:
        """Dates of one period (rules C2, C14, C16), as local dates and UTC instants."""
        cal, policy = req.calendar, req.policy
        try:
            _check_timezone(cal)
            period_end = period_end_date(req.period_start, req.term_months)  # rule C2
            # rule C14: the renewal notice goes out `renewal_notice_days_before_end` days before the end.
            renewal_notice_on = period_end - timedelta(days=policy.renewal_notice_days_before_end)
            # rule C16: a non-renewal notice is on time up to and including this day (local time).
            non_renewal_deadline = period_end - timedelta(days=policy.non_renewal_notice_days)
            # rule C16 after C14: the deadline reminder never precedes the renewal notice (a policy carried
            # from before the settings were checked may ask for it; domain/renewal.py).
            reminder_on = max(non_renewal_deadline - timedelta(days=policy.non_renewal_reminder_days_before_deadline),
                              renewal_notice_on + timedelta(days=1))
            month_starts = [add_months(req.period_start, i) for i in range(req.term_months)]
            return PeriodPlan(
                period=req.period,
                period_start=req.period_start,
                period_end=period_end,
                period_start_at=start_of_day(req.period_start, cal),
                period_end_at=start_of_day(period_end + timedelta(days=1), cal),
                renewal_notice_on=renewal_notice_on,
                renewal_notice_at=start_of_business_day(renewal_notice_on, cal),
                non_renewal_deadline=non_renewal_deadline,
                # rule C16: inclusive deadline, so it ends at the local midnight closing that day.
                non_renewal_deadline_end_at=start_of_day(non_renewal_deadline + timedelta(days=1), cal),
                non_renewal_reminder_on=reminder_on,
                non_renewal_reminder_at=start_of_business_day(reminder_on, cal),
                month_starts=month_starts,
                month_start_ats=[start_of_business_day(m, cal) for m in month_starts],
                # rule C14: the renewal invoice is due on the period's last day; unpaid, ops hear of it before.
                invoice_due_on=period_end,
                invoice_escalation_at=start_of_business_day(
                    period_end - timedelta(days=policy.unpaid_invoice_escalation_days_before_end), cal),
                # rule E1 ahead of time: two checks of the maintenance subscription against the next period.
                maintenance_warning_ats=[
                    start_of_business_day(period_end - timedelta(days=days), cal)
                    for days in (policy.maintenance_warning_days_before_end,
                                 policy.maintenance_second_warning_days_before_end)],
            )
        except (ValueError, OverflowError) as exc:
            raise _invalid(f"cannot plan period {req.period} from {req.period_start}: {exc}") from exc

    @activity.defn(name="schedule_deadlines")
    async def schedule_deadlines(self, req: DeadlineRequest) -> DeadlineSchedule:
        """Business-day due dates (rule C5): due at the end of the due day, reminded N business days before."""
        cal = req.calendar
        _check_timezone(cal)
        holidays = _Holidays(self._source, cal)

        async def schedule() -> list[ScheduledDeadline]:
            return [await self._schedule_one(cal, holidays, item, req.reminder_business_days) for item in req.items]

        try:
            items = await _consistently(schedule)
        except (ValueError, OverflowError) as exc:
            raise _invalid(f"cannot schedule deadlines: {exc}") from exc
        return DeadlineSchedule(items=items, holiday_list=holidays.list_name)

    async def _schedule_one(self, cal: BusinessCalendar, holidays: _Holidays, item: DeadlineItem,
                            reminder_days: int) -> ScheduledDeadline:
        if item.due_on is not None:
            # An agreed date is kept as given, even on a non-business day.
            due_on = item.due_on
        elif item.business_days_from is not None:
            start = item.business_days_from
            due_on = await self._solve(
                holidays, start, lambda h: add_business_days(start, item.business_days, cal, h), lambda r: [start, r]
            )
        else:
            raise ValueError(f"deadline {item.key!r} needs due_on or business_days_from")

        def remind(h: set[date]) -> date:
            if reminder_days <= 0:
                return previous_business_day_on_or_before(due_on, cal, h)
            return add_business_days(due_on, -reminder_days, cal, h)

        remind_on = await self._solve(holidays, due_on, remind, lambda r: [r, due_on])
        return ScheduledDeadline(
            key=item.key,
            due_on=due_on,
            due_at=end_of_business_day(due_on, cal),
            remind_at=start_of_business_day(remind_on, cal),
            starts_at=start_of_business_day(due_on, cal),
        )

    @activity.defn(name="business_deadline")
    async def business_deadline(self, req: BusinessDeadlineRequest) -> BusinessDeadline:
        """First-response deadline on the programme calendar (rule C12), with its warning instant."""
        cal = req.calendar
        _check_timezone(cal)
        # rule C12: an out-of-hours agreement makes the clock run 24x7.
        round_the_clock = req.round_the_clock or bool(cal.out_of_hours_agreement_ref)
        tz = ZoneInfo(cal.timezone)
        holidays = _Holidays(self._source, cal)
        if req.start.tzinfo is None or req.start.utcoffset() is None:
            raise _invalid(f"rule C12: the request start must be timezone-aware, got {req.start!r}")
        start = req.start

        async def compute() -> tuple[datetime, datetime | None]:
            local_start = start.astimezone(tz).date()
            if round_the_clock:  # 24x7: no holiday counts, so no list is read (nor recorded)
                deadline = business_deadline(start, req.minutes, cal, set(), round_the_clock=True)
            else:
                deadline = await self._solve(
                    holidays,
                    local_start,
                    lambda h: business_deadline(start, req.minutes, cal, h),
                    lambda r: [local_start, r.astimezone(tz).date()],
                )
            if req.warning_minutes <= 0:
                return deadline, None
            if round_the_clock:
                warning_at = deadline - timedelta(minutes=req.warning_minutes)
            else:
                local_deadline = deadline.astimezone(tz).date()
                warning_at = await self._solve(
                    holidays,
                    local_deadline,
                    lambda h: business_instant_before(deadline, req.warning_minutes, cal, h),
                    lambda r: [r.astimezone(tz).date(), local_deadline],
                )
            # A warning longer than the SLA itself fires as soon as the request is filed.
            return deadline, max(warning_at, start.astimezone(deadline.tzinfo))

        try:
            deadline, warning_at = await _consistently(compute)
            return BusinessDeadline(deadline=deadline, warning_at=warning_at, holiday_list=holidays.list_name)
        except (ValueError, OverflowError) as exc:
            raise _invalid(f"cannot compute the business deadline from {req.start}: {exc}") from exc


def _check_timezone(cal: BusinessCalendar) -> None:
    try:
        ZoneInfo(cal.timezone)
    except (KeyError, ValueError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise _invalid(f"rule C5: unknown time zone {cal.timezone!r}") from exc
