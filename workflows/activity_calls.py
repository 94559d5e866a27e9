"""Typed calls from workflow code to activities, by activity name.

Workflows must not import the activity classes (they pull in SQLAlchemy, jinja2,
aiosmtplib, holidays), so activities are called by name here, with their result type
and the timeouts and retry policy chosen once for all workflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

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
        CycleProjection,
        DeadlineRequest,
        DeadlineSchedule,
        DispatchBooking,
        DispatchBookingRequest,
        DispatchRecord,
        DocumentRef,
        EnrolmentCheckRequest,
        EnrolmentCheckResult,
        EnrolmentPreparation,
        ExtraRecord,
        FileDocumentRequest,
        FinalReportRequest,
        MailRequest,
        MailResult,
        MessageRecord,
        MonthlyReportRequest,
        OpenRequests,
        OpenRequestsQuery,
        PlanPeriodRequest,
        PreparedEnrolment,
        ProjectionUpdate,
        PublishReport,
        RegisterProgramme,
        ReportDraft,
        RequestOpened,
        RequestProjection,
        SlaEventRecord,
        StatusChangeRecord,
        Welcome,
        WelcomeSent,
        WorkspaceRef,
    )
    from domain.program import PeriodPlan

ArgT = TypeVar("ArgT", bound=BaseModel)
T = TypeVar("T", bound=BaseModel)

# Retry forever with a capped back-off: an outage of the database or the SMTP relay
# delays work, it never loses it (Temporal keeps the attempt count in history).
RETRY_FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=2))


@dataclass(frozen=True)
class ActivityCall(Generic[ArgT, T]):
    """One activity, called by name with its result type and timeout: `await act.send_mail(req, summary=...)`."""

    name: str
    result_type: type[T]
    timeout_s: int = 60
    local: bool = False
    # An activity of several steps heartbeats between them: a worker that dies mid-way is noticed after this long,
    # not after the whole `timeout_s`.
    heartbeat_s: int | None = None

    async def __call__(self, req: ArgT, summary: str) -> T:
        if self.local:
            local: T = await workflow.execute_local_activity(
                self.name, req, result_type=self.result_type, start_to_close_timeout=timedelta(seconds=self.timeout_s),
                retry_policy=RETRY_FOREVER, summary=summary)
            return local
        result: T = await workflow.execute_activity(
            self.name,
            req,
            result_type=self.result_type,
            start_to_close_timeout=timedelta(seconds=self.timeout_s),
            heartbeat_timeout=timedelta(seconds=self.heartbeat_s) if self.heartbeat_s is not None else None,
            retry_policy=RETRY_FOREVER,
            summary=summary,
        )
        return result


check_enrolment = ActivityCall[EnrolmentCheckRequest, EnrolmentCheckResult]("check_enrolment", EnrolmentCheckResult)
plan_period = ActivityCall[PlanPeriodRequest, PeriodPlan]("plan_period", PeriodPlan)
schedule_deadlines = ActivityCall[DeadlineRequest, DeadlineSchedule]("schedule_deadlines", DeadlineSchedule)
business_deadline = ActivityCall[BusinessDeadlineRequest, BusinessDeadline]("business_deadline", BusinessDeadline)
# The same calendar maths as a local activity: milliseconds of pure computation (holidays, time
# zones) that need no task dispatch by the server, only a marker in history (issue 7's profile:
# opening a request was bounded by round trips). Retried in the worker, then on timers.
business_deadline_local = ActivityCall[BusinessDeadlineRequest, BusinessDeadline](
    "business_deadline", BusinessDeadline, timeout_s=10, local=True)
register_programme = ActivityCall[RegisterProgramme, WorkspaceRef]("register_programme", WorkspaceRef)
save_projection = ActivityCall[ProjectionUpdate, Ack]("save_projection", Ack)
save_cycle_projection = ActivityCall[CycleProjection, Ack]("save_cycle_projection", Ack)
record_billable_extra = ActivityCall[ExtraRecord, Ack]("record_billable_extra", Ack)
close_workspace = ActivityCall[CloseWorkspace, Ack]("close_workspace", Ack)
file_document = ActivityCall[FileDocumentRequest, DocumentRef]("file_document", DocumentRef)
analyse_configuration = ActivityCall[AnalysisRequest, AnalysisResult]("analyse_configuration", AnalysisResult)
generate_monthly_report = ActivityCall[MonthlyReportRequest, ReportDraft]("generate_monthly_report", ReportDraft,
                                                                         timeout_s=300)
# Rule D7: a month-end draft, under its own name so that a worker of the previous release (which would file it
# in the customer's sight) never takes it.
draft_monthly_report = ActivityCall[MonthlyReportRequest, ReportDraft]("draft_monthly_report", ReportDraft,
                                                                      timeout_s=300)
publish_report = ActivityCall[PublishReport, DocumentRef]("publish_report", DocumentRef)
generate_final_report = ActivityCall[FinalReportRequest, DocumentRef]("generate_final_report", DocumentRef,
                                                                     timeout_s=300)
# ---- local variants (issue 16, docs/local-activities.md) ---------------------------------
# The same activities, run by the worker inside the workflow task that calls them: no activity task for the
# server to dispatch and no workflow task to wake the run with the result, only a marker in history (all the
# local activities of one workflow task are one billable Action). Only for short reads, pure computations and
# idempotent writes of one transaction; each is behind a patch where it is called. Retried in the worker, and
# beyond the SDK's local retry threshold (1 min of back-off) on durable timers: RETRY_FOREVER still holds.
# The three enrolment calls above in one (`enrolment-prepared-in-one-call`): one marker and one activation.
prepare_enrolment_local = ActivityCall[EnrolmentPreparation, PreparedEnrolment](
    "prepare_enrolment", PreparedEnrolment, timeout_s=30, local=True)
check_enrolment_local = ActivityCall[EnrolmentCheckRequest, EnrolmentCheckResult](
    "check_enrolment", EnrolmentCheckResult, timeout_s=30, local=True)
plan_period_local = ActivityCall[PlanPeriodRequest, PeriodPlan]("plan_period", PeriodPlan, timeout_s=30, local=True)
schedule_deadlines_local = ActivityCall[DeadlineRequest, DeadlineSchedule](
    "schedule_deadlines", DeadlineSchedule, timeout_s=30, local=True)
register_programme_local = ActivityCall[RegisterProgramme, WorkspaceRef](
    "register_programme", WorkspaceRef, timeout_s=30, local=True)
record_request_opened_local = ActivityCall[RequestOpened, Ack]("record_request_opened", Ack, timeout_s=30,
                                                                local=True)
# SMTP 5xx comes back as a non-retryable ApplicationError; callers catch it
# (ActivityError) and record it, so a bad address never fails a programme.
send_mail = ActivityCall[MailRequest, MailResult]("send_mail", MailResult, timeout_s=120)
# The welcome document and the enrolment's two mails in one task (`welcome-in-one-activity`): a filing and two
# sends, each within the time of its own call above, a heartbeat before each.
send_welcome = ActivityCall[Welcome, WelcomeSent]("send_welcome", WelcomeSent, timeout_s=300, heartbeat_s=60)

# ---- support requests (A4, C12) ---------------------------------------------------
record_request_opened = ActivityCall[RequestOpened, Ack]("record_request_opened", Ack)
save_request = ActivityCall[RequestProjection, Ack]("save_request", Ack)
record_status_change = ActivityCall[StatusChangeRecord, Ack]("record_status_change", Ack)
record_sla_event = ActivityCall[SlaEventRecord, Ack]("record_sla_event", Ack)
record_dispatch = ActivityCall[DispatchRecord, Ack]("record_dispatch", Ack)
record_message = ActivityCall[MessageRecord, Ack]("record_message", Ack)
list_open_requests = ActivityCall[OpenRequestsQuery, OpenRequests]("list_open_requests", OpenRequests)
book_dispatch = ActivityCall[DispatchBookingRequest, DispatchBooking]("book_dispatch", DispatchBooking, timeout_s=120)
