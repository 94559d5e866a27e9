"""OT's holiday lists (rule A1, issue 15): per calendar region ("FR", "DE-BY", "OT-EMEA") the holidays OT
publishes, seeded from the `holidays` package on first use of a region-year and replaced by ops imports.

`holiday_lists` holds a region's version (up with every change), `holiday_years` which years are defined and
from where, `holidays` the days. Written by hand like 0001 to 0007; tests/test_storage.py checks it against
the metadata on SQLite and PostgreSQL. Nothing to backfill: the first deadline computed for a region seeds it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "holiday_lists",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "holiday_years",
        sa.Column("region", sa.String(32), sa.ForeignKey("holiday_lists.region"), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_table(
        "holidays",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), sa.ForeignKey("holiday_lists.region"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.UniqueConstraint("region", "day"),
    )


def downgrade() -> None:
    op.drop_table("holidays")
    op.drop_table("holiday_years")
    op.drop_table("holiday_lists")
