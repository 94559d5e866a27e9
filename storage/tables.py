"""Tables of the application database (SQLite embedded, PostgreSQL at scale).

The workflows own the process state; these tables are what reports, the portal and
support staff read (annex A7: the inventory lives in the tracking system).
Every write an activity makes carries an idempotency key with a unique constraint,
so a retried activity never writes twice.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class MaintenanceSubscriptionRow(Base):
    """Rule E1: the maintenance registry ops import."""

    __tablename__ = "maintenance_subscriptions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(63), index=True)
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date] = mapped_column(Date)
    contact_count: Mapped[int] = mapped_column(Integer, default=0)
    imported_at: Mapped[datetime]


class CustomerRow(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    maintenance_subscription_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ContactRow(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("customer_id", "email"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # revoked when the programme closes
    added_at: Mapped[datetime]


class ProgrammeRow(Base):
    """Projection of `ProgramWorkflow` state, written by an activity after each change."""

    __tablename__ = "programmes"
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    period: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(32), index=True)
    technical_lead_id: Mapped[str] = mapped_column(String(128), index=True)
    period_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    period_end: Mapped[date | None] = mapped_column(Date, nullable=True)
    handbook_version: Mapped[str] = mapped_column(String(255), default="")  # rule E2
    handbook_accepted_at: Mapped[datetime | None] = mapped_column(nullable=True)  # rule E2
    support_language: Mapped[str] = mapped_column(String(8), default="en")  # rule C8
    enrolment: Mapped[dict[str, Any]]
    status: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class OpenStepRow(Base):
    """The inbox (issue 16): each programme's and cycle's open steps, replaced whole by the activity that
    records the workflow's change, so lists never query every workflow. Temporal stays the authority
    (`techconnect projection check`)."""

    __tablename__ = "open_steps"
    workflow_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    step: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), index=True)
    technical_lead_id: Mapped[str] = mapped_column(String(128), index=True)
    period: Mapped[int] = mapped_column(Integer)
    month: Mapped[int | None] = mapped_column(Integer, nullable=True)
    title: Mapped[str] = mapped_column(String(255))
    rule: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    due_on: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]


class WorkspaceRow(Base):
    """D10/A9: the private workspace; archived when the programme closes."""

    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | archived
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # D10: archived, its contacts still read it (nothing more) until then; None: until archived_at.
    access_ends_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DocumentRow(Base):
    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    period: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer, default=1)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime]


class DocumentPdfRow(Base):
    """A document's PDF (D10/A9), rendered the first time a mail or the portal needs it (storage/pdfs.py),
    then kept: a resent mail carries the same bytes, and no download renders twice."""

    __tablename__ = "document_pdfs"
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    rendered_at: Mapped[datetime]


class OutboxRow(Base):
    """Every mail, with an idempotency key: a retried activity finds its row and does not resend."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    customer_id: Mapped[str | None] = mapped_column(String(63), index=True, nullable=True)
    template: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[str] = mapped_column(Text)  # comma-separated To + Cc
    subject: Mapped[str] = mapped_column(String(998))
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)


class BillableExtraRow(Base):
    """Rules C1, C3, C4, C6, C10, C11, C13, A4: every extra carries an agreement reference."""

    __tablename__ = "billable_extras"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    period: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text)
    agreement_ref: Mapped[str] = mapped_column(String(255))
    # Rule C3: quantity × the list's unit price in force on the day it was recorded, or an override with its
    # reason; `amount` and `currency` are what is billed, NULL while unpriced (no list price for the kind).
    quantity: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("1"), server_default="1")
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), nullable=True)
    price_basis: Mapped[str | None] = mapped_column(String(16), nullable=True)
    price_effective_from: Mapped[date | None] = mapped_column(Date, nullable=True)
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime] = mapped_column(index=True)  # the ledger's export by date
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)


class PriceListRow(Base):
    """Rule C3: OT's price list, imported by ops; a price applies from `effective_from` until the next one."""

    __tablename__ = "price_list"
    __table_args__ = (UniqueConstraint("kind", "effective_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    basis: Mapped[str] = mapped_column(String(16))  # unit | month | period
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    effective_from: Mapped[date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(Text, default="")
    imported_at: Mapped[datetime]
    imported_by: Mapped[str] = mapped_column(String(128))


class HolidayListRow(Base):
    """Rule A1: one region's holiday list as OT publishes it ("FR", "DE-BY", "OT-EMEA"); `version` goes up
    with every change to any of its years, so a deadline can record which list it was computed from."""

    __tablename__ = "holiday_lists"
    region: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(255))  # of the last change
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(128))


class HolidayYearRow(Base):
    """Rule A1: a year of a region's list is defined (possibly with no holiday), where it came from: an
    import by ops, or the `holidays` package seeding it on first use."""

    __tablename__ = "holiday_years"
    region: Mapped[str] = mapped_column(ForeignKey("holiday_lists.region"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)  # the list's version when this year was written
    source: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(128))


class HolidayRow(Base):
    """Rule A1: one published holiday of a region's list."""

    __tablename__ = "holidays"
    __table_args__ = (UniqueConstraint("region", "day"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(ForeignKey("holiday_lists.region"))
    day: Mapped[date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(255))


class AuditLogRow(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(63), index=True)
    interface: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)


class TrackingCounterRow(Base):
    """Rule A4: tracking numbers `TC-<CUSTOMER>-<YEAR>-<NNNN>`, allocated per customer and year."""

    __tablename__ = "tracking_counters"
    customer_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class SupportRequestRow(Base):
    """A support request (A4, A6, C12, C13); its workflow is `request-<tracking_number>`."""

    __tablename__ = "support_requests"
    tracking_number: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    period: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), index=True)  # support | product | advisory | training
    priority: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(16))
    filed_by: Mapped[str] = mapped_column(String(128))
    customisation: Mapped[bool] = mapped_column(Boolean, default=False)
    agreement_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # open | pending | closed
    pending_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(index=True)
    first_response_deadline: Mapped[datetime | None] = mapped_column(nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closure: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime]


class RequestStatusChangeRow(Base):
    """Every status change of a request, with who and when (A4: "its latest status change")."""

    __tablename__ = "request_status_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(ForeignKey("support_requests.tracking_number"), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)


class RequestMessageRow(Base):
    """One message of a request's thread (A4), in the order the workflow numbered them."""

    __tablename__ = "request_messages"
    __table_args__ = (UniqueConstraint("tracking_number", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(ForeignKey("support_requests.tracking_number"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    via: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # AttachmentRef each


class InboundMessageRow(Base):
    """A mail received by the inbound receiver (inbound/), stored raw before anything else is done with
    it; then posted to its request, or quarantined with the reason (and the sender told once)."""

    __tablename__ = "inbound_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)  # the same message delivered twice: one row
    received_at: Mapped[datetime] = mapped_column(index=True)
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), index=True)  # received | posted | quarantined
    reason: Mapped[str] = mapped_column(Text, default="")
    tracking_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class RequestAttachmentRow(Base):
    """A file that came with a message of a request's thread (a mail reply's attachment), kept under a
    size limit and a content-type allowlist; served only on that request's page."""

    __tablename__ = "request_attachments"
    __table_args__ = (UniqueConstraint("inbound_message_id", "part"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(ForeignKey("support_requests.tracking_number"), index=True)
    inbound_message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"), nullable=True)
    part: Mapped[int] = mapped_column(Integer)  # its place in the message: a retried import finds it
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class SlaEventRow(Base):
    """Rule C12: started, warned, met, breached, responded_late: every SLA event, with times."""

    __tablename__ = "sla_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(ForeignKey("support_requests.tracking_number"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(index=True)
    deadline: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)


class DispatchRow(Base):
    """On-site dispatch (A4): approvals, booking, visit; the cost becomes a billable extra (C3)."""

    __tablename__ = "dispatches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tracking_number: Mapped[str] = mapped_column(ForeignKey("support_requests.tracking_number"), index=True)
    customer_id: Mapped[str] = mapped_column(String(63), index=True)
    seq: Mapped[int] = mapped_column(Integer)  # 1st, 2nd ... dispatch of the request
    reason: Mapped[str] = mapped_column(Text)
    estimated_cost: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3))
    agreement_ref: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))  # requested | approved | refused | booked | visited
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime]
    customer_approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    customer_approved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    manager_approved_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    manager_approved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    refusal: Mapped[str | None] = mapped_column(Text, nullable=True)
    engineer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    booking_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    visit_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    visit_notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("tracking_number", "seq"),)


class OptionalProgrammeRow(Base):
    """A6: "use of any other optional support programme the customer subscribes to"."""

    __tablename__ = "optional_programmes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date | None] = mapped_column(Date, nullable=True)
    usage_note: Mapped[str] = mapped_column(Text, default="")


# ---- portal: users and roles, sessions, API tokens, sign-in links, throttling (issue 4) ----------------


class UserRow(Base):
    """A person who signs in to the portal.

    role: contact | tl | gts | support_manager | ops | admin. A contact belongs to one
    customer (`customer_id`); a Technical Lead carries the ID programmes use
    (`technical_lead_id`, e.g. `tl-alice`). Passwords are argon2 hashes, never text;
    contacts may have none and sign in with a link mailed to them.
    """

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(63), index=True, nullable=True)
    technical_lead_id: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime | None] = mapped_column(nullable=True)


class PortalSessionRow(Base):
    """A signed-in browser. The cookie carries a signed random ID; only its SHA-256 is stored."""

    __tablename__ = "portal_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiTokenRow(Base):
    """Bearer tokens for /api; only the SHA-256 of a token is stored, the prefix helps people tell them apart."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SignInLinkRow(Base):
    """One-time sign-in links mailed to customer contacts (through the outbox)."""

    __tablename__ = "sign_in_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SignInAttemptRow(Base):
    """Sign-in attempts by key (`email:<address>`, `ip:<address>`, `link:<address>`), for throttling."""

    __tablename__ = "sign_in_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400), index=True)
    at: Mapped[datetime] = mapped_column(index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
