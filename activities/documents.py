"""Workspace documents (D10/A9): rendering, filing, configuration analysis and reports.

Every document is rendered twice, `documents/<template>.html.j2` and `.txt.j2`, and
filed as one `DocumentRow` whose `data` keeps the context it was rendered from, so the
portal can re-render or show fields without parsing HTML. Rows are written with the
caller's idempotency key (unique in the table): a retried activity, or one run again
after a worker was killed, returns the row it filed the first time.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities import report_data, report_rows
from activities.charts import requests_by_kind_and_state
from activities.faults import REPORT_AFTER_FILING, maybe_crash
from activities.report_data import REQUEST_STATES, ReportMonth
from domain.activities import (
    AnalysisRequest,
    AnalysisResult,
    DocumentRef,
    FileDocumentRequest,
    FinalReportRequest,
    MonthlyReportRequest,
    ReportDraft,
)
from domain.findings import analyse_inventory
from domain.inventory import Severity
from domain.program import EXTRA_RULES, BillableExtraKind, ProgramStatus, StepState, StepStatus
from storage.db import SessionFactory
from storage.tables import BillableExtraRow, CustomerRow, DocumentRow, OutboxRow, ProgrammeRow

NO_REQUESTS_NOTE = "No support requests recorded this month."
CHART_TITLE = "Requests by kind and state at the month end"
# Rule C10: one call and one report a month are included; these kinds are the extra ones.
C10_KINDS = {BillableExtraKind.extra_call.value, BillableExtraKind.extra_report.value}
_UTC = ZoneInfo("UTC")


@dataclass(frozen=True)
class _Filing:
    customer_id: str
    period: int
    kind: str
    title: str
    template: str
    context: dict[str, Any]
    idempotency_key: str
    version: int = 1
    # Files the mail carries with the document (monthly report: CSV, chart PNG), kept in
    # `data["mail_files"]` beside the render context, not passed to the templates.
    attachments: tuple[dict[str, Any], ...] = ()
    # The caller built the context from JSON values only (str, int, float, bool, None, list, dict):
    # converting 50,000 request rows again would cost more than rendering them.
    json_ready: bool = False
    # What `data` keeps of the context, when not all of it: the monthly report renders every
    # request of the month but files them once, in its CSV (`slim_monthly_data`).
    keep: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every writer stores UTC, so naive means UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: date | datetime | None, tz: ZoneInfo = _UTC) -> str | None:
    """ISO text; instants in `tz`, so a customer reads the programme's local time, offset included."""
    if isinstance(value, datetime):
        return _utc(value).astimezone(tz).isoformat()
    return value.isoformat() if value is not None else None


def _zone(name: str) -> ZoneInfo:
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


def _month_window(month_start: date, month_end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the report month in UTC, from midnight to midnight in the programme's time zone.

    Bounds are converted to UTC because SQLite compares the stored (UTC) text, not instants.
    """
    start = datetime.combine(month_start, time(0), tz).astimezone(UTC)
    end = datetime.combine(month_end + timedelta(days=1), time(0), tz).astimezone(UTC)
    return start, end


def _steps_from_projection(status: dict[str, Any]) -> list[StepState]:
    # Parse step by step: a projection written by an older worker must not stop the report.
    steps: list[StepState] = []
    for raw in status.get("steps") or []:
        try:
            steps.append(StepState.model_validate(raw))
        except ValidationError:
            activity.logger.warning("monthly report: skipping unreadable step %r", raw)
    return steps


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
    lists: dict[str, list[dict[str, Any]]],
    sla: dict[str, Any],
    breaches: list[dict[str, Any]],
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
    kept["sla_breaches"] = [b["tracking_number"] for b in requests.get("sla_breaches", [])]
    return context | {"sections": sections | {"requests": kept}}


def deliverables_section(
    steps: list[StepState], window: tuple[datetime, datetime], month_end: date, tz: ZoneInfo
) -> dict[str, Any]:
    start, end = window
    done_this_month = [
        s.title for s in steps if s.status == StepStatus.done and s.done_at and start <= _utc(s.done_at) < end
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


def extras_section(rows: list[BillableExtraRow], tz: ZoneInfo, figures: dict[str, Any] | None = None) -> dict[str, Any]:
    items = [
        {
            "kind": r.kind,
            "rule": r.rule,
            "description": r.description,
            "agreement_ref": r.agreement_ref,
            "amount": _money(r.amount, r.currency),
            "recorded_at": _iso(r.recorded_at, tz),
            "recorded_by": r.recorded_by,
        }
        for r in rows
    ]
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


class DocumentActivities:
    """Documents of the workspace; built in worker.py with the session factory and the template environment."""

    def __init__(self, session_factory: SessionFactory, templates: jinja2.Environment) -> None:
        self._sessions = session_factory
        self._templates = templates
        report_rows.register(templates)  # the monthly report's long tables (A6), rendered in Python

    # ---- filing ------------------------------------------------------------------

    def _render(self, template: str, context: dict[str, Any]) -> tuple[str, str]:
        # A missing template or context key raises and the activity retries: it is a
        # deployment bug, and a fixed worker picks the task up again without losing it.
        html = self._templates.get_template(f"documents/{template}.html.j2").render(context)
        text = self._templates.get_template(f"documents/{template}.txt.j2").render(context)
        return html, text

    @staticmethod
    async def _by_key(session: AsyncSession, key: str) -> DocumentRow | None:
        result = await session.execute(
            select(DocumentRow).where(DocumentRow.idempotency_key == key).execution_options(populate_existing=True)
        )
        return result.scalar_one_or_none()

    async def _file(self, filing: _Filing) -> DocumentRow:
        async with self._sessions() as session:
            existing = await self._by_key(session, filing.idempotency_key)
            if existing is not None:
                return existing
            context: dict[str, Any] = dict(filing.context)
            if "customer_name" not in context:
                customer = await session.get(CustomerRow, filing.customer_id)
                context["customer_name"] = customer.name if customer else filing.customer_id
            context.update(customer_id=filing.customer_id, period=filing.period, title=filing.title)
            # JSON form first: templates then see exactly what `data` stores (ISO dates, string amounts).
            if not filing.json_ready:
                context = to_jsonable_python(context)
            html, text = self._render(filing.template, context)
            data = filing.keep(context) if filing.keep is not None else context
            if filing.attachments:
                data = data | {"mail_files": list(filing.attachments)}
            row = DocumentRow(
                customer_id=filing.customer_id,
                period=filing.period,
                kind=filing.kind,
                title=filing.title,
                version=filing.version,
                body_text=text,
                body_html=html,
                data=data,
                idempotency_key=filing.idempotency_key,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                # Two attempts raced past the lookup (e.g. a worker presumed dead still
                # running): the unique key let one in; return that one.
                await session.rollback()
                existing = await self._by_key(session, filing.idempotency_key)
                if existing is None:
                    raise  # not the key: e.g. an unknown customer (foreign key)
                return existing
            return row

    @activity.defn
    async def file_document(self, request: FileDocumentRequest) -> DocumentRef:
        """Render a document and file it in the workspace (D10/A9), once per idempotency key."""
        row = await self._file(_Filing(
            customer_id=request.customer_id,
            period=request.period,
            kind=request.kind,
            title=request.title,
            template=request.template,
            context=request.context,
            idempotency_key=request.idempotency_key,
            version=request.version,
        ))
        return DocumentRef(document_id=row.id, title=row.title, kind=row.kind)

    # ---- configuration analysis ----------------------------------------------------

    @activity.defn
    async def analyse_configuration(self, request: AnalysisRequest) -> AnalysisResult:
        """Rule D9/A8: the rule-based findings of a site inventory.

        This runs as an activity, not in workflow code, on purpose: its result is recorded in
        history, so changing or adding a check in domain/findings.py never breaks the replay
        of a running programme; the new rules apply from the next analysis.
        """
        return AnalysisResult(findings=analyse_inventory(request.inventory, request.as_of))

    # ---- monthly follow-up report (D7, A6) ----------------------------------------

    async def _monthly_context(self, request: MonthlyReportRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The report context and the files its mail carries (A6 requests CSV, chart PNG)."""
        async with self._sessions() as session, self._sessions() as listing:
            programme = await session.get(ProgrammeRow, request.customer_id)
            status: dict[str, Any] = programme.status if programme else {}
            tz = _zone(str((status.get("calendar") or {}).get("timezone") or "UTC"))
            window = _month_window(request.month_start, request.month_end, tz)
            start, end = window
            month = ReportMonth(customer_id=request.customer_id, period=request.period,
                                first_day=request.month_start, last_day=request.month_end,
                                start=start, end=end, tz=tz)
            async with asyncio.TaskGroup() as jobs:
                # The long listing runs on its own connection while the figures are counted on this one
                # (two cores: the database works on both at once; ~0.3 s saved at 50,000 requests).
                review_job = jobs.create_task(report_data.request_review(listing, month))
                # Rules A4, A6, C10, C12: every figure is one SQL aggregate (activities/report_data.py).
                matrix = await report_data.state_matrix(session, month)
                chart_job = (jobs.create_task(asyncio.to_thread(
                    requests_by_kind_and_state, matrix, list(matrix), REQUEST_STATES, CHART_TITLE))
                    if sum(report_data.by_state(matrix).values()) else None)
                sla = await report_data.sla_figures(session, month)
                dispatches = await report_data.dispatch_figures(session, month)
                extras = await report_data.extra_rows(session, month)
                extra_figures = await report_data.extra_figures(session, month)
                optional = await report_data.optional_programmes(session, month)
                # Columns, not rows: a filed report's body can weigh megabytes.
                documents = list((await session.execute(
                    select(DocumentRow.id, DocumentRow.kind, DocumentRow.title, DocumentRow.version,
                           DocumentRow.created_at)
                    .where(DocumentRow.customer_id == request.customer_id)
                    .where(DocumentRow.created_at >= start, DocumentRow.created_at < end)
                    .order_by(DocumentRow.created_at, DocumentRow.id)
                )).all())
                mails = list((await session.execute(
                    select(OutboxRow.template, OutboxRow.subject, OutboxRow.recipients, OutboxRow.sent_at)
                    .where(OutboxRow.customer_id == request.customer_id)
                    .where(OutboxRow.status == "sent")
                    .where(OutboxRow.sent_at >= start, OutboxRow.sent_at < end)
                    .order_by(OutboxRow.sent_at, OutboxRow.id)
                )).all())
            review = review_job.result()
            lists = review.lists

        chart = chart_job.result() if chart_job is not None else None
        sections: dict[str, Any] = {
            "call": {
                "held_on": _iso(request.call_held_on),
                "notes": request.call_notes or "",
            },
            "requests": requests_section(matrix, lists, sla, report_data.breaches_of(lists),
                                         chart.svg if chart else None),
            "dispatches": dispatches,
            "optional_programmes": optional,
            "deliverables": deliverables_section(_steps_from_projection(status), window, request.month_end, tz),
            "extras": extras_section(extras, tz, extra_figures),
            "communications": communications_section(documents, mails, tz),
        }
        stem = f"techconnect-{request.customer_id}-{request.month_start:%Y-%m}"
        attachments: list[dict[str, Any]] = [{
            # rule A6: one row per request of the month, for the customer's own spreadsheet.
            "filename": f"{stem}-requests.csv",
            "content_type": "text/csv",
            "text": review.csv,
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
        context = {
            "customer_name": request.customer_name,
            "month": request.month,
            "month_start": request.month_start.isoformat(),
            "month_end": request.month_end.isoformat(),
            "phase": programme.phase if programme else "",
            "timezone": tz.key,
            "summary": monthly_summary(request, sections),
            "sections": sections,
        }
        return context, attachments

    @activity.defn
    async def generate_monthly_report(self, request: MonthlyReportRequest) -> ReportDraft:
        """The monthly follow-up report draft (D7, A6), built from the database and filed for approval."""
        async with self._sessions() as session:
            existing = await self._by_key(session, request.idempotency_key)
        if existing is None:
            context, attachments = await self._monthly_context(request)
            title = (f"Monthly follow-up report: {request.month_start:%B %Y} "
                     f"(month {request.month}, period {request.period})")
            existing = await self._file(_Filing(
                customer_id=request.customer_id,
                period=request.period,
                kind="monthly_report",
                title=title,
                template="monthly_report",
                context=context,
                idempotency_key=request.idempotency_key,
                attachments=tuple(attachments),
                json_ready=True,
                keep=slim_monthly_data,
            ))
            maybe_crash(REPORT_AFTER_FILING)  # crash tests: filed, the workflow does not know yet
        return ReportDraft(document_id=existing.id, title=existing.title, summary=str(existing.data.get("summary", "")))

    # ---- final report ------------------------------------------------------------

    @activity.defn
    async def generate_final_report(self, request: FinalReportRequest) -> DocumentRef:
        """Final report of a closing programme: every step, cycle, extra and the renewal outcome."""
        status = request.status
        async with self._sessions() as session:
            # Rule A4: a visit's cost is recorded by its support request's workflow, not by the programme's,
            # so the period's dispatch extras come from the database, where both record theirs.
            dispatches = list((await session.execute(
                select(BillableExtraRow)
                .where(BillableExtraRow.customer_id == status.customer_id, BillableExtraRow.period == status.period,
                       BillableExtraRow.kind == BillableExtraKind.on_site_dispatch.value)
                .order_by(BillableExtraRow.recorded_at, BillableExtraRow.id)
            )).scalars())
        row = await self._file(_Filing(
            customer_id=status.customer_id,
            period=status.period,
            kind="final_report",
            title=f"Final report, period {status.period}",
            template="final_report",
            context=final_report_context(status, dispatches),
            idempotency_key=request.idempotency_key,
        ))
        return DocumentRef(document_id=row.id, title=row.title, kind=row.kind)


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
    tz = _zone(status.calendar.timezone)
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
    extras += [
        {
            "kind": d.kind,
            "rule": d.rule,
            "description": d.description,
            "agreement_ref": d.agreement_ref,
            "amount": _money(d.amount, d.currency),
            "recorded_at": _iso(d.recorded_at, tz),
            "recorded_by": d.recorded_by,
        }
        for d in dispatches
        if (d.kind, d.description, d.agreement_ref) not in known
    ]
    severities = Counter(f.severity.value for f in status.findings)
    steps = [_step_dump(s, tz) for s in status.steps]
    return {
        "customer_name": status.customer_name,
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
        "extras": extras,
        "extras_totals": _totals(extras),
        "renewal": status.renewal.model_dump(mode="json") if status.renewal else None,
        "inventory_version": status.inventory_version,
        "findings_count": len(status.findings),
        "findings_by_severity": {s.value: severities.get(s.value, 0) for s in Severity},
        "rejections_count": len(status.rejections),
        "annual_fee": status.annual_fee.model_dump(mode="json"),
    }
