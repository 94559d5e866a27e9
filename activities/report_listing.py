"""The monthly report's listing (A4, A6, C12): every request of the month, each row shaped once.

The figures are counted in SQL (activities/report_data.py); this is the one listing, and at
50,000 requests it is the hot path of the whole activity (issue 16). So its query returns
plain driver values (no SQLAlchemy result processing), instants as UTC text shifted to the
programme's zone by slicing strings (activities/report_clock.py), and each request becomes one
`ListedRequest` tuple for the report's tables (activities/report_rows.py) and one CSV record.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Float, case, cast, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from activities.report_clock import local_text_clock, utc_text
from activities.report_data import (
    CSV_COLUMNS,
    REQUEST_STATES,
    ReportMonth,
    breached,
    minutes_between,
    requests_of_month,
)
from storage.repositories.common import AnySelect

# One request of the month as the report lists it, instants as local ISO text to the minute: a plain
# tuple, not a NamedTuple or a dict, because the garbage collector stops tracking a plain tuple of
# strings and numbers, while 50,000 tracked rows cost one or two full collections (0.1-0.3 s).
ListedRequest = tuple[
    str, str, str, str,  # tracking number, kind, priority, summary
    str, bool,  # opened at, opened in the month
    str | None, int | None, str,  # C12: first response at, its elapsed minutes (rounded), met/breached/late/awaiting
    str | None,  # C12: the first-response deadline, for a breach only (shown with every breach)
    str | None, str | None, str | None, str | None, str | None,  # A4: latest change at, by, from, to, note
]
# Positions in a ListedRequest for the few readers that do not unpack it whole.
NUMBER: Final = 0
SUMMARY: Final = 3
OPENED_AT: Final = 4
OPENED_IN_MONTH: Final = 5
SLA: Final = 8
LATEST_NOTE: Final = 14
# SQLAlchemy rows made at a time from the driver's rows (not all 50,000 at once before the first is shaped).
FETCH_PARTITION = 100


@dataclass(frozen=True)
class RequestReview:
    """Rule A4/A6: the month's requests by state at the month end, and the same rows as CSV text."""

    lists: dict[str, list[ListedRequest]]
    csv: str


def csv_line(fields: tuple[str, ...]) -> str:
    """One CSV record exactly as `csv.writer` writes it (QUOTE_MINIMAL), without its line end. Most
    records hold no comma, quote or line break and need no quoting: joined directly, they cost a
    quarter of the csv module's time (0.15 s saved at 50,000 rows)."""
    line = ",".join(fields)
    # (A record of one empty field is written "" by the csv module, so it is not "nothing to quote".)
    if line and line.count(",") == len(fields) - 1 and '"' not in line and "\r" not in line and "\n" not in line:
        return line
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields)  # the line end decides what is quoted
    return out.getvalue()[:-2]


def _plain(column: ColumnElement[Any]) -> ColumnElement[Any]:
    # No result processing: converting the driver's values again cost 0.15 s at 50,000 rows.
    return type_coerce(column, NullType())


def _listing(month: ReportMonth, dialect: str) -> AnySelect:
    """The requests of the month, oldest first, as the listing shows them."""
    m = requests_of_month(month, dialect)
    sla = case(
        (breached(m.c.tracking_number), "breached"),
        (m.c.first_response_at.is_(None), "awaiting"),
        (m.c.first_response_at <= m.c.first_response_deadline, "met"),
        else_="late",
    )
    return select(*map(_plain, (
        m.c.tracking_number, m.c.kind, m.c.priority, m.c.summary, m.c.state, utc_text(m.c.opened_at),
        m.c.opened_at >= month.start, utc_text(m.c.first_response_deadline), utc_text(m.c.first_response_at),
        # A float from both databases (PostgreSQL's numeric came as a Decimal, slower to read and convert).
        cast(minutes_between(m.c.first_response_at, m.c.opened_at), Float), sla,
        utc_text(m.c.latest_at), m.c.latest_by, m.c.latest_from, m.c.latest_to, m.c.latest_note,
    ))).order_by(m.c.opened_at, m.c.tracking_number)


async def request_review(session: AsyncSession, month: ReportMonth) -> RequestReview:
    """Rule A4/A6: every open, pending and closed request of the month with its latest status change;
    rule C12: its first-response outcome (met, breached, late, awaiting) and whether it was opened in the month.
    One query, oldest first; the CSV (one row a request) is written in the same pass."""
    with no_collection():
        connection = await session.connection()
        result = await connection.execute(_listing(month, connection.dialect.name))
        return shape_listing(chain.from_iterable(result.partitions(FETCH_PARTITION)), month.tz)


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """No garbage collection while the listing's rows pass and live: each row is a few tracked objects (the
    driver's record, SQLAlchemy's row, then its `ListedRequest`), so the collector ran hundreds of times and,
    once they had piled up in its oldest generation, a full collection of the worker's whole heap (0.1-0.3 s)
    in every report; with the listing alone left out, the first collection after it still walked its 50,000
    tuples (~0.04 s), which are freed unvisited when it stays off until the report is filed. Nothing here
    forms a cycle; what others leave meanwhile is collected after. Left off if it was off (someone else's
    choice, or a report running beside this one)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def shape_listing(rows: Iterable[Any], tz: ZoneInfo) -> RequestReview:
    """Each row of the listing once: a `ListedRequest` in its state's list and a CSV record (A4, A6, C12)."""
    lists: dict[str, list[ListedRequest]] = {state: [] for state in REQUEST_STATES}
    lines = [csv_line(CSV_COLUMNS)]
    line_of = lines.append
    local = local_text_clock(tz)
    for (number, kind, priority, summary, state, opened, in_month, deadline, responded, minutes, outcome,
         at, by, from_state, to_state, note) in rows:
        opened_at, responded_at = local(opened) or "", local(responded)
        took = round(minutes) if minutes is not None else None
        first = f"{responded_at or ''},{'' if took is None else took}"
        if at is None:
            latest_at = None
            line = f"{number},{kind},{priority},{state},{opened_at},{first},{outcome},,,,,{summary}"
        else:
            latest_at, note = local(at), note or ""
            line = (f"{number},{kind},{priority},{state},{opened_at},{first},{outcome},{latest_at},{by},"
                    f"{from_state or 'new'} -> {to_state},{note},{summary}")
        # The CSV record written directly (`csv_line`'s fast path, without a call and a tuple a row).
        if line.count(",") != len(CSV_COLUMNS) - 1 or '"' in line or "\r" in line or "\n" in line:
            line = csv_line((number, kind, priority, state, opened_at, responded_at or "",
                             "" if took is None else str(took), outcome,
                             *(("", "", "", "") if at is None else
                               (latest_at or "", by, f"{from_state or 'new'} -> {to_state}", note)), summary))
        items = lists.get(state)
        if items is None:
            items = lists[state] = []
        items.append((number, kind, priority, summary, opened_at, bool(in_month), responded_at, took, outcome,
                      local(deadline) if outcome == "breached" else None, latest_at, by, from_state, to_state, note))
        line_of(line)
    lines.append("")  # the last record's line end
    return RequestReview(lists=lists, csv="\r\n".join(lines))


def breaches_of(lists: dict[str, list[ListedRequest]]) -> list[ListedRequest]:
    """Rule C12: the breached requests opened in the month, oldest first (every one of them is in the lists)."""
    rows = [r for items in lists.values() for r in items if r[SLA] == "breached" and r[OPENED_IN_MONTH]]
    return sorted(rows, key=lambda r: (r[OPENED_AT], r[NUMBER]))
