"""Instants as the people of a programme read them: local date and wall time in the
programme calendar's time zone (rules C5, C12).

Workflows call these helpers for messages and for the local date a business-day count
starts from: `zoneinfo` is proxied inside the workflow sandbox, while `domain/` is
passed through, so the conversion runs here. The result only feeds activity inputs,
messages and current details, never a branch of workflow logic.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo


def local_datetime(at: datetime, timezone: str) -> datetime:
    """`at` (aware) as wall time in `timezone`."""
    return at.astimezone(ZoneInfo(timezone))


def local_date(at: datetime, timezone: str) -> date:
    """The calendar date `at` falls on in `timezone` (e.g. where a business-day count starts)."""
    return local_datetime(at, timezone).date()


def format_local(at: datetime | None, timezone: str) -> str:
    """E.g. `Tue 30 Mar 2027 09:30 Europe/Paris`; "not set" for None."""
    if at is None:
        return "not set"
    return f"{local_datetime(at, timezone):%a %d %b %Y %H:%M} {timezone}"
