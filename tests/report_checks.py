"""The monthly report checked against the database (tests/test_monthly_report.py, rule A6): every figure, the
chart's labelled values, the CSV and the bodies recomputed by SQL written apart from the report's own queries."""

from __future__ import annotations

import csv
import io
import re
import statistics
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Date, DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from activities.charts import value_label_id
from activities.report_data import CSV_COLUMNS
from storage.db import SessionFactory
from storage.tables import (
    DocumentRow,
)
from testing.report_month import (
    CUSTOMER,
    END,
    FIRST,
    KINDS,
    LAST,
    START,
    STATES,
    TZ,
    Rows,
)

SVG_NS = "{http://www.w3.org/2000/svg}"
TRACKING = re.compile(r"TC-[A-Z]+-2027-\d{5}")
# ---- independent SQL ----------------------------------------------------------------------

PARAMS = (bindparam("start", type_=DateTime(timezone=True)), bindparam("end", type_=DateTime(timezone=True)),
          bindparam("first", type_=Date()), bindparam("last", type_=Date()))


async def sql(session: AsyncSession, statement: str) -> list[Any]:
    """Plain SQL text with the month's bounds and the customer bound (typed, so SQLite compares stored text)."""
    used = [p for p in PARAMS if f":{p.key}" in statement]
    values = {"customer": CUSTOMER, "start": START, "end": END, "first": FIRST, "last": LAST}
    result = await session.execute(text(statement).bindparams(*used), {k: v for k, v in values.items()
                                                                       if f":{k}" in statement})
    return list(result.all())


# State at the month end by ROW_NUMBER over the history; "closed in the month" by EXISTS.
MONTH_REQUESTS = """
WITH ranked AS (
  SELECT c.tracking_number, c.at, c.from_state, c.to_state, c."by" AS who, c.note,
         ROW_NUMBER() OVER (PARTITION BY c.tracking_number ORDER BY c.at DESC, c.id DESC) AS rn
  FROM request_status_changes c
  WHERE c.at < :end
), month AS (
  SELECT r.tracking_number, r.kind, COALESCE(k.to_state, 'open') AS state,
         k.from_state, k.to_state, k.who, k.note, k.at
  FROM support_requests r
  LEFT JOIN ranked k ON k.tracking_number = r.tracking_number AND k.rn = 1
  WHERE r.customer_id = :customer AND r.opened_at < :end
    AND (COALESCE(k.to_state, 'open') IN ('open', 'pending')
         OR EXISTS (SELECT 1 FROM request_status_changes x
                    WHERE x.tracking_number = r.tracking_number AND x.at >= :start AND x.at < :end))
)
"""
OPENED_IN_MONTH = "r.customer_id = :customer AND r.opened_at >= :start AND r.opened_at < :end"
BREACHED = "EXISTS (SELECT 1 FROM sla_events e WHERE e.tracking_number = r.tracking_number AND e.kind = 'breached')"
DISPATCH_IN_MONTH = """customer_id = :customer AND ((requested_at >= :start AND requested_at < :end)
                       OR (visit_on >= :first AND visit_on <= :last))"""
EXTRA_IN_MONTH = "customer_id = :customer AND period = 1 AND recorded_at >= :start AND recorded_at < :end"


def money(value: Any) -> str:
    return f"{Decimal(str(value)).quantize(Decimal('0.01')):.2f}"


def chart_labels(svg: str) -> dict[tuple[str, str], str]:
    """Values printed over the bars, read from the SVG's text elements."""
    root = ET.fromstring(svg)
    labels: dict[tuple[str, str], str] = {}
    for kind in KINDS:
        for state in STATES:
            group = root.find(f".//{SVG_NS}g[@id='{value_label_id(kind, state)}']")
            assert group is not None, (kind, state)
            label = group.find(f"{SVG_NS}text")
            assert label is not None and label.text is not None, (kind, state)
            labels[(kind, state)] = label.text
    return labels


async def check_every_figure(sessions: SessionFactory, row: DocumentRow) -> dict[str, Any]:
    """Every figure of the report against independent SQL (rules A4, A6, C10, C12)."""
    sections = row.data["sections"]
    req, sla = sections["requests"], sections["requests"]["sla"]
    async with sessions() as s:
        cells = await sql(s, MONTH_REQUESTS + "SELECT kind, state, COUNT(*) FROM month GROUP BY kind, state")
        states = await sql(s, MONTH_REQUESTS + "SELECT state, COUNT(*) FROM month GROUP BY state")
        kinds = await sql(s, MONTH_REQUESTS + "SELECT kind, COUNT(*) FROM month GROUP BY kind")
        listed = await sql(s, MONTH_REQUESTS + "SELECT tracking_number, state, who, from_state, to_state, note, at "
                                               "FROM month")
        opened = await sql(s, f"SELECT COUNT(*) FROM support_requests r WHERE {OPENED_IN_MONTH}")
        met = await sql(s, f"SELECT COUNT(*) FROM support_requests r WHERE {OPENED_IN_MONTH} "
                           "AND r.first_response_at IS NOT NULL AND r.first_response_at <= r.first_response_deadline")
        breached = await sql(s, "SELECT DISTINCT r.tracking_number FROM support_requests r JOIN sla_events e "
                                f"ON e.tracking_number = r.tracking_number WHERE e.kind = 'breached' "
                                f"AND {OPENED_IN_MONTH}")
        responded = await sql(s, f"SELECT r.opened_at, r.first_response_at FROM support_requests r "
                                 f"WHERE {OPENED_IN_MONTH} AND r.first_response_at IS NOT NULL")
        awaiting = await sql(s, f"SELECT COUNT(*) FROM support_requests r WHERE {OPENED_IN_MONTH} "
                                f"AND r.first_response_at IS NULL AND NOT {BREACHED}")
        per_request_sla = await sql(s, f"""SELECT r.tracking_number, CASE WHEN {BREACHED} THEN 'breached'
            WHEN r.first_response_at IS NULL THEN 'awaiting'
            WHEN r.first_response_at <= r.first_response_deadline THEN 'met' ELSE 'late' END
            FROM support_requests r WHERE r.customer_id = :customer""")
        dispatch_states = await sql(s, f"SELECT state, COUNT(*) FROM dispatches WHERE {DISPATCH_IN_MONTH} "
                                       "GROUP BY state")
        dispatch_cost = await sql(s, f"SELECT state, currency, SUM(estimated_cost) FROM dispatches "
                                     f"WHERE {DISPATCH_IN_MONTH} GROUP BY state, currency")
        billable_cost = await sql(s, f"SELECT currency, SUM(estimated_cost) FROM dispatches "
                                     f"WHERE {DISPATCH_IN_MONTH} AND state <> 'refused' GROUP BY currency")
        extra_kinds = await sql(s, f"SELECT kind, COUNT(*) FROM billable_extras WHERE {EXTRA_IN_MONTH} "
                                   "GROUP BY kind")
        extra_cost = await sql(s, f"SELECT currency, SUM(amount) FROM billable_extras WHERE {EXTRA_IN_MONTH} "
                                  "AND amount IS NOT NULL GROUP BY currency")
        optional = await sql(s, 'SELECT name FROM optional_programmes WHERE customer_id = :customer '
                                'AND start <= :last AND ("end" IS NULL OR "end" >= :first)')

    # rule A6: the kind x state matrix, by state, by kind, total.
    matrix = {kind: dict.fromkeys(STATES, 0) for kind in KINDS}
    for kind, state, n in cells:
        matrix[kind][state] = n
    assert req["matrix"] == matrix
    assert req["by_state"] == {state: dict(states).get(state, 0) for state in STATES}
    assert req["by_kind"] == {kind: dict(kinds).get(kind, 0) for kind in KINDS}
    assert req["total"] == len(listed) == sum(n for _, n in states)
    assert all(n > 0 for row in matrix.values() for n in row.values())  # the data exercises every cell

    # rule A4/A6: every open, pending and closed request, each with its latest status change.
    # Instants in the programme's time zone, across the DST change of 28 March (zoneinfo, independently).
    expected = {number: (state, who, from_state, to_state, note,
                         at and _aware(at).astimezone(TZ).isoformat(timespec="minutes"))
                for number, state, who, from_state, to_state, note, at in listed}
    # The filed document keeps every request once, in the CSV of its mail (issue 7: not again as JSON).
    review = filed_review(row)
    got = {number: (r["state"], *latest_of(r)) for number, r in review.items()}
    assert got == expected
    assert {v[5][-6:] for v in expected.values() if v[5]} >= {"+01:00", "+02:00"}
    assert sum(req["listed"].values()) == req["total"] == len(review)
    assert req["listed"] == {state: sum(r["state"] == state for r in review.values()) for state in STATES}

    # rule C12: SLA of the requests opened in the month.
    minutes = [(_aware(b) - _aware(a)).total_seconds() / 60 for a, b in responded]
    assert sla["opened"] == opened[0][0]
    assert sla["met"] == met[0][0]
    assert sla["breached"] == len(breached)
    assert sla["responded"] == len(responded)
    assert sla["awaiting"] == awaiting[0][0]
    assert sla["median_minutes"] == pytest.approx(statistics.median(minutes), abs=0.06)
    assert sorted(req["sla_breaches"]) == sorted(n for (n,) in breached)
    sla_of = dict(per_request_sla)
    for number, r in review.items():
        assert r["sla"] == sla_of[number], number

    # rule A4: dispatches of the month.
    dsp = sections["dispatches"]
    assert {k: v for k, v in dsp["by_state"].items() if v} == dict(dispatch_states)
    assert dsp["count"] == sum(n for _, n in dispatch_states) == len(dsp["entries"])
    assert {(state, c["currency"]): c["amount"] for state, costs in dsp["cost_by_state"].items() for c in costs} == {
        (state, currency): money(v) for state, currency, v in dispatch_cost}
    assert {t["currency"]: t["amount"] for t in dsp["totals"]} == {c: money(v) for c, v in billable_cost}
    assert dsp["by_state"]["refused"] > 0  # the data exercises the exclusion

    # rule C10: extras, extra calls and extra reports apart.
    ext = sections["extras"]
    kinds_of_extras = dict(extra_kinds)
    assert ext["count"] == sum(kinds_of_extras.values())
    assert ext["extra_calls"] == kinds_of_extras.get("extra_call", 0) == 2
    assert ext["extra_reports"] == kinds_of_extras.get("extra_report", 0) == 1
    assert ext["c10_count"] == 3
    assert {t["currency"]: t["amount"] for t in ext["totals"]} == {c: money(v) for c, v in extra_cost}

    # rule A6: optional programmes active in the month.
    assert sorted(o["name"] for o in sections["optional_programmes"]) == sorted(n for (n,) in optional)
    return {"matrix": matrix, "listed": expected}


def filed_review(row: DocumentRow) -> dict[str, dict[str, str]]:
    """Rule A6: the report's CSV as filed with it, by tracking number, in the file's order."""
    (text_,) = [a["text"] for a in row.data["mail_files"] if a["filename"].endswith(".csv")]
    return {r["tracking_number"]: r for r in csv.DictReader(io.StringIO(text_))}


def latest_of(r: dict[str, str]) -> tuple[str | None, ...]:
    """(by, from_state, to_state, note, at) of a CSV row's latest change; Nones when it has none (A4)."""
    if not r["latest_change_at"]:
        return (None,) * 5
    from_state, to_state = r["latest_change"].split(" -> ")
    return (r["latest_change_by"], None if from_state == "new" else from_state, to_state,
            r["latest_change_note"], r["latest_change_at"])


def _aware(value: datetime | str) -> datetime:
    # Plain SQL on SQLite returns the stored text ("2027-03-05 03:27:42.000000", UTC).
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def check_chart_csv_and_bodies(row: DocumentRow, figures: dict[str, Any], rows: Rows) -> None:
    req = row.data["sections"]["requests"]
    matrix, listed = figures["matrix"], figures["listed"]
    # rule A6: the chart shows the same numbers as the table.
    labels = chart_labels(req["chart_svg"])
    assert labels == {(k, s): str(matrix[k][s]) for k in KINDS for s in STATES}
    assert req["chart_svg"] in row.body_html  # inline SVG in the workspace document

    # The CSV: one row per request of the month.
    files = {a["filename"]: a for a in row.data["mail_files"]}
    (csv_name,) = [n for n in files if n.endswith(".csv")]
    (png_name,) = [n for n in files if n.endswith(".png")]
    assert files[png_name]["inline"] and files[png_name]["content_type"] == "image/png"
    table = list(csv.DictReader(io.StringIO(files[csv_name]["text"])))
    assert tuple(table[0]) == CSV_COLUMNS
    assert {r["tracking_number"]: r["state"] for r in table} == {n: v[0] for n, v in listed.items()}
    assert len(table) == req["total"]

    # Both bodies list exactly the month's requests: no other customer, nothing closed before or opened after.
    # (The dispatch table may name a request of an earlier month whose dispatch falls in this one, A4.)
    in_month = set(listed)
    dispatched = {d["tracking_number"] for d in row.data["sections"]["dispatches"]["entries"]}
    for body in (row.body_html, row.body_text):
        found = set(TRACKING.findall(body))
        assert in_month <= found and found - in_month <= dispatched
        assert "TC-GLOBEX" not in body
    others = {r["tracking_number"] for r in rows.requests} - in_month
    assert others and not others & in_month
    assert "Slow &lt;login&gt; &amp; timeouts" in row.body_html and "<login>" not in row.body_html
    assert "Slow <login> & timeouts" in row.body_text
    assert "elapsed minutes" in row.body_html and "not business minutes" in row.body_text
    assert "Upgrade to 24.2 planned for May." in row.body_html
