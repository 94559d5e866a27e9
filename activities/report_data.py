"""Figures of the monthly follow-up report (D7, A6, A4, C10, C12), one SQL aggregate each.

Every function takes an open session and a `ReportMonth` (one customer, one month in the
programme's time zone, its bounds already in UTC) and returns plain values ready for the
report context. Counting happens in the database (GROUP BY, COUNT, SUM, correlated
subqueries on indexed columns), never by loading ORM objects and looping over them. The one
listing (every request of the month with its latest change, A4/A6) is in
activities/report_listing.py, on `requests_of_month` below.

Definitions (they are also printed in the report, so the customer reads the same rules):

- Rule A4/A6, state of a request: the `to_state` of its latest status change at or before
  the month end (ties on `at` broken by the change id); a request with no change yet is open.
- Rule A6, requests of the month: opened before the month end and either still open or
  pending at the month end (whenever they were opened), or closed by a change made in the
  month. A request closed before the month and not reopened in it is left out.
- Rule C12, SLA figures: requests *opened* in the month. Met = first response at or before
  its deadline; breaches = requests with a `breached` SLA event; response time = elapsed
  minutes from `opened_at` to `first_response_at` (wall-clock minutes, not business minutes).
  Outcomes known when the report is drafted count, even if they fall after the month end.
- Rule A4, dispatches of the month: requested in the month or visited in it; current state.
- Rule C10, extras of the month: recorded in the month for the period; extra calls and extra
  reports counted apart.
- Rule A6, optional programmes: active on at least one day of the month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Float, and_, case, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Subquery

from domain.step_inputs import BillableExtraKind
from storage.repositories.clock import as_utc
from storage.repositories.common import AnyRow
from storage.repositories.documents import DRAFT_KINDS
from storage.tables import (
    BillableExtraRow,
    DispatchRow,
    DocumentRow,
    OptionalProgrammeRow,
    OutboxRow,
    RequestStatusChangeRow,
    SlaEventRow,
    SupportRequestRow,
)

REQUEST_STATES = ("open", "pending", "closed")  # rule A6: summary by state
REQUEST_KINDS = ("support", "product", "advisory", "training")  # rule A6: broken down by kind
SLA_OUTCOMES = ("met", "breached", "late", "awaiting")  # rule C12, per request
DISPATCH_STATES = ("requested", "approved", "refused", "booked", "visited")  # rule A4
CSV_COLUMNS = (
    "tracking_number", "kind", "priority", "state", "opened_at", "first_response_at", "first_response_minutes",
    "sla", "latest_change_at", "latest_change_by", "latest_change", "latest_change_note", "summary",
)


@dataclass(frozen=True)
class ReportMonth:
    """One customer's report month: [start, end) in UTC, from local midnight to local midnight."""

    customer_id: str
    period: int
    first_day: date  # local dates, inclusive
    last_day: date
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    tz: ZoneInfo


# ---- SQL helpers -----------------------------------------------------------------


class minutes_between(FunctionElement[float]):
    """Elapsed minutes `later - earlier` between two timestamp columns, in the database's own dialect."""

    type = Float()
    name = "minutes_between"
    inherit_cache = True


@compiles(minutes_between, "sqlite")
def _minutes_sqlite(element: minutes_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    # Stored as "YYYY-MM-DD HH:MM:SS.ffffff" (UTC); julianday() reads that, in days.
    return f"((julianday({later}) - julianday({earlier})) * 1440.0)"


@compiles(minutes_between)
def _minutes_default(element: minutes_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 60.0)"


def _local(value: datetime | None, tz: ZoneInfo) -> str | None:
    """Local ISO 8601 to the minute, offset included ("2027-03-04T10:05+01:00"); tables show "2027-03-04 10:05"."""
    return as_utc(value).astimezone(tz).isoformat(timespec="minutes") if value is not None else None


def _decimal(value: Any) -> Decimal:
    # SQLite sums NUMERIC as REAL: back to cents before anyone adds it up again.
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def requests_of_month(month: ReportMonth, dialect: str = "sqlite") -> Subquery:
    """Rule A6: the month's requests with their state at the month end and their latest status change (A4).

    Latest change: ties on `at` broken by the change id, the same rows on both databases; SQLite
    finds it fastest request by request (its index on tracking_number), PostgreSQL by one ranking.
    The statement differs by database, the rows do not (tests/test_monthly_report.py runs on both)."""
    r = SupportRequestRow
    base: Any
    if dialect == "postgresql":
        # One ranking of each request's changes (a window over the join), not a subquery a request:
        # 1.5-2x faster on PostgreSQL, and with no join on a derived table, no plan that repeats it
        # a row (which a table never analysed can get: tests and the bench create theirs just before).
        c = aliased(RequestStatusChangeRow, name="c")
        base = (
            select(r.tracking_number, r.kind, r.priority, r.summary, r.opened_at, r.first_response_at,
                   r.first_response_deadline, c.at, c.by, c.from_state, c.to_state, c.note,
                   func.row_number().over(partition_by=r.tracking_number, order_by=(c.at.desc(), c.id.desc()))
                   .label("rank"))
            .select_from(r)
            .outerjoin(c, and_(c.tracking_number == r.tracking_number, c.at < month.end))
            .where(r.customer_id == month.customer_id, r.opened_at < month.end)
            .subquery("ranked")
        )
        columns: tuple[Any, ...] = tuple(base.c[k] for k in ("at", "by", "from_state", "to_state", "note"))
        request_columns: tuple[Any, ...] = tuple(base.c[k] for k in (
            "tracking_number", "kind", "priority", "summary", "opened_at", "first_response_at",
            "first_response_deadline"))
        where: tuple[ColumnElement[bool], ...] = (base.c.rank == 1,)
    else:
        c = aliased(RequestStatusChangeRow, name="c")
        latest_id = (
            select(c.id)
            .where(c.tracking_number == r.tracking_number, c.at < month.end)
            .order_by(c.at.desc(), c.id.desc())
            .limit(1)
            .correlate(r)
            .scalar_subquery()
        )
        requests = (
            select(r.tracking_number, r.kind, r.priority, r.summary, r.opened_at, r.first_response_at,
                   r.first_response_deadline, latest_id.label("latest_id"))
            .where(r.customer_id == month.customer_id, r.opened_at < month.end)
            .subquery("base")
        )
        latest = aliased(RequestStatusChangeRow, name="latest")
        base = requests.outerjoin(latest, latest.id == requests.c.latest_id)
        columns = (latest.at, latest.by, latest.from_state, latest.to_state, latest.note)
        # Not requests.c.latest_id: selecting it too would make SQLite run the correlated subquery twice.
        request_columns = tuple(col for col in requests.c if col.key != "latest_id")
        where = ()
    at, by, from_state, to_state, note = columns
    state = func.coalesce(to_state, literal("open"))
    return (
        select(
            *request_columns,
            state.label("state"),
            at.label("latest_at"),
            by.label("latest_by"),
            from_state.label("latest_from"),
            to_state.label("latest_to"),
            note.label("latest_note"),
        )
        .select_from(base)
        # Closed requests count only when the closing (latest) change falls in the month.
        .where(*where, or_(state != "closed", at >= month.start))
        .subquery("month_requests")
    )


def _opened_in_month(month: ReportMonth) -> ColumnElement[bool]:
    r = SupportRequestRow
    return and_(r.customer_id == month.customer_id, r.opened_at >= month.start, r.opened_at < month.end)


def breached(tracking_number: Any) -> ColumnElement[bool]:
    e = SlaEventRow
    return exists().where(e.tracking_number == tracking_number, e.kind == "breached")


# ---- requests (A4, A6) -------------------------------------------------------------


async def state_matrix(session: AsyncSession, month: ReportMonth) -> dict[str, dict[str, int]]:
    """Rule A6: requests of the month by kind x state at the month end (every cell, zeros included)."""
    m = requests_of_month(month, (await session.connection()).dialect.name)
    rows = await session.execute(select(m.c.kind, m.c.state, func.count()).group_by(m.c.kind, m.c.state))
    matrix = {kind: dict.fromkeys(REQUEST_STATES, 0) for kind in REQUEST_KINDS}
    for kind, state, n in rows:
        # A kind or state unknown to this version still shows (and still counts in the totals).
        matrix.setdefault(kind, dict.fromkeys(REQUEST_STATES, 0))[state] = int(n)
    return matrix


def by_state(matrix: dict[str, dict[str, int]]) -> dict[str, int]:
    """Column totals of the A6 matrix (the GROUP BY above counted every request once)."""
    totals = dict.fromkeys(REQUEST_STATES, 0)
    for row in matrix.values():
        for state, n in row.items():
            totals[state] = totals.get(state, 0) + n
    return totals


def by_kind(matrix: dict[str, dict[str, int]]) -> dict[str, int]:
    return {kind: sum(row.values()) for kind, row in matrix.items()}


# ---- first-response SLA (C12) --------------------------------------------------------


async def sla_figures(session: AsyncSession, month: ReportMonth) -> dict[str, Any]:
    """Rule C12 for the requests opened in the month: opened, responded, met, breached, awaiting, median minutes."""
    r = SupportRequestRow
    met = and_(r.first_response_at.is_not(None), r.first_response_deadline.is_not(None),
               r.first_response_at <= r.first_response_deadline)
    was_breached = breached(r.tracking_number)
    opened, responded, met_n, breached_n, awaiting = (await session.execute(
        select(
            func.count(),
            func.count(r.first_response_at),
            func.coalesce(func.sum(case((met, 1), else_=0)), 0),
            func.coalesce(func.sum(case((was_breached, 1), else_=0)), 0),
            func.coalesce(func.sum(case((and_(r.first_response_at.is_(None), ~was_breached), 1), else_=0)), 0),
        ).where(_opened_in_month(month))
    )).one()
    return {
        "opened": int(opened),
        "responded": int(responded),
        "met": int(met_n),
        "breached": int(breached_n),
        "awaiting": int(awaiting),
        "met_percent": round(100 * met_n / opened, 1) if opened else None,
        "median_minutes": await median_first_response_minutes(session, month, int(responded)),
        "deadline_minutes": 60,
    }


async def median_first_response_minutes(session: AsyncSession, month: ReportMonth, responded: int) -> float | None:
    """Rule C12: median of elapsed minutes to first response: the middle one (or two) in SQL order."""
    if responded == 0:
        return None
    r = SupportRequestRow
    minutes = minutes_between(r.first_response_at, r.opened_at)
    middle = (await session.execute(
        select(minutes)
        .where(_opened_in_month(month), r.first_response_at.is_not(None))
        .order_by(minutes)
        .offset((responded - 1) // 2)
        .limit(2 - responded % 2)
    )).scalars().all()
    return round(float(sum(middle)) / len(middle), 1)


# ---- on-site dispatches (A4) -----------------------------------------------------------


def _dispatch_in_month(month: ReportMonth) -> ColumnElement[bool]:
    d = DispatchRow
    return and_(
        d.customer_id == month.customer_id,
        or_(and_(d.requested_at >= month.start, d.requested_at < month.end),
            and_(d.visit_on >= month.first_day, d.visit_on <= month.last_day)),
    )


async def dispatch_figures(session: AsyncSession, month: ReportMonth) -> dict[str, Any]:
    """Rule A4: the month's dispatches by state, with the estimated cost per currency (never mixed)."""
    d = DispatchRow
    grouped = await session.execute(
        select(d.state, d.currency, func.count(), func.sum(d.estimated_cost))
        .where(_dispatch_in_month(month)).group_by(d.state, d.currency)
    )
    states = dict.fromkeys(DISPATCH_STATES, 0)
    cost: dict[str, dict[str, Decimal]] = {}
    for state, currency, n, total in grouped:
        states[state] = states.get(state, 0) + int(n)
        per = cost.setdefault(state, {})
        per[currency] = per.get(currency, Decimal("0")) + _decimal(total)
    totals: dict[str, Decimal] = {}
    for state, per in cost.items():
        if state == "refused":
            continue  # never billed: the customer or the manager did not approve it
        for currency, amount in per.items():
            totals[currency] = totals.get(currency, Decimal("0")) + amount
    entries = await session.execute(
        select(d.tracking_number, d.seq, d.state, d.estimated_cost, d.currency, d.requested_at, d.visit_on,
               d.engineer, d.reason)
        .where(_dispatch_in_month(month)).order_by(d.requested_at, d.tracking_number, d.seq)
    )
    tz = month.tz
    return {
        "count": sum(states.values()),
        "by_state": states,
        "cost_by_state": {
            state: [{"amount": f"{a:.2f}", "currency": c} for c, a in sorted(per.items())]
            for state, per in cost.items()
        },
        "totals": [{"amount": f"{a:.2f}", "currency": c} for c, a in sorted(totals.items())],  # refused left out
        "entries": [
            {"tracking_number": number, "seq": seq, "state": state,
             "cost": {"amount": f"{_decimal(amount):.2f}", "currency": currency},
             "requested_at": _local(requested, tz), "visit_on": visit.isoformat() if visit else "",
             "engineer": engineer or "", "reason": reason}
            for number, seq, state, amount, currency, requested, visit, engineer, reason in entries
        ],
    }


# ---- billable extras (C10, C3) ------------------------------------------------------------


def _extras_of_month(month: ReportMonth) -> ColumnElement[bool]:
    x = BillableExtraRow
    return and_(x.customer_id == month.customer_id, x.period == month.period,
                x.recorded_at >= month.start, x.recorded_at < month.end)


async def extra_figures(session: AsyncSession, month: ReportMonth) -> dict[str, Any]:
    """Rule C10: extras of the month by kind; extra calls and extra reports counted apart."""
    x = BillableExtraRow
    rows = await session.execute(select(x.kind, func.count()).where(_extras_of_month(month)).group_by(x.kind))
    counts = {kind: int(n) for kind, n in rows}
    return {
        "by_kind": counts,
        "extra_calls": counts.get(BillableExtraKind.extra_call.value, 0),
        "extra_reports": counts.get(BillableExtraKind.extra_report.value, 0),
    }


async def extra_rows(session: AsyncSession, month: ReportMonth) -> list[BillableExtraRow]:
    """The month's extras themselves (a handful a month), for the itemised table."""
    x = BillableExtraRow
    return list((await session.execute(
        select(x).where(_extras_of_month(month)).order_by(x.recorded_at, x.id)
    )).scalars())


# ---- optional support programmes (A6) ------------------------------------------------------


async def optional_programmes(session: AsyncSession, month: ReportMonth) -> list[dict[str, Any]]:
    """Rule A6: "use of any other optional support programme": those active on a day of the month."""
    o = OptionalProgrammeRow
    rows = await session.execute(
        select(o.name, o.start, o.end, o.usage_note)
        .where(o.customer_id == month.customer_id, o.start <= month.last_day,
               or_(o.end.is_(None), o.end >= month.first_day))
        .order_by(o.start, o.name)
    )
    return [
        {"name": name, "start": start.isoformat(), "end": end.isoformat() if end else "", "usage_note": note or ""}
        for name, start, end, note in rows
    ]


# ---- communications (D7) -------------------------------------------------------------------
# Columns, not rows: a filed report's body can weigh megabytes.


async def documents_filed(session: AsyncSession, month: ReportMonth) -> list[AnyRow]:
    """The documents filed in the customer's workspace in the month, oldest first."""
    d = DocumentRow
    return list((await session.execute(
        select(d.id, d.kind, d.title, d.version, d.created_at)
        .where(d.customer_id == month.customer_id, d.kind.not_in(DRAFT_KINDS))
        .where(d.created_at >= month.start, d.created_at < month.end)
        .order_by(d.created_at, d.id)
    )).all())


async def mails_sent(session: AsyncSession, month: ReportMonth) -> list[AnyRow]:
    """The mails sent to or about the customer in the month, oldest first."""
    o = OutboxRow
    return list((await session.execute(
        select(o.template, o.subject, o.recipients, o.sent_at)
        .where(o.customer_id == month.customer_id)
        .where(o.status == "sent")
        .where(o.sent_at >= month.start, o.sent_at < month.end)
        .order_by(o.sent_at, o.id)
    )).all())
