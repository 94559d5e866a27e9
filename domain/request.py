"""Support requests: tracking numbers, the first-response clock, states, on-site dispatch.

Rules A1, A4, A6, C3, C12, C13 (docs/rules.md). `SupportRequestWorkflow` keeps a
`RequestStatus` as its state and returns it from every Update and from `get_status`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, TechnicalLead
from domain.money import Money
from domain.policy import ProgramPolicy
from domain.step_inputs import Rejection, StepInput, TechnicalLeadChange


class RequestKind(StrEnum):
    """Annex A6 breaks the report down by these kinds."""

    support = "support"
    product = "product"
    advisory = "advisory"
    training = "training"


class Priority(StrEnum):
    """Set with the customer (A4); the first-response clock is the same for all (C12)."""

    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


class Channel(StrEnum):
    phone = "phone"
    email = "email"
    portal = "portal"
    cli = "cli"


class RequestState(StrEnum):
    open = "open"
    pending = "pending"  # waiting for the customer (A6)
    closed = "closed"


class SlaEventKind(StrEnum):
    started = "started"
    warned = "warned"
    met = "met"
    breached = "breached"
    responded_late = "responded_late"


TRACKING_RE = re.compile(r"^TC-[A-Z0-9-]+-\d{4}-\d{4,}$")


def tracking_number(customer_id: str, year: int, sequence: int) -> str:
    """A4: unique and readable, e.g. `TC-ACME-2027-0042`."""
    return f"TC-{customer_id.upper()}-{year}-{sequence:04d}"


class NewRequest(BaseModel):
    """What a person files (CLI, portal); the tracking number is allocated on opening."""

    customer_id: str
    kind: RequestKind
    priority: Priority
    summary: str = Field(min_length=1, max_length=500)
    description: str = ""
    filed_by: str = Field(min_length=1)
    channel: Channel = Channel.cli
    customisation: bool = False  # rule C13
    agreement_ref: str | None = None  # rule C13: a customisation needs a separate agreement


class RequestInput(BaseModel):
    """Input of SupportRequestWorkflow (id `request-<tracking_number>`)."""

    tracking_number: str
    request: NewRequest
    customer_name: str
    period: int
    calendar: BusinessCalendar
    technical_lead: TechnicalLead
    contacts: list[Contact]
    policy: ProgramPolicy = Field(default_factory=ProgramPolicy)
    opened_at: datetime


class StatusChange(BaseModel):
    at: datetime
    from_state: RequestState | None
    to_state: RequestState
    by: str
    note: str = ""


class SlaEvent(BaseModel):
    kind: SlaEventKind
    at: datetime
    deadline: datetime
    note: str = ""


class Proposal(BaseModel):
    measures: str
    proposed_by: str
    proposed_at: datetime


class DispatchState(StrEnum):
    requested = "requested"
    approved = "approved"  # both approvals in
    refused = "refused"  # an approval expired or was declined
    booked = "booked"
    visited = "visited"


class Dispatch(BaseModel):
    """On-site support (A4): both parties approve the extra cost, each within its deadline."""

    reason: str
    estimated_cost: Money
    agreement_ref: str
    requested_by: str
    requested_at: datetime
    customer_approval_due_at: datetime
    manager_approval_due_at: datetime
    customer_approved_by: str | None = None
    customer_approved_at: datetime | None = None
    manager_approved_by: str | None = None
    manager_approved_at: datetime | None = None
    state: DispatchState = DispatchState.requested
    refusal: str | None = None
    engineer: str | None = None
    engineer_email: str | None = None
    booking_ref: str | None = None
    visit_on: date | None = None
    visit_notes: str | None = None


class RequestStatus(BaseModel):
    tracking_number: str
    workflow_id: str
    customer_id: str
    kind: RequestKind
    priority: Priority
    summary: str
    state: RequestState = RequestState.open
    opened_at: datetime
    first_response_deadline: datetime | None = None
    first_response_warning_at: datetime | None = None
    first_response_at: datetime | None = None
    first_response_by: str | None = None
    sla_breached: bool = False
    pending_reason: str | None = None
    proposal: Proposal | None = None
    closed_at: datetime | None = None
    closure: str | None = None
    history: list[StatusChange] = Field(default_factory=list)
    sla_events: list[SlaEvent] = Field(default_factory=list)
    dispatches: list[Dispatch] = Field(default_factory=list)
    refusal: str | None = None
    rejections: list[Rejection] = Field(default_factory=list)  # refused `complete_step` signals
    technical_lead_changes: list[TechnicalLeadChange] = Field(default_factory=list)  # rule C7
    # The latest messages of the conversation, oldest first, each text cut to a preview: the whole thread is
    # in the database (request_messages). The state goes into every save and Update result, and a thread
    # kept whole would grow the history without bound (Temporal's 2 MB payload limit).
    messages: list[Message] = Field(default_factory=list)
    message_count: int = 0


# ---- Updates ----------------------------------------------------------------------


class Respond(StepInput):
    """The support rep's first response: stops the C12 clock."""

    message: str = Field(min_length=1)


class Pend(StepInput):
    reason: str = Field(min_length=1)


class Resume(StepInput):
    note: str = ""


class ProposeResolution(StepInput):
    measures: str = Field(min_length=1)


class AcceptResolution(StepInput):
    """The customer accepts the measures proposed by OT (A4)."""


class RejectResolution(StepInput):
    reason: str = Field(min_length=1)


class RecordWrittenAcceptance(StepInput):
    """Ops record the customer's written acceptance (A4), with its reference."""

    reference: str = Field(min_length=1)


class ChangePriority(StepInput):
    """The priority agreed with the customer (A4) changes, with the reason; the status history keeps it."""

    priority: Priority
    reason: str = Field(min_length=1)


class RequestDispatch(StepInput):
    reason: str = Field(min_length=1)
    estimated_cost: Money
    agreement_ref: str = Field(min_length=1)  # rule C3


class ApproveDispatch(StepInput):
    party: Literal["customer", "manager"]


class RecordVisit(StepInput):
    visit_on: date
    notes: str = Field(min_length=1)
    actual_cost: Money | None = None


# ---- the conversation -------------------------------------------------------------
class AuthorRole(StrEnum):
    """Who wrote a message of a request's thread: the customer's side or OT's."""

    customer = "customer"  # a contact of the customer (by: their e-mail address)
    technical_lead = "technical_lead"  # the request's TL (by: the TL's id)
    staff = "staff"  # a support representative, a support manager or operations (the face checked the role)


class AttachmentRef(BaseModel):
    """A file that came with a message, stored in the database (`request_attachments`), not in history."""

    id: int
    filename: str = Field(min_length=1, max_length=255)
    content_type: str
    size: int = Field(ge=0)


class Message(BaseModel):
    """One message of a request's thread (A4: the request is followed with the customer)."""

    seq: int
    at: datetime
    by: str
    role: AuthorRole
    via: str  # portal, mail, cli, temporal
    text: str
    attachments: list[AttachmentRef] = Field(default_factory=list)


THREAD_IN_STATE = 50  # messages kept in the workflow's state
PREVIEW_CHARS = 1000  # of each message's text there


def thread_preview(message: Message) -> Message:
    """The message as the workflow's state keeps it: its text cut to PREVIEW_CHARS."""
    if len(message.text) <= PREVIEW_CHARS:
        return message
    return message.model_copy(update={"text": message.text[:PREVIEW_CHARS] + " [...]"})


class AddComment(StepInput):
    """A message to the request's thread; the other party is mailed (the contacts, or the TL and the desk)."""

    message: str = Field(min_length=1, max_length=20_000)
    role: AuthorRole = AuthorRole.staff
    attachments: list[AttachmentRef] = Field(default_factory=list, max_length=20)


class RequestResult(BaseModel):
    tracking_number: str
    state: RequestState
    sla_breached: bool
    closure: str | None = None
    refusal: str | None = None
