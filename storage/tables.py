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

from sqlalchemy import JSON, Boolean, Date, DateTime, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
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


class WorkspaceRow(Base):
    """D10/A9: the private workspace; archived when the programme closes."""

    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | archived
    created_at: Mapped[datetime]
    archived_at: Mapped[datetime | None] = mapped_column(nullable=True)


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
    amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    recorded_by: Mapped[str] = mapped_column(String(128))
    recorded_at: Mapped[datetime]
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)


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
