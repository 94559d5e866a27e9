"""Inputs and outputs of every activity (one model in, one out).

Kept apart from the activity classes so workflow code can build requests without
importing anything that does I/O.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.calendar import BusinessCalendar
from domain.cycle import CycleStatus, ReportReview
from domain.enrolment import Enrolment, MaintenanceSubscription
from domain.errors import RuleViolation
from domain.inventory import Finding, SiteInventory
from domain.policy import ProgramPolicy
from domain.program import BillableExtra, PeriodPlan, ProgramStatus
from domain.request import Dispatch, Message, NewRequest, RequestStatus, SlaEvent, StatusChange


# ---- calendar -----------------------------------------------------------------
class PlanPeriodRequest(BaseModel):
    calendar: BusinessCalendar
    period: int
    period_start: date
    term_months: int
    policy: ProgramPolicy


class DeadlineItem(BaseModel):
    key: str
    # Either a fixed agreed date, or a count of business days from a date.
    due_on: date | None = None
    business_days_from: date | None = None
    business_days: int = 0


class DeadlineRequest(BaseModel):
    calendar: BusinessCalendar
    items: list[DeadlineItem]
    reminder_business_days: int = 2


class ScheduledDeadline(BaseModel):
    key: str
    due_on: date
    due_at: datetime  # end of the business day `due_on`, UTC
    remind_at: datetime  # start of the business day `reminder_business_days` before, UTC
    # Start of the business day `due_on`, UTC (the month-end report is drafted then, D7). None in results
    # recorded before it existed.
    starts_at: datetime | None = None


class DeadlineSchedule(BaseModel):
    items: list[ScheduledDeadline]
    # Rule A1: the holiday list the dates were computed from, e.g. "OT list FR v3"; None in results recorded before.
    holiday_list: str | None = None


class BusinessDeadlineRequest(BaseModel):
    calendar: BusinessCalendar
    start: datetime
    minutes: int
    warning_minutes: int = 0
    round_the_clock: bool = False


class BusinessDeadline(BaseModel):
    deadline: datetime
    warning_at: datetime | None = None
    # Rule A1: the holiday list the deadline was computed from, e.g. "OT list FR v3"; None in results recorded
    # before, and when the clock runs 24x7 (no list consulted).
    holiday_list: str | None = None


# ---- database -----------------------------------------------------------------
class EnrolmentCheckRequest(BaseModel):
    enrolment: Enrolment
    policy: ProgramPolicy
    period: int = 1


class EnrolmentCheckResult(BaseModel):
    violations: list[RuleViolation] = Field(default_factory=list)
    subscription: MaintenanceSubscription | None = None
    # Rule C4: the registry's contacts of every subscription of the customer (None in results recorded
    # before the sum: the named subscription's count is used then).
    registry_contacts: int | None = None

    @property
    def accepted(self) -> bool:
        return not self.violations


class AuditEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    customer_id: str
    detail: dict[str, Any] = Field(default_factory=dict)
    interface: str = "temporal"  # "cli", "portal", "temporal-ui", "signal"
    role: str | None = None


class EnrolmentPreparation(BaseModel):
    """The enrolment's reads and calendar maths in one call (since the patch `enrolment-prepared-in-one-call`):
    the check, then, when it passes, the period's plan and the tracked steps' default due dates from its start."""

    check: EnrolmentCheckRequest
    plan: PlanPeriodRequest
    reminder_business_days: int  # the policy's `step_reminder_business_days`, as the separate call had it


class PreparedEnrolment(BaseModel):
    check: EnrolmentCheckResult
    # None when the check refused the enrolment: nothing is planned for a refused programme.
    plan: PeriodPlan | None = None
    default_deadlines: DeadlineSchedule | None = None


class RegisterProgramme(BaseModel):
    status: ProgramStatus
    enrolment: Enrolment
    # The start's audit entry, written in the same transaction (since the patch `enrolment-mails-at-once`).
    audit: list[AuditEntry] = Field(default_factory=list)


class WorkspaceRef(BaseModel):
    workspace_id: str


class ProjectionUpdate(BaseModel):
    status: ProgramStatus
    audit: list[AuditEntry] = Field(default_factory=list)


class CycleProjection(BaseModel):
    """A monthly cycle's state for the inbox projection (issue 16), written after each of its changes."""

    status: CycleStatus


class ExtraRecord(BaseModel):
    customer_id: str
    period: int
    extra: BillableExtra
    idempotency_key: str


class CloseWorkspace(BaseModel):
    customer_id: str
    period: int
    reason: str
    # Rule D10: the contacts read the archived workspace this many days after `closed_at`, then lose access.
    # The defaults are the close scheduled before these fields existed: access revoked at once, at the
    # activity's time.
    readable_days: int = Field(default=0, ge=0)
    closed_at: datetime | None = None  # workflow time of the close


class Ack(BaseModel):
    ok: bool = True
    detail: str = ""


# ---- documents ----------------------------------------------------------------
DocumentKind = Literal[
    "welcome", "kickoff_minutes", "communication_plan", "site_inventory", "configuration_findings",
    "analysis_presentation", "monthly_report", "renewal_notice", "renewal_invoice", "non_renewal_notice",
    "final_report", "notice",
]


class FileDocumentRequest(BaseModel):
    """Render `templates/documents/<template>.html.j2` (+ `.txt.j2`) and file it in the workspace (A9)."""

    customer_id: str
    period: int
    kind: DocumentKind
    title: str
    template: str
    context: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str
    version: int = 1


class DocumentRef(BaseModel):
    document_id: int
    title: str
    kind: str


class AnalysisRequest(BaseModel):
    customer_id: str
    period: int
    inventory: SiteInventory
    as_of: date


class AnalysisResult(BaseModel):
    findings: list[Finding]


class MonthlyReportRequest(BaseModel):
    customer_id: str
    customer_name: str
    period: int
    month: int
    month_start: date
    month_end: date
    call_held_on: date | None = None
    call_notes: str | None = None
    idempotency_key: str
    # Rule D7: a month-end draft (filed as `monthly_report_draft`, out of the customer's sight until the TL
    # approves it), its version, and whether the months it covers have ended ("no call held" is then final).
    draft: bool = False
    version: int = 1
    months_ended: bool = False
    # The TL's decisions on the earlier drafts, kept in the draft's `data["reviews"]` for staff (never rendered).
    reviews: list[ReportReview] = Field(default_factory=list)


class PublishReport(BaseModel):
    """Rule D7: the approved draft becomes the month's report in the customer's workspace."""

    document_id: int
    approved_by: str
    approved_at: datetime
    reviews: list[ReportReview] = Field(default_factory=list)  # the whole history, approval last


class ReportDraft(BaseModel):
    document_id: int
    title: str
    summary: str


class FinalReportRequest(BaseModel):
    status: ProgramStatus
    idempotency_key: str


# ---- mail ---------------------------------------------------------------------
class Attachment(BaseModel):
    filename: str
    content_type: str = "text/plain"
    content: str


class CallInvite(BaseModel):
    """A follow-up call (A5) as an .ics invite."""

    uid: str
    summary: str
    description: str = ""
    starts_at: datetime
    duration_minutes: int = 60
    location: str = ""
    organizer_email: str
    attendee_emails: list[str]


class MailRequest(BaseModel):
    """Mail `templates/mail/<template>.{subject,txt,html}.j2` to `to`.

    `idempotency_key` is derived from the workflow ID, period and purpose, so a retried
    or replayed activity finds its outbox row and never mails twice.
    """

    idempotency_key: str
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    template: str
    context: dict[str, Any] = Field(default_factory=dict)
    customer_id: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    invite: CallInvite | None = None
    attach_document_id: int | None = None  # a filed workspace document, attached as HTML


class MailResult(BaseModel):
    outbox_id: int
    status: Literal["sent", "already_sent"]
    message_id: str


class Welcome(BaseModel):
    """A new period's welcome in one activity task (since the patch `welcome-in-one-activity`): its document filed
    in the workspace, then its mails (the contacts' welcome, the TL's assignment), each with its own outbox row."""

    document: FileDocumentRequest
    mails: list[MailRequest] = Field(min_length=1)


class MailOutcome(BaseModel):
    """One mail of a batch: sent (or found sent), or `refused` for good (an SMTP 5xx, an address no relay takes),
    recorded on its outbox row and told to the workflow instead of raised, so the other mails still go."""

    idempotency_key: str
    result: MailResult | None = None
    refused: str | None = None


class WelcomeSent(BaseModel):
    document: DocumentRef
    mails: list[MailOutcome]


# ---- support requests (A1, A4, A6, C12, C13) -----------------------------------
class RequestProjection(BaseModel):
    """SupportRequestWorkflow's state, projected into `support_requests`.

    `at` is the workflow time of the state: an older projection never overwrites a newer one.
    """

    period: int
    request: NewRequest
    status: RequestStatus
    at: datetime
    audit: list[AuditEntry] = Field(default_factory=list)  # people's actions since the last save


class OpenRequestsQuery(BaseModel):
    customer_id: str


class OpenRequests(BaseModel):
    """The customer's requests not closed yet, as the database has them (C7: the new TL takes them over)."""

    tracking_numbers: list[str]


class StatusChangeRecord(BaseModel):
    """Rule A4: one status change, with who and when."""

    tracking_number: str
    change: StatusChange
    idempotency_key: str


class MessageRecord(BaseModel):
    """One message of a request's thread (A4), stored once."""

    tracking_number: str
    message: Message


class SlaEventRecord(BaseModel):
    """Rule C12: one SLA event."""

    tracking_number: str
    event: SlaEvent
    idempotency_key: str


class RequestOpened(BaseModel):
    """A new request for the database: the filing details and the first projection of its state.

    Since the `open-request-in-one-write` patch the opening status change (A4) and the SLA clock's
    start (C12) come with it, written in the same transaction; runs opened before it send none.
    """

    customer_name: str
    period: int
    request: NewRequest
    status: RequestStatus
    at: datetime  # workflow time of the state (see RequestProjection)
    audit: list[AuditEntry] = Field(default_factory=list)  # written in the same transaction, once per entry
    changes: list[StatusChangeRecord] = Field(default_factory=list)
    sla_events: list[SlaEventRecord] = Field(default_factory=list)


class DispatchRecord(BaseModel):
    """Rule A4: an on-site dispatch (number `seq` of its request) as it stands now."""

    tracking_number: str
    customer_id: str
    seq: int
    dispatch: Dispatch
    at: datetime


class DispatchBookingRequest(BaseModel):
    """Book the on-site visit of an approved dispatch (A4); the key makes the booking idempotent."""

    tracking_number: str
    customer_id: str
    customer_name: str
    seq: int
    dispatch: Dispatch
    idempotency_key: str
    at: datetime


class DispatchBooking(BaseModel):
    engineer: str
    engineer_email: str
    booking_ref: str
