"""UTC for every write and every read.

Datetimes are written in UTC. SQLite hands them back naive (still UTC), PostgreSQL
aware; `as_utc` gives readers one shape.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC, whichever database the value came from (SQLite returns naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    # SQLite's DateTime drops the offset without converting: normalise before writing.
    return None if value is None else as_utc(value)


def at_or_now(value: datetime | None) -> datetime:
    """The write time a caller gave (tests, workflow time), in UTC; the clock's otherwise."""
    return as_utc(value) if value is not None else utcnow()
