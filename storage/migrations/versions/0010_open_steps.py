"""The inbox projection (issue 16): `open_steps` holds each programme's and monthly cycle's open steps.

Written by the activity that records a workflow's change (the programme's `save_projection`, the cycle's
`save_cycle_projection`), read by the TL and ops inboxes and `techconnect step list` with one query a page.
Written by hand like 0001 to 0009; tests/test_storage.py checks it against the metadata on SQLite and
PostgreSQL. Backfill: `techconnect projection check --fix` writes the rows of the workflows running when it
is applied (a cycle started before the change never writes its own).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-13
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "open_steps",
        sa.Column("workflow_id", sa.String(128), primary_key=True),
        sa.Column("step", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("technical_lead_id", sa.String(128), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("due_at", TIMESTAMP, nullable=True),
        sa.Column("overdue", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
    )
    op.create_index("ix_open_steps_customer_id", "open_steps", ["customer_id"])
    op.create_index("ix_open_steps_technical_lead_id", "open_steps", ["technical_lead_id"])
    op.create_index("ix_open_steps_due_on", "open_steps", ["due_on"])


def downgrade() -> None:
    op.drop_table("open_steps")
