"""The monthly report's listing (A4, A6, C12): every request of the month, one query, one pass.

The figures are counted in SQL (activities/report_data.py); this is the one listing, and at
50,000 requests it is the hot path of the whole activity (issue 16). So the query returns
plain driver values (no SQLAlchemy result processing), instants as UTC text shifted to the
programme's zone by slicing (activities/report_clock.py), and each request becomes one
`ListedRequest` tuple for the report's tables (activities/report_rows.py) and one CSV row.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, pairwise
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Select, case, select, type_coerce
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
from storage.db import SessionFactory

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
# Rows converted at a time: SQLAlchemy's rows are tracked by the garbage collector too. Let go a hundred
# at a time (not all living until the last one is read), they never reach the oldest generation, whose
# growth by 50,000 rows set off a full collection (0.1 s) in every report.
FETCH_PARTITION = 100
LISTING_SLICES = 4  # parts of the month read one after the other (after the requests opened before it)


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


def _listing(month: ReportMonth, dialect: str, since: datetime | None, until: datetime) -> Select[Any]:
    """The requests of the month opened in [since, until), oldest first, as the listing shows them."""
    m = requests_of_month(month, dialect, since, until)
    sla = case(
        (breached(m.c.tracking_number), "breached"),
        (m.c.first_response_at.is_(None), "awaiting"),
        (m.c.first_response_at <= m.c.first_response_deadline, "met"),
        else_="late",
    )
    return select(*map(_plain, (
        m.c.tracking_number, m.c.kind, m.c.priority, m.c.summary, m.c.state, utc_text(m.c.opened_at),
        m.c.opened_at >= month.start, utc_text(m.c.first_response_deadline), utc_text(m.c.first_response_at),
        minutes_between(m.c.first_response_at, m.c.opened_at), sla, utc_text(m.c.latest_at), m.c.latest_by,
        m.c.latest_from, m.c.latest_to, m.c.latest_note,
    ))).order_by(m.c.opened_at, m.c.tracking_number)


def _slices(month: ReportMonth) -> list[tuple[datetime | None, datetime]]:
    """[since, until) of the listing's queries: the requests opened before the month, then the month in
    equal parts. Together they are the month's requests, in order."""
    step = (month.end - month.start) / LISTING_SLICES
    cuts = [month.start + step * i for i in range(LISTING_SLICES)] + [month.end]
    return [(None, month.start), *pairwise(cuts)]


async def request_review(sessions: SessionFactory, month: ReportMonth) -> RequestReview:
    """Rule A4/A6: every open, pending and closed request of the month with its latest status change;
    rule C12: its first-response outcome (met, breached, late, awaiting) and whether it was opened in the month.
    Oldest first; the CSV (one row a request) is written in the same pass.

    The month is read in slices (by opening time) on two connections in turn: while one slice is
    shaped here, the database runs the next one's query (issue 16: the query alone took as long as
    the shaping, and the shaping waited for all of it)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return await _review(sessions, month)
    finally:
        if collecting:
            gc.enable()


async def _review(sessions: SessionFactory, month: ReportMonth) -> RequestReview:
    async with sessions() as first, sessions() as second:
        connections = (await first.connection(), await second.connection())
        statements = [_listing(month, connections[0].dialect.name, since, until) for since, until in _slices(month)]
        shape = _Shaper(month.tz)
        pending = asyncio.ensure_future(connections[0].execute(statements[0]))
        try:
            for i in range(len(statements)):
                result = await pending
                if i + 1 < len(statements):
                    pending = asyncio.ensure_future(connections[(i + 1) % 2].execute(statements[i + 1]))
                shape(chain.from_iterable(result.partitions(FETCH_PARTITION)))
        finally:
            if not pending.done():  # shaping failed: let the query in flight end before its connection closes
                await asyncio.wait([pending])
    return shape.review()


class _Shaper:
    """Each row of the listing once: a `ListedRequest` in its state's list and a CSV record (A4, A6, C12)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.lists: dict[str, list[ListedRequest]] = {state: [] for state in REQUEST_STATES}
        self.lines = [csv_line(CSV_COLUMNS)]
        self.local = local_text_clock(tz)

    def review(self) -> RequestReview:
        return RequestReview(lists=self.lists, csv="\r\n".join([*self.lines, ""]))  # "": the last line's end

    def __call__(self, rows: Iterable[Any]) -> None:
        lists, line_of, local = self.lists, self.lines.append, self.local
        for (number, kind, priority, summary, state, opened, in_month, deadline, responded, minutes, outcome,
             at, by, from_state, to_state, note) in rows:
            opened_at, responded_at = local(opened) or "", local(responded)
            # SQLite gives a float, PostgreSQL a Decimal: rounded as a float either way.
            took = round(float(minutes)) if minutes is not None else None
            if at is None:
                latest_at = None
                csv_latest: tuple[str, ...] = ("", "", "", "")
            else:
                latest_at, note = local(at), note or ""
                csv_latest = (latest_at or "", by, f"{from_state or 'new'} -> {to_state}", note)
            items = lists.get(state)
            if items is None:
                items = lists[state] = []
            items.append((number, kind, priority, summary, opened_at, bool(in_month), responded_at, took, outcome,
                          local(deadline) if outcome == "breached" else None, latest_at, by, from_state, to_state,
                          note))
            line_of(csv_line((number, kind, priority, state, opened_at, responded_at or "",
                              "" if took is None else str(took), outcome, *csv_latest, summary)))


def breaches_of(lists: dict[str, list[ListedRequest]]) -> list[ListedRequest]:
    """Rule C12: the breached requests opened in the month, oldest first (every one of them is in the lists)."""
    rows = [r for items in lists.values() for r in items if r[SLA] == "breached" and r[OPENED_IN_MONTH]]
    return sorted(rows, key=lambda r: (r[OPENED_AT], r[NUMBER]))
