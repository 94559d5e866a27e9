"""OT's price list (rule C3, issue 14), and the billable-extras ledger priced from it: each extra keeps
its quantity, the list price it was priced from (unit price, basis, the entry's effective date) or the
reason for an override; `amount` and `currency` stay the amount billed (NULL: unpriced).

Written by hand like 0001 to 0005; tests/test_storage.py checks it against the
metadata on SQLite and PostgreSQL. Rows recorded before it get quantity 1 and no list price.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
NEW_EXTRA_COLUMNS = ("quantity", "unit_price", "price_basis", "price_effective_from", "override_reason")


def upgrade() -> None:
    op.create_table(
        "price_list",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("imported_at", TIMESTAMP, nullable=False),
        sa.Column("imported_by", sa.String(128), nullable=False),
        sa.UniqueConstraint("kind", "effective_from"),
    )
    # One ADD COLUMN at a time: SQLite takes them without rebuilding the table.
    op.add_column("billable_extras", sa.Column("quantity", sa.Numeric(12, 2), nullable=False, server_default="1"))
    op.add_column("billable_extras", sa.Column("unit_price", sa.Numeric(12, 2), nullable=True))
    op.add_column("billable_extras", sa.Column("price_basis", sa.String(16), nullable=True))
    op.add_column("billable_extras", sa.Column("price_effective_from", sa.Date(), nullable=True))
    op.add_column("billable_extras", sa.Column("override_reason", sa.Text(), nullable=True))
    op.create_index("ix_billable_extras_recorded_at", "billable_extras", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_billable_extras_recorded_at", table_name="billable_extras")
    with op.batch_alter_table("billable_extras") as batch:
        for column in NEW_EXTRA_COLUMNS:
            batch.drop_column(column)
    op.drop_table("price_list")
