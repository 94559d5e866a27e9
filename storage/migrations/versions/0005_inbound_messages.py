"""Replies by mail (issue 13): every inbound message, raw, with what became of it; the attachments
kept from them, served on their request's page.

Written by hand like 0001 to 0004; tests/test_storage.py checks it against the
metadata on SQLite and PostgreSQL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("mail_from", sa.String(320), nullable=False),
        sa.Column("rcpt_to", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("tracking_number", sa.String(64), nullable=True),
        sa.Column("processed_at", TIMESTAMP, nullable=True),
        sa.UniqueConstraint("message_id"),
    )
    op.create_index("ix_inbound_messages_received_at", "inbound_messages", ["received_at"])
    op.create_index("ix_inbound_messages_status", "inbound_messages", ["status"])
    op.create_table(
        "request_attachments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tracking_number", sa.String(64), sa.ForeignKey("support_requests.tracking_number"),
                  nullable=False),
        sa.Column("inbound_message_id", sa.Integer(), sa.ForeignKey("inbound_messages.id"), nullable=True),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.UniqueConstraint("inbound_message_id", "part"),
    )
    op.create_index("ix_request_attachments_tracking_number", "request_attachments", ["tracking_number"])


def downgrade() -> None:
    op.drop_table("request_attachments")
    op.drop_table("inbound_messages")
