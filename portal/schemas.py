"""The JSON API's models: what /api/openapi.json describes (portal/routers/api.py serves them)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.errors import RuleViolation
from domain.request import Priority, RequestKind
from portal.queries import ProgrammeFacts
from storage.users import Role


class Me(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    customer_id: str | None
    technical_lead_id: str | None


class CustomerOut(BaseModel):
    id: str
    name: str
    phase: str | None = None
    technical_lead_id: str | None = None
    workflow_id: str | None = None
    temporal_url: str | None = None


class DocumentOut(BaseModel):
    id: int
    customer_id: str
    period: int
    kind: str
    title: str
    version: int
    created_at: datetime


class DocumentBody(DocumentOut):
    body_html: str
    body_text: str


class DeskItem(BaseModel):
    """One request of the support desk's queue (C12), in the queue's order."""

    tracking_number: str
    customer_id: str
    customer_name: str
    technical_lead_id: str
    priority: str
    state: str
    summary: str
    opened_at: datetime
    first_response_deadline: datetime | None
    sla: str = Field(description="State of the first-response clock (rule C12)")
    late: bool = Field(description="Breached, or past the deadline without a first response")


class RequestOut(BaseModel):
    tracking_number: str
    customer_id: str
    kind: str
    priority: str
    summary: str
    state: str
    opened_at: datetime
    first_response_deadline: datetime | None
    first_response_at: datetime | None
    sla_breached: bool
    sla: str = Field(description="State of the first-response clock (rule C12)")
    filed_by: str
    closure: str | None
    temporal_url: str | None = None


class StatusChangeOut(BaseModel):
    at: datetime
    from_state: str | None
    to_state: str
    by: str
    note: str


class SlaEventOut(BaseModel):
    kind: str
    at: datetime
    deadline: datetime
    note: str


class DispatchOut(BaseModel):
    seq: int
    state: str
    reason: str
    estimated_cost: Decimal
    currency: str
    customer_approved_by: str | None
    manager_approved_by: str | None
    engineer: str | None
    booking_ref: str | None
    visit_on: date | None


class RequestDetailOut(RequestOut):
    history: list[StatusChangeOut]
    sla_events: list[SlaEventOut]
    dispatches: list[DispatchOut]


class OpenRequestIn(BaseModel):
    kind: RequestKind
    priority: Priority
    summary: str = Field(min_length=1, max_length=500)
    description: str = ""
    customisation: bool = False
    agreement_ref: str | None = None


class Opened(BaseModel):
    tracking_number: str
    workflow_id: str
    temporal_url: str


class NoticeIn(BaseModel):
    reference: str | None = Field(default=None, description="Your letter or ticket reference")


class ProgrammeOut(ProgrammeFacts):
    open_steps: list[str]
    overdue_steps: list[str]
    non_renewal: dict[str, Any] | None
    temporal_url: str


class InboxItem(BaseModel):
    customer_id: str
    workflow_id: str
    step: str
    title: str
    rule: str
    due_on: date | None
    overdue: bool
    month: int | None
    temporal_url: str


class StepDone(BaseModel):
    workflow_id: str
    step: str
    status: dict[str, Any]


class Refusal(BaseModel):
    detail: str
    violations: list[RuleViolation] = Field(default_factory=list)


class ApprovalIn(BaseModel):
    party: Literal["customer", "manager"] | None = Field(
        default=None, description="Only for admins; contacts approve as the customer, support managers as OT")


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str | None
    action: str
    customer_id: str
    interface: str = Field(description="Where the action came from: cli, portal, temporal, signal")
    detail: dict[str, Any]


class AuditPage(BaseModel):
    total: int = Field(description="Entries matching the filters")
    limit: int
    offset: int
    entries: list[AuditEntryOut]
