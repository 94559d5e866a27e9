"""The documents' contexts, built from values already read (no I/O): the monthly follow-up
report's sections, summary and mail files (D7, A6, A4, C10, C12) and the final report (C14-C16).

`DocumentActivities` (activities/documents.py) reads the figures (activities/report_data.py)
and files what these functions build; the long request tables are rendered by
activities/report_rows.py. Instants are shown in the programme's time zone, offset included.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from activities import report_data
from activities.charts import Chart
from activities.report_data import REQUEST_STATES
from activities.report_listing import NUMBER, ListedRequest, RequestReview, breaches_of
from domain.activities import MonthlyReportRequest
from domain.inventory import Severity
from domain.program import ProgramStatus
from domain.step_inputs import EXTRA_RULES, BillableExtraKind, StepState, StepStatus
from domain.timeline import programme_timeline
from storage.repositories.clock import as_utc
from storage.tables import BillableExtraRow

NO_REQUESTS_NOTE = "No support requests recorded this month."
# Rule C10: one call and one report a month are included; these kinds are the extra ones.
C10_KINDS = {BillableExtraKind.extra_call.value, BillableExtraKind.extra_report.value}
_UTC = ZoneInfo("UTC")


def _iso(value: date | datetime | None, tz: ZoneInfo = _UTC) -> str | None:
    """ISO text; instants in `tz`, so a customer reads the programme's local time, offset included."""
    if isinstance(value, datetime):
        return as_utc(value).astimezone(tz).isoformat()
    return value.isoformat() if value is not None else None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return _UTC


def _money(amount: Decimal | None, currency: str | None) -> dict[str, str] | None:
    if amount is None:
        return None
    return {"amount": f"{amount:.2f}", "currency": currency or ""}


def _totals(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Sum of the priced extras, one line per currency (never mix currencies in one total)."""
    sums: dict[str, Decimal] = {}
    for item in items:
        price = item.get("amount")
        if price:
            sums[price["currency"]] = sums.get(price["currency"], Decimal("0")) + Decimal(price["amount"])
    return [{"amount": f"{total:.2f}", "currency": currency} for currency, total in sorted(sums.items())]


def month_window(month_start: date, month_end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the report month in UTC, from midnight to midnight in the programme's time zone.

    Bounds are converted to UTC because SQLite compares the stored (UTC) text, not instants.
    """
    start = datetime.combine(month_start, time(0), tz).astimezone(UTC)
    end = datetime.combine(month_end + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def _step_dump(step: StepState, tz: ZoneInfo = _UTC) -> dict[str, Any]:
    return {
        "step": step.step,
        "title": step.title,
        "rule": step.rule,
        "status": step.status.value,
        "due_on": _iso(step.due_on),
        "done_at": _iso(step.done_at, tz),
        "done_by": step.done_by,
        "late": step.late,
    }


def requests_section(
    matrix: dict[str, dict[str, int]],
    lists: dict[str, list[ListedRequest]],
    sla: dict[str, Any],
    breaches: list[ListedRequest],
    chart_svg: str | None,
) -> dict[str, Any]:
    """Rule A6: requests by state and kind, the kind x state matrix, a review of each open, pending
    and closed request with its latest status change (A4), and the first-response SLA (C12)."""
    states = list(REQUEST_STATES) + sorted({s for row in matrix.values() for s in row} - set(REQUEST_STATES))
    totals = report_data.by_state(matrix)
    return {
        "total": sum(totals.values()),
        "states": states,
        "by_state": totals,
        "by_kind": report_data.by_kind(matrix),
        "matrix": matrix,
        "open": lists.get("open", []),
        "pending": lists.get("pending", []),
        "closed": lists.get("closed", []),
        "sla": sla,
        "sla_breaches": breaches,  # rule C12: every breach shows in the monthly report
        "chart_svg": chart_svg,
        "note": NO_REQUESTS_NOTE if not sum(totals.values()) else "",
    }


def slim_monthly_data(context: dict[str, Any]) -> dict[str, Any]:
    """The monthly report's `data` without its per-request listing, which the filed CSV holds.

    Issue 7's profile: at 50,000 requests the listing weighed 26 MB of JSON beside a 9.5 MB CSV of
    the same rows, and filing it cost more than querying and rendering the report together. The
    figures, the matrix and the breached tracking numbers (C12) stay; the rows are in
    `data["mail_files"]` (rule A6: one CSV row a request, with its state and latest change)
    and in the rendered bodies.
    """
    sections = context["sections"]
    requests = sections["requests"]
    kept = {k: v for k, v in requests.items() if k not in REQUEST_STATES and k != "sla_breaches"}
    kept["listed"] = {state: len(requests.get(state, [])) for state in REQUEST_STATES}
    kept["sla_breaches"] = [b[NUMBER] for b in requests.get("sla_breaches", [])]
    return context | {"sections": sections | {"requests": kept}}


def deliverables_section(
    steps: list[StepState], window: tuple[datetime, datetime], month_end: date, tz: ZoneInfo
) -> dict[str, Any]:
    start, end = window
    done_this_month = [
        s.title for s in steps if s.status == StepStatus.done and s.done_at and start <= as_utc(s.done_at) < end
    ]
    overdue = [s.title for s in steps if s.status == StepStatus.open and s.due_on is not None and s.due_on <= month_end]
    return {
        "steps": [_step_dump(s, tz) for s in steps],
        "total": len(steps),
        "done": sum(1 for s in steps if s.status == StepStatus.done),
        "open": sum(1 for s in steps if s.status == StepStatus.open),
        "done_this_month": done_this_month,
        "overdue": overdue,
    }


def _extra_item(row: BillableExtraRow, tz: ZoneInfo) -> dict[str, Any]:
    """One billable extra as the reports list it (rule C3: with its agreement reference)."""
    return {
        "kind": row.kind,
        "rule": row.rule,
        "description": row.description,
        "agreement_ref": row.agreement_ref,
        "amount": _money(row.amount, row.currency),
        "recorded_at": _iso(row.recorded_at, tz),
        "recorded_by": row.recorded_by,
    }


def extras_section(rows: list[BillableExtraRow], tz: ZoneInfo, figures: dict[str, Any] | None = None) -> dict[str, Any]:
    items = [_extra_item(r, tz) for r in rows]
    return {
        "entries": items,  # not "items": templates would see dict.items
        "count": len(items),
        "c10_count": sum(1 for r in rows if r.kind in C10_KINDS),
        # rule C10: extra calls and extra reports counted apart (SQL GROUP BY kind).
        "extra_calls": (figures or {}).get("extra_calls", 0),
        "extra_reports": (figures or {}).get("extra_reports", 0),
        "totals": _totals(items),
    }


def communications_section(documents: Sequence[Any], mails: Sequence[Any], tz: ZoneInfo) -> dict[str, Any]:
    """Documents filed and mails sent in the month: rows (or ORM objects) with the columns used below."""
    return {
        "documents": [
            {"id": d.id, "kind": d.kind, "title": d.title, "version": d.version, "filed_at": _iso(d.created_at, tz)}
            for d in documents
        ],
        "mails": [
            {"template": m.template, "subject": m.subject, "recipients": m.recipients,
             "sent_at": _iso(m.sent_at, tz)}
            for m in mails
        ],
    }


def monthly_summary(request: MonthlyReportRequest, sections: dict[str, Any]) -> str:
    """One line a TL can read in the approval mail and the TL inbox."""
    call = (
        f"follow-up call held on {request.call_held_on.isoformat()}"
        if request.call_held_on
        else "no call held this month (D6)" if request.months_ended
        else "no follow-up call recorded"
    )
    req, dlv, ext, com = (sections[k] for k in ("requests", "deliverables", "extras", "communications"))
    states = ", ".join(f"{n} {state}" for state, n in req["by_state"].items())
    sla = req.get("sla") or {}
    first_response = (
        f"first response within {sla['deadline_minutes']} minutes for {sla['met']} of the {sla['opened']} "
        f"opened this month, {sla['breached']} breached (C12); "
        if sla.get("opened") else ""
    )
    return (
        f"Month {request.month} of period {request.period} ({request.month_start.isoformat()} to "
        f"{request.month_end.isoformat()}): {call}; {req['total']} support requests ({states}); {first_response}"
        f"deliverables {dlv['done']}/{dlv['total']} done ({len(dlv['done_this_month'])} this month, "
        f"{len(dlv['overdue'])} overdue); {ext['count']} billable extras; "
        f"{len(com['documents'])} documents filed; {len(com['mails'])} mails sent."
    )


@dataclass(frozen=True)
class MonthFigures:
    """What the monthly report reads from the database (activities/report_data.py), ready to be laid out."""

    matrix: dict[str, dict[str, int]]
    sla: dict[str, Any]
    dispatches: dict[str, Any]
    extras: list[BillableExtraRow]
    extra_figures: dict[str, Any]
    optional: list[dict[str, Any]]
    documents: Sequence[Any]
    mails: Sequence[Any]
    steps: list[StepState]


def monthly_context(
    request: MonthlyReportRequest, figures: MonthFigures, review: RequestReview, chart: Chart | None, *,
    phase: str, window: tuple[datetime, datetime], tz: ZoneInfo,
) -> dict[str, Any]:
    """The monthly report's render context (D7, A6): its sections and the one-line summary."""
    lists = review.lists
    sections: dict[str, Any] = {
        "call": {
            "held_on": _iso(request.call_held_on),
            "notes": request.call_notes or "",
            # Rule D6: the month is over and its included call was not held; the report says so plainly.
            "no_call_held": request.months_ended and request.call_held_on is None,
        },
        "requests": requests_section(figures.matrix, lists, figures.sla, breaches_of(lists),
                                     chart.svg if chart else None),
        "dispatches": figures.dispatches,
        "optional_programmes": figures.optional,
        "deliverables": deliverables_section(figures.steps, window, request.month_end, tz),
        "extras": extras_section(figures.extras, tz, figures.extra_figures),
        "communications": communications_section(figures.documents, figures.mails, tz),
    }
    return {
        "customer_name": request.customer_name,
        "month": request.month,
        "month_start": request.month_start.isoformat(),
        "month_end": request.month_end.isoformat(),
        "phase": phase,
        "timezone": tz.key,
        "summary": monthly_summary(request, sections),
        "sections": sections,
    }


def monthly_attachments(request: MonthlyReportRequest, requests_csv: str, chart: Chart | None) -> list[dict[str, Any]]:
    """The files the monthly report's mail carries: the A6 requests CSV and, when drawn, the chart as PNG."""
    stem = f"techconnect-{request.customer_id}-{request.month_start:%Y-%m}"
    attachments: list[dict[str, Any]] = [{
        # rule A6: one row per request of the month, for the customer's own spreadsheet.
        "filename": f"{stem}-requests.csv",
        "content_type": "text/csv",
        "text": requests_csv,
    }]
    if chart is not None:
        attachments.append({
            # Mail clients do not render inline SVG: the mail shows this PNG by Content-ID.
            "filename": f"{stem}-requests-chart.png",
            "content_type": "image/png",
            "base64": base64.b64encode(chart.png).decode("ascii"),
            "inline": True,
            "alt": chart.alt,
        })
    return attachments


def renewal_outcome(status: ProgramStatus) -> str:
    """Rules C14-C16 in one sentence: renewed, not renewed (by whom), or undecided."""
    renewal = status.renewal
    if renewal is not None and renewal.non_renewal is not None:
        nr = renewal.non_renewal
        who = status.customer_name if nr.party == "customer" else "OpenText"
        return (f"Not renewed: notice of non-renewal given by {who} on {nr.received_on.isoformat()} "
                f"(reference {nr.reference}).")
    if status.outcome:
        return status.outcome[:1].upper() + status.outcome[1:] + ("" if status.outcome.endswith(".") else ".")
    if renewal is not None and renewal.notice_sent:
        price = f" at {renewal.next_price}" if renewal.next_price else ""
        return f"Renewal notice sent on {renewal.notice_on.isoformat()}{price}; no notice of non-renewal received."
    return "No renewal decision recorded."


def final_report_context(status: ProgramStatus, dispatches: Sequence[BillableExtraRow] = ()) -> dict[str, Any]:
    """The final report's context: the programme's own state plus the period's dispatch extras (A4)."""
    plan = status.plan
    tz = zone(status.calendar.timezone)
    extras = [
        {
            "kind": e.kind.value,
            "rule": e.rule or EXTRA_RULES.get(e.kind, ""),
            "description": e.description,
            "agreement_ref": e.agreement_ref,
            "amount": e.amount.model_dump(mode="json") if e.amount else None,
            "recorded_at": _iso(e.recorded_at, tz),
            "recorded_by": e.recorded_by,
        }
        for e in status.extras
    ]
    known = {(x["kind"], x["description"], x["agreement_ref"]) for x in extras}
    extras += [_extra_item(d, tz) for d in dispatches if (d.kind, d.description, d.agreement_ref) not in known]
    severities = Counter(f.severity.value for f in status.findings)
    steps = [_step_dump(s, tz) for s in status.steps]
    return {
        "customer_name": status.customer_name,
        "timezone": tz.key,  # the templates' `local` filter shows every time in it, labelled
        "period_start": _iso(plan.period_start) if plan else None,
        "period_end": _iso(plan.period_end) if plan else None,
        "phase": status.phase.value,
        "outcome": renewal_outcome(status),
        "technical_lead": status.technical_lead.model_dump(mode="json"),
        "technical_lead_history": list(status.technical_lead_history),
        "contacts": [c.model_dump(mode="json") for c in status.contacts],
        "handbook_version": status.handbook_version,
        "handbook_accepted_at": _iso(status.handbook_accepted_at, tz),
        "steps": steps,
        "steps_done": sum(1 for s in status.steps if s.status == StepStatus.done),
        "cycles": [c.model_dump(mode="json") for c in status.cycles],
        "calls_held": sum(1 for c in status.cycles if c.call_held_on is not None),
        "reports_filed": sum(1 for c in status.cycles if c.report_document_id is not None),
        # Rule D7: a month's report is drafted after the month; the last one's comes after the period ends.
        "reports_to_follow": sum(1 for c in status.cycles if c.status == "running" and c.report_document_id is None),
        "extras": extras,
        "extras_totals": _totals(extras),
        "renewal": status.renewal.model_dump(mode="json") if status.renewal else None,
        "inventory_version": status.inventory_version,
        "findings_count": len(status.findings),
        "findings_by_severity": {s.value: severities.get(s.value, 0) for s in Severity},
        "rejections_count": len(status.rejections),
        "annual_fee": status.annual_fee.model_dump(mode="json"),
        # The period at a glance, as the workspace draws it; written at the close, so no "today" line (D10, A9).
        "timeline": timeline.model_dump(mode="json") if (timeline := programme_timeline(status, None)) else None,
    }
