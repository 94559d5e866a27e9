"""Typed calls from workflow code to activities, by activity name.

Workflows must not import the activity classes (they pull in SQLAlchemy, jinja2,
aiosmtplib, holidays), so activities are called by name here, with their result type
and the timeouts and retry policy chosen once for all workflows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        Ack,
        AnalysisRequest,
        AnalysisResult,
        BusinessDeadline,
        BusinessDeadlineRequest,
        CloseWorkspace,
        DeadlineRequest,
        DeadlineSchedule,
        DispatchBooking,
        DispatchBookingRequest,
        DispatchRecord,
        DocumentRef,
        EnrolmentCheckRequest,
        EnrolmentCheckResult,
        ExtraRecord,
        FileDocumentRequest,
        FinalReportRequest,
        MailRequest,
        MailResult,
        MonthlyReportRequest,
        PlanPeriodRequest,
        ProjectionUpdate,
        RegisterProgramme,
        ReportDraft,
        RequestOpened,
        RequestProjection,
        SlaEventRecord,
        StatusChangeRecord,
        WorkspaceRef,
    )
    from domain.program import PeriodPlan

T = TypeVar("T", bound=BaseModel)

# Retry forever with a capped back-off: an outage of the database or the SMTP relay
# delays work, it never loses it (Temporal keeps the attempt count in history).
RETRY_FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=2))


async def _call(name: str, arg: BaseModel, result_type: type[T], summary: str, timeout_s: int = 60) -> T:
    result: T = await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=timedelta(seconds=timeout_s),
        retry_policy=RETRY_FOREVER,
        summary=summary,
    )
    return result


async def check_enrolment(req: EnrolmentCheckRequest, summary: str) -> EnrolmentCheckResult:
    return await _call("check_enrolment", req, EnrolmentCheckResult, summary)


async def plan_period(req: PlanPeriodRequest, summary: str) -> PeriodPlan:
    return await _call("plan_period", req, PeriodPlan, summary)


async def schedule_deadlines(req: DeadlineRequest, summary: str) -> DeadlineSchedule:
    return await _call("schedule_deadlines", req, DeadlineSchedule, summary)


async def business_deadline(req: BusinessDeadlineRequest, summary: str) -> BusinessDeadline:
    return await _call("business_deadline", req, BusinessDeadline, summary)


async def business_deadline_local(req: BusinessDeadlineRequest, summary: str) -> BusinessDeadline:
    """The same calendar maths as a local activity: milliseconds of pure computation (holidays, time
    zones) that need no task dispatch by the server, only a marker in history (issue 7's profile:
    opening a request was bounded by round trips). Retried in the worker, then on timers."""
    result: BusinessDeadline = await workflow.execute_local_activity(
        "business_deadline",
        req,
        result_type=BusinessDeadline,
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=RETRY_FOREVER,
        summary=summary,
    )
    return result


async def register_programme(req: RegisterProgramme, summary: str) -> WorkspaceRef:
    return await _call("register_programme", req, WorkspaceRef, summary)


async def save_projection(req: ProjectionUpdate, summary: str) -> Ack:
    return await _call("save_projection", req, Ack, summary)


async def record_billable_extra(req: ExtraRecord, summary: str) -> Ack:
    return await _call("record_billable_extra", req, Ack, summary)


async def close_workspace(req: CloseWorkspace, summary: str) -> Ack:
    return await _call("close_workspace", req, Ack, summary)


async def file_document(req: FileDocumentRequest, summary: str) -> DocumentRef:
    return await _call("file_document", req, DocumentRef, summary)


async def analyse_configuration(req: AnalysisRequest, summary: str) -> AnalysisResult:
    return await _call("analyse_configuration", req, AnalysisResult, summary)


async def generate_monthly_report(req: MonthlyReportRequest, summary: str) -> ReportDraft:
    return await _call("generate_monthly_report", req, ReportDraft, summary, timeout_s=300)


async def generate_final_report(req: FinalReportRequest, summary: str) -> DocumentRef:
    return await _call("generate_final_report", req, DocumentRef, summary, timeout_s=300)


async def send_mail(req: MailRequest, summary: str) -> MailResult:
    # SMTP 5xx comes back as a non-retryable ApplicationError; callers catch it
    # (ActivityError) and record it, so a bad address never fails a programme.
    return await _call("send_mail", req, MailResult, summary, timeout_s=120)


# ---- support requests (A4, C12) ---------------------------------------------------


async def record_request_opened(req: RequestOpened, summary: str) -> Ack:
    return await _call("record_request_opened", req, Ack, summary)


async def save_request(req: RequestProjection, summary: str) -> Ack:
    return await _call("save_request", req, Ack, summary)


async def record_status_change(req: StatusChangeRecord, summary: str) -> Ack:
    return await _call("record_status_change", req, Ack, summary)


async def record_sla_event(req: SlaEventRecord, summary: str) -> Ack:
    return await _call("record_sla_event", req, Ack, summary)


async def record_dispatch(req: DispatchRecord, summary: str) -> Ack:
    return await _call("record_dispatch", req, Ack, summary)


async def book_dispatch(req: DispatchBookingRequest, summary: str) -> DispatchBooking:
    return await _call("book_dispatch", req, DispatchBooking, summary, timeout_s=120)
