"""One month of report data (A6, C10, C12, A4) for the monthly report's tests and the benchmarks:
5,000 or 50,000 support requests of acme in March 2027 (Europe/Paris), with noise that must not
count (another customer, requests before and after the month), bulk-inserted by `seed` into
the tables that `open_db` creates. tests/test_monthly_report.py checks every figure against SQL."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert, text

from domain.activities import MonthlyReportRequest
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.tables import (
    Base,
    BillableExtraRow,
    CustomerRow,
    DispatchRow,
    OptionalProgrammeRow,
    ProgrammeRow,
    RequestStatusChangeRow,
    SlaEventRow,
    SupportRequestRow,
)

CUSTOMER, OTHER = "acme", "globex"
TZ = ZoneInfo("Europe/Paris")  # UTC+1 until 28 March 2027, UTC+2 after: both bounds differ
FIRST, LAST = date(2027, 3, 1), date(2027, 3, 31)
START = datetime(2027, 3, 1, tzinfo=TZ).astimezone(UTC)  # 2027-02-28 23:00 UTC
END = datetime(2027, 4, 1, tzinfo=TZ).astimezone(UTC)  # 2027-03-31 22:00 UTC
KINDS = ("support", "product", "advisory", "training")
STATES = ("open", "pending", "closed")
PRIORITIES = ("critical", "high", "medium", "low")
PEOPLE = ("rep-ana", "rep-bo", "tl-alice", "bob@acme", "carol@acme")


# ---- data: bulk rows ------------------------------------------------------------------


@dataclass
class Rows:
    requests: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    sla: list[dict[str, Any]] = field(default_factory=list)
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0


def add_requests(rows: Rows, rng: random.Random, customer: str, n: int, lo: datetime, hi: datetime) -> None:
    """`n` requests of `customer` opened in [lo, hi), each with a status history, SLA events, maybe a dispatch."""
    span = int((hi - lo).total_seconds())
    for _ in range(n):
        rows.seq += 1
        number = f"TC-{customer.upper()}-2027-{rows.seq:05d}"
        opened = lo + timedelta(seconds=rng.randrange(span))
        deadline = opened + timedelta(minutes=60)
        # Most answered within the hour (C12), some late, some not answered at all.
        draw = rng.random()
        responded = (opened + timedelta(seconds=rng.randrange(30, 60 * 60)) if draw < 0.85
                     else opened + timedelta(seconds=rng.randrange(60 * 60 + 1, 8 * 60 * 60)) if draw < 0.95
                     else None)
        # Status history: opened, then a walk open <-> pending -> closed (sometimes reopened),
        # often running past the month end (the report must read the state *at* the month end).
        changes: list[tuple[datetime, str | None, str]] = []
        if rng.random() > 0.01:  # 1 %: no status change recorded at all (counts as open)
            changes.append((opened, None, "open"))
        state, at = "open", opened
        for _step in range(rng.randrange(0, 5)):
            # 2 %: two changes at the same instant (the later id wins).
            at = at if rng.random() < 0.02 else at + timedelta(minutes=rng.randrange(5, 12 * 24 * 60))
            if state == "open":
                nxt = "pending" if rng.random() < 0.4 else "closed"
            elif state == "pending":
                nxt = "open" if rng.random() < 0.7 else "closed"
            else:
                if rng.random() < 0.8:
                    break
                nxt = "open"  # reopened
            changes.append((at, state, nxt))
            state = nxt
        rows.requests.append({
            "tracking_number": number, "customer_id": customer, "period": 1,
            "kind": rng.choices(KINDS, weights=(60, 20, 12, 8))[0], "priority": rng.choice(PRIORITIES),
            "summary": rng.choice(("Search returns nothing", "Upgrade to 24.2 fails", "Slow <login> & timeouts",
                                   "Question on archiving", "Training on workflows")) + f" #{rows.seq}",
            "description": "", "channel": "portal", "filed_by": "bob@acme", "customisation": False,
            "agreement_ref": None, "state": state, "pending_reason": None, "opened_at": opened,
            "first_response_deadline": deadline, "first_response_at": responded,
            "sla_breached": responded is None or responded > deadline,
            "closed_at": at if state == "closed" else None, "closure": None, "updated_at": at,
        })
        for k, (when, before, after) in enumerate(changes):
            rows.changes.append({
                "tracking_number": number, "at": when, "from_state": before, "to_state": after,
                "by": rng.choice(PEOPLE), "note": rng.choice(("", "customer sent logs", "waiting for <b>logs</b>",
                                                               f"step {k}")),
                "idempotency_key": f"{number}:chg:{k}",
            })
        events = [("started", opened)]
        if rng.random() < 0.5:
            events.append(("warned", deadline - timedelta(minutes=15)))
        if responded is not None and responded <= deadline:
            events.append(("met", responded))
        else:
            events.append(("breached", deadline))  # rule C12
            if responded is not None:
                events.append(("responded_late", responded))
        for kind, when in events:
            rows.sla.append({"tracking_number": number, "kind": kind, "at": when, "deadline": deadline, "note": "",
                             "idempotency_key": f"{number}:sla:{kind}"})
        if rng.random() < 0.01:
            for seq in range(1, rng.choice((1, 1, 2)) + 1):  # rule A4: on-site dispatch
                requested = opened + timedelta(hours=rng.randrange(1, 24 * 20))
                dstate = rng.choice(("requested", "approved", "refused", "booked", "visited"))
                visit = (requested.astimezone(TZ).date() + timedelta(days=rng.randrange(1, 15))
                         if dstate in ("booked", "visited") else None)
                rows.dispatches.append({
                    "tracking_number": number, "customer_id": customer, "seq": seq, "reason": "disk controller",
                    "estimated_cost": Decimal(rng.randrange(50000, 300000)) / 100,
                    "currency": "EUR" if rng.random() < 0.8 else "USD", "agreement_ref": f"AGR-D-{rows.seq}",
                    "state": dstate, "requested_by": "tl-alice", "requested_at": requested,
                    "engineer": "Dana Levy" if visit else None, "visit_on": visit, "updated_at": requested,
                })


def extras_rows() -> list[dict[str, Any]]:
    """Rule C10 (and others): the month's extras, plus some of April, another period and another customer."""
    def extra(key: str, customer: str, kind: str, rule: str, at: datetime, amount: str | None,
              period: int = 1) -> dict[str, Any]:
        return {"customer_id": customer, "period": period, "kind": kind, "rule": rule,
                "description": f"extra {key}", "agreement_ref": f"AGR-{key}",
                "amount": Decimal(amount) if amount else None, "currency": "EUR" if amount else None,
                "recorded_by": "ops", "recorded_at": at, "idempotency_key": key}
    mar = datetime(2027, 3, 10, 9, tzinfo=UTC)
    return [
        extra("x-call-1", CUSTOMER, "extra_call", "C10", mar, "900.00"),
        extra("x-call-2", CUSTOMER, "extra_call", "C10", mar + timedelta(days=5), "900.00"),
        # 00:30 on 1 March in Paris, still February in UTC: inside the month.
        extra("x-report-1", CUSTOMER, "extra_report", "C10", datetime(2027, 2, 28, 23, 30, tzinfo=UTC), "400.00"),
        extra("x-dispatch", CUSTOMER, "on_site_dispatch", "A4", mar + timedelta(days=8), "1500.50"),
        extra("x-other", CUSTOMER, "other", "C3", mar + timedelta(days=9), None),
        # 00:30 on 1 April in Paris (UTC+2): outside.
        extra("x-apr", CUSTOMER, "extra_report", "C10", datetime(2027, 3, 31, 22, 30, tzinfo=UTC), "400.00"),
        extra("x-feb", CUSTOMER, "extra_call", "C10", datetime(2027, 2, 27, 9, tzinfo=UTC), "900.00"),
        extra("x-p2", CUSTOMER, "extra_call", "C10", mar, "900.00", period=2),
        extra("x-globex", OTHER, "extra_call", "C10", mar, "900.00"),
    ]


def optional_rows() -> list[dict[str, Any]]:
    """Rule A6: optional programmes; active on a day of March or not."""
    rows = [
        (CUSTOMER, "Extended Support for Content Server 16", date(2026, 6, 1), None, "3 hotfix requests"),
        (CUSTOMER, "Out-of-hours troubleshooting (C12)", date(2026, 3, 1), date(2027, 3, 1), "used on 1 March"),
        (CUSTOMER, "Migration assistance", date(2027, 3, 31), date(2027, 6, 30), "kick-off planned"),
        (CUSTOMER, "Ended in February", date(2026, 1, 1), date(2027, 2, 28), ""),
        (CUSTOMER, "Starts in April", date(2027, 4, 1), None, ""),
        (OTHER, "Globex premium", date(2026, 1, 1), None, ""),
    ]
    return [{"customer_id": c, "name": n, "start": s, "end": e, "usage_note": u} for c, n, s, e, u in rows]


async def seed(sessions: SessionFactory, in_month: int, seed_value: int = 7) -> Rows:
    """One month of `in_month` requests for acme, and noise that must not count (or counts only as the rules say)."""
    rng = random.Random(seed_value)
    rows = Rows()
    add_requests(rows, rng, CUSTOMER, in_month, START, END)
    add_requests(rows, rng, CUSTOMER, max(in_month // 10, 20), START - timedelta(days=60), START)  # older
    add_requests(rows, rng, CUSTOMER, max(in_month // 50, 10), END, END + timedelta(days=10))  # after the month
    add_requests(rows, rng, OTHER, max(in_month // 10, 20), START, END)  # another customer
    # The bounds themselves: opened at the first instant of the month (in), at the month end (out).
    add_requests(rows, rng, CUSTOMER, 1, START, START + timedelta(seconds=1))
    add_requests(rows, rng, CUSTOMER, 1, END, END + timedelta(seconds=1))
    async with sessions() as s, s.begin():
        for model, batch in ((SupportRequestRow, rows.requests), (RequestStatusChangeRow, rows.changes),
                             (SlaEventRow, rows.sla), (DispatchRow, rows.dispatches),
                             (BillableExtraRow, extras_rows()), (OptionalProgrammeRow, optional_rows())):
            for i in range(0, len(batch), 10_000):
                await s.execute(insert(cast(Table, model.__table__)), batch[i:i + 10_000])
    if sessions.kw["bind"].dialect.name == "sqlite":
        # A database at rest: the bulk load's pages move from the WAL into the file, as SQLite's
        # automatic checkpoints do in service (readers of a huge fresh WAL pay a lookup a page).
        async with sessions() as s:
            await s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    return rows


class open_db:  # used like a function: `async with open_db(url) as sessions`
    """Tables, the two customers and acme's programme projection (time zone Europe/Paris)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    async def __aenter__(self) -> SessionFactory:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        factory = make_session_factory(self.engine)
        created = datetime(2026, 12, 1, tzinfo=UTC)
        async with factory() as s, s.begin():
            s.add_all([CustomerRow(id=CUSTOMER, name="ACME Corp", maintenance_subscription_id="SMP-1",
                                   created_at=created),
                       CustomerRow(id=OTHER, name="Globex", maintenance_subscription_id="SMP-2", created_at=created)])
            await s.flush()
            s.add(ProgrammeRow(customer_id=CUSTOMER, workflow_id="program-acme", period=1, phase="running",
                               technical_lead_id="tl-alice", enrolment={}, updated_at=created,
                               status={"calendar": {"timezone": "Europe/Paris"}, "steps": []}))
        return factory

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.dispose()


def report_request(key: str = "program-acme-p1-m03:report-draft") -> MonthlyReportRequest:
    return MonthlyReportRequest(customer_id=CUSTOMER, customer_name="ACME Corp", period=1, month=3,
                                month_start=FIRST, month_end=LAST, call_held_on=date(2027, 3, 12),
                                call_notes="Reviewed the open requests.\nUpgrade to 24.2 planned for May.",
                                idempotency_key=key)
