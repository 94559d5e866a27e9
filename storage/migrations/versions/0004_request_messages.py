"""The thread of a support request (issue 13): one row per message, numbered by the workflow.

Written by hand like 0001 to 0003; tests/test_storage.py checks it against the
metadata on SQLite and PostgreSQL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "request_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tracking_number", sa.String(64), sa.ForeignKey("support_requests.tracking_number"),
                  nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("by", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("via", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.UniqueConstraint("tracking_number", "seq"),
    )
    op.create_index("ix_request_messages_tracking_number", "request_messages", ["tracking_number"])


def downgrade() -> None:
    op.drop_index("ix_request_messages_tracking_number", table_name="request_messages")
    op.drop_table("request_messages")
