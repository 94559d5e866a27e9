"""Workspace documents (D10/A9): rendering, filing, configuration analysis and reports.

Every document is rendered twice, `documents/<template>.html.j2` and `.txt.j2`, and
filed as one `DocumentRow` whose `data` keeps the context it was rendered from, so the
portal can re-render or show fields without parsing HTML. Rows are written with the
caller's idempotency key (unique in the table): a retried activity, or one run again
after a worker was killed, returns the row it filed the first time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import jinja2
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import report_data, report_listing, report_rows
from activities.charts import requests_by_kind_and_state
from activities.faults import REPORT_AFTER_FILING, maybe_crash
from activities.report_builders import (
    MonthFigures,
    final_report_context,
    month_window,
    monthly_attachments,
    monthly_context,
    slim_monthly_data,
    zone,
)
from activities.report_data import REQUEST_STATES, ReportMonth
from activities.report_print import capped_print_context
from domain.activities import (
    AnalysisRequest,
    AnalysisResult,
    DocumentRef,
    FileDocumentRequest,
    FinalReportRequest,
    MonthlyReportRequest,
    PublishReport,
    ReportDraft,
)
from domain.findings import analyse_inventory
from domain.step_inputs import BillableExtraKind, StepState
from storage.db import SessionFactory
from storage.pdfs import PRINT_HTML_KEY
from storage.repositories.documents import MONTHLY_REPORT_DRAFT
from storage.tables import BillableExtraRow, CustomerRow, DocumentRow, ProgrammeRow

CHART_TITLE = "Requests by kind and state at the month end"
# PostgreSQL compresses long values (TOAST) with pglz by default: for the 30 MB of HTML and text of a
# month of 50,000 requests, 0.3-0.5 s of the server's time before the commit returned; lz4 takes half
# (issue 16). For this transaction only, and only where the server has lz4 (PostgreSQL 14+ built with
# it; elsewhere the query returns no row and changes nothing). Values read back the same either way.
_LZ4_THIS_TRANSACTION = text(
    "SELECT set_config('default_toast_compression', 'lz4', true) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)")


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
    # The context of a shorter rendering for the PDF, or None when the filed HTML prints as it is
    # (monthly report: the listings capped, activities/report_print.py; the PDF itself is rendered later).
    print_context: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None


def _steps_from_projection(status: dict[str, Any]) -> list[StepState]:
    # Parse step by step: a projection written by an older worker must not stop the report.
    steps: list[StepState] = []
    for raw in status.get("steps") or []:
        try:
            steps.append(StepState.model_validate(raw))
        except ValidationError:
            activity.logger.warning("monthly report: skipping unreadable step %r", raw)
    return steps


class DocumentActivities:
    """Documents of the workspace; built in worker.py with the session factory and the template environment."""

    def __init__(self, session_factory: SessionFactory, templates: jinja2.Environment) -> None:
        self._sessions = session_factory
        self._templates = templates
        report_rows.register(templates)  # the monthly report's long tables (A6), rendered in Python

    # ---- filing ------------------------------------------------------------------

    def _render(self, template: str, context: dict[str, Any], text: bool = True) -> tuple[str, str]:
        # A missing template or context key raises and the activity retries: it is a
        # deployment bug, and a fixed worker picks the task up again without losing it.
        html = self._templates.get_template(f"documents/{template}.html.j2").render(context)
        body = self._templates.get_template(f"documents/{template}.txt.j2").render(context) if text else ""
        return html, body

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
            printed = filing.print_context(context) if filing.print_context is not None else None
            if printed is not None:
                data = data | {PRINT_HTML_KEY: self._render(filing.template, printed, text=False)[0]}
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
            if (await session.connection()).dialect.name == "postgresql":
                await session.execute(_LZ4_THIS_TRANSACTION)
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
            tz = zone(str((status.get("calendar") or {}).get("timezone") or "UTC"))
            window = month_window(request.month_start, request.month_end, tz)
            start, end = window
            month = ReportMonth(customer_id=request.customer_id, period=request.period,
                                first_day=request.month_start, last_day=request.month_end,
                                start=start, end=end, tz=tz)
            async with asyncio.TaskGroup() as jobs:
                # The long listing runs on its own connection while the figures are counted on this one
                # (two cores: the database works on both at once; ~0.3 s saved at 50,000 requests).
                review_job = jobs.create_task(report_listing.request_review(listing, month))
                # Rules A4, A6, C10, C12: every figure is one SQL aggregate (activities/report_data.py).
                matrix = await report_data.state_matrix(session, month)
                chart_job = (jobs.create_task(asyncio.to_thread(
                    requests_by_kind_and_state, matrix, list(matrix), REQUEST_STATES, CHART_TITLE))
                    if sum(report_data.by_state(matrix).values()) else None)
                figures = MonthFigures(
                    matrix=matrix,
                    sla=await report_data.sla_figures(session, month),
                    dispatches=await report_data.dispatch_figures(session, month),
                    extras=await report_data.extra_rows(session, month),
                    extra_figures=await report_data.extra_figures(session, month),
                    optional=await report_data.optional_programmes(session, month),
                    documents=await report_data.documents_filed(session, month),
                    mails=await report_data.mails_sent(session, month),
                    steps=_steps_from_projection(status),
                )
            review = review_job.result()
        chart = chart_job.result() if chart_job is not None else None
        context = monthly_context(request, figures, review, chart, phase=programme.phase if programme else "",
                                  window=window, tz=tz)
        return context, monthly_attachments(request, review.csv, chart)

    @activity.defn
    async def generate_monthly_report(self, request: MonthlyReportRequest) -> ReportDraft:
        """The monthly follow-up report draft (D7, A6), built from the database and filed for approval."""
        async with self._sessions() as session:
            existing = await self._by_key(session, request.idempotency_key)
        if existing is None:
            with report_listing.no_collection():
                existing = await self._file_monthly_report(request)
            maybe_crash(REPORT_AFTER_FILING)  # crash tests: filed, the workflow does not know yet
        return ReportDraft(document_id=existing.id, title=existing.title, summary=str(existing.data.get("summary", "")))

    async def _file_monthly_report(self, request: MonthlyReportRequest) -> DocumentRow:
        context, attachments = await self._monthly_context(request)
        title = (f"Monthly follow-up report: {request.month_start:%B %Y} "
                 f"(month {request.month}, period {request.period})")
        return await self._file(_Filing(
            customer_id=request.customer_id,
            period=request.period,
            # Rule D7: a month-end draft stays out of the customer's sight until the TL approves it.
            kind=MONTHLY_REPORT_DRAFT if request.draft else "monthly_report",
            title=title,
            version=request.version,
            template="monthly_report",
            context=context,
            idempotency_key=request.idempotency_key,
            attachments=tuple(attachments),
            json_ready=True,
            keep=lambda c: slim_monthly_data(c) | {
                "reviews": [r.model_dump(mode="json") for r in request.reviews]},
            print_context=partial(capped_print_context, csv_filename=str(attachments[0]["filename"])),
        ))

    @activity.defn
    async def draft_monthly_report(self, request: MonthlyReportRequest) -> ReportDraft:
        """Rule D7: the month-end draft, filed out of the customer's sight whatever the request says."""
        return await self.generate_monthly_report(request.model_copy(update={"draft": True}))

    @activity.defn
    async def publish_report(self, request: PublishReport) -> DocumentRef:
        """Rule D7: the approved draft becomes the month's report in the workspace (once; a retry finds it done)."""
        async with self._sessions() as session:
            row = await session.get(DocumentRow, request.document_id, populate_existing=True)
            if row is None:
                raise ApplicationError(f"document {request.document_id} does not exist", type="DocumentNotFound",
                                       non_retryable=True)
            if row.kind == MONTHLY_REPORT_DRAFT:
                row.kind = "monthly_report"
                row.data = dict(row.data) | {"approved_by": request.approved_by,
                                             "approved_at": request.approved_at.isoformat(),
                                             "reviews": [r.model_dump(mode="json") for r in request.reviews]}
                await session.commit()
            return DocumentRef(document_id=row.id, title=row.title, kind=row.kind)

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
