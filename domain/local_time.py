"""Instants as the people of a programme read them: local date and wall time in the
programme calendar's time zone, labelled (rules C5, C12).

Workflows call these helpers for messages and for the local date a business-day count
starts from: `zoneinfo` is proxied inside the workflow sandbox, while `domain/` is
passed through, so the conversion runs here. The result only feeds activity inputs,
messages and current details, never a branch of workflow logic. The portal's and the
mail templates' time filter (`activities/templating.py: local_time`) formats with
`local_time_label` too, so a time reads the same on a page, in a mail and in a document.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from domain.calendar import BusinessCalendar

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def local_datetime(at: datetime, timezone: str) -> datetime:
    """`at` (aware; a naive value is UTC, as the database stores it) as wall time in `timezone`."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(ZoneInfo(timezone))


def local_date(at: datetime, timezone: str) -> date:
    """The calendar date `at` falls on in `timezone` (e.g. where a business-day count starts)."""
    return local_datetime(at, timezone).date()


def zone_abbreviation(moment: datetime) -> str:
    """"CET", "EDT"; zones without a letter abbreviation (tzdata writes "+04") read "UTC+04"."""
    name = moment.tzname() or "UTC"
    return f"UTC{name}" if name[:1] in "+-" else name


def local_time_label(at: datetime, timezone: str, *, zone_name: bool = False) -> str:
    """E.g. "Thu 3 Dec 2026, 12:25 CET"; with `zone_name`, "... CET (Europe/Paris)".

    The abbreviation alone is what people read; the zone's name is added where a deadline is
    promised, because "CET" does not say which calendar's holidays count.
    """
    moment = local_datetime(at, timezone)
    label = f"{_DAY_NAMES[moment.weekday()]} {moment.day} {moment:%b %Y, %H:%M} {zone_abbreviation(moment)}"
    if zone_name and timezone != zone_abbreviation(moment):
        label += f" ({timezone})"
    return label


def format_local(at: datetime | None, timezone: str) -> str:
    """E.g. "Tue 30 Mar 2027, 09:30 CEST (Europe/Paris)"; "not set" for None (workflow messages, mails)."""
    if at is None:
        return "not set"
    return local_time_label(at, timezone, zone_name=True)


def _hhmm(t: time) -> str:
    return f"{t:%H:%M}"


def business_hours_label(cal: BusinessCalendar) -> str:
    """The calendar's hours as people read them, e.g. "Mon–Fri 09:00–17:00 Europe/Paris" (rule C5)."""
    days = sorted(set(cal.weekdays))
    if days and days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        day_text = f"{_DAY_NAMES[days[0] - 1]}–{_DAY_NAMES[days[-1] - 1]}"
    else:
        day_text = ", ".join(_DAY_NAMES[d - 1] for d in days) or "no day"
    return f"{day_text} {_hhmm(cal.day_start)}–{_hhmm(cal.day_end)} {cal.timezone}"


def _amount(minutes: int, unit: str) -> str:
    """60 -> "one business hour"; 90 -> "90 business minutes"."""
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"one {unit}hour" if hours == 1 else f"{hours} {unit}hours"
    return f"{minutes} {unit}minutes"


def first_response_promise(cal: BusinessCalendar, minutes: int, *, whose: str = "your programme's") -> str:
    """What rule C12 promises, truthfully: the clock runs in business hours unless an
    out-of-hours agreement makes it 24x7. E.g. "one business hour on your programme's
    calendar (Mon–Fri 09:00–17:00 Europe/Paris)"; staff mails say "the programme's"."""
    if cal.out_of_hours_agreement_ref:
        return (f"{_amount(minutes, '')} counted round the clock, 24x7 "
                f"(out-of-hours agreement {cal.out_of_hours_agreement_ref})")
    return f"{_amount(minutes, 'business ')} on {whose} calendar ({business_hours_label(cal)})"
