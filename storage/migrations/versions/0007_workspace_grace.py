"""A closed programme's workspace stays readable (rules D10, A9, issue 14): `workspaces.access_ends_at`, until
when the contacts of an archived workspace still read it (pages and documents, nothing written); after it
their access ends for good.

Written by hand like 0001 to 0006; tests/test_storage.py checks it against the
metadata on SQLite and PostgreSQL. A workspace archived before it keeps NULL: its access
ended when it was archived (its contacts were revoked then).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("workspaces", sa.Column("access_ends_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("access_ends_at")
