"""Support requests (issue 3): tracking counters, requests, status changes, SLA events,
dispatches and optional programmes, as in storage/tables.py.

Rules A4 (tracking numbers, status history, on-site dispatch), A6 (request kinds,
optional programmes), C12 (SLA events), C13 (customisation with agreement reference).
Written by hand like 0001; tests/test_storage.py checks it against the metadata on
SQLite and PostgreSQL.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    # rule A4: one counter per customer and year; allocation is an atomic upsert.
    op.create_table(
        "tracking_counters",
        sa.Column("customer_id", sa.String(63), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True),
        sa.Column("last", sa.Integer(), nullable=False),
    )

    op.create_table(
        "support_requests",
        sa.Column("tracking_number", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(63), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("filed_by", sa.String(128), nullable=False),
        sa.Column("customisation", sa.Boolean(), nullable=False),
        sa.Column("agreement_ref", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pending_reason", sa.Text(), nullable=True),
        sa.Column("opened_at", TIMESTAMP, nullable=False),
        sa.Column("first_response_deadline", TIMESTAMP, nullable=True),
        sa.Column("first_response_at", TIMESTAMP, nullable=True),
        sa.Column("sla_breached", sa.Boolean(), nullable=False),
        sa.Column("closed_at", TIMESTAMP, nullable=True),
        sa.Column("closure", sa.Text(), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_support_requests_customer_id", "support_requests", ["customer_id"])
    op.create_index("ix_support_requests_kind", "support_requests", ["kind"])
    op.create_index("ix_support_requests_state", "support_requests", ["state"])
    op.create_index("ix_support_requests_opened_at", "support_requests", ["opened_at"])

    op.create_table(
        "request_status_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tracking_number", sa.String(64), sa.ForeignKey("support_requests.tracking_number"),
                  nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_request_status_changes_tracking_number", "request_status_changes", ["tracking_number"])
    op.create_index("ix_request_status_changes_at", "request_status_changes", ["at"])

    op.create_table(
        "sla_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tracking_number", sa.String(64), sa.ForeignKey("support_requests.tracking_number"),
                  nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("deadline", TIMESTAMP, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index("ix_sla_events_tracking_number", "sla_events", ["tracking_number"])
    op.create_index("ix_sla_events_at", "sla_events", ["at"])

    op.create_table(
        "dispatches",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tracking_number", sa.String(64), sa.ForeignKey("support_requests.tracking_number"),
                  nullable=False),
        sa.Column("customer_id", sa.String(63), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("estimated_cost", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("agreement_ref", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("requested_at", TIMESTAMP, nullable=False),
        sa.Column("customer_approved_by", sa.String(128), nullable=True),
        sa.Column("customer_approved_at", TIMESTAMP, nullable=True),
        sa.Column("manager_approved_by", sa.String(128), nullable=True),
        sa.Column("manager_approved_at", TIMESTAMP, nullable=True),
        sa.Column("refusal", sa.Text(), nullable=True),
        sa.Column("engineer", sa.String(255), nullable=True),
        sa.Column("booking_ref", sa.String(255), nullable=True),
        sa.Column("visit_on", sa.Date(), nullable=True),
        sa.Column("visit_notes", sa.Text(), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("tracking_number", "seq"),
    )
    op.create_index("ix_dispatches_tracking_number", "dispatches", ["tracking_number"])
    op.create_index("ix_dispatches_customer_id", "dispatches", ["customer_id"])

    op.create_table(
        "optional_programmes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(63), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("start", sa.Date(), nullable=False),
        sa.Column("end", sa.Date(), nullable=True),
        sa.Column("usage_note", sa.Text(), nullable=False),
    )
    op.create_index("ix_optional_programmes_customer_id", "optional_programmes", ["customer_id"])


def downgrade() -> None:
    for table in ("optional_programmes", "dispatches", "sla_events", "request_status_changes", "support_requests",
                  "tracking_counters"):
        op.drop_table(table)
