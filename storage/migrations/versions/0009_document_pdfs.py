"""Document PDFs (rules D10, A9, issue 15): `document_pdfs` keeps each workspace document's PDF once rendered.

A PDF is rendered the first time a mail or the portal needs it (storage/pdfs.py), not when the document is
filed: WeasyPrint takes seconds on a long document and the monthly report's activity is benchmarked. The
primary key is the document's, so two renders racing store one. Written by hand like 0001 to 0008;
tests/test_storage.py checks it against the metadata on SQLite and PostgreSQL. Nothing to backfill: a
document filed before it gets its PDF on first need.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "document_pdfs",
        sa.Column("document_id", sa.Integer(), sa.ForeignKey("documents.id"), primary_key=True),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("rendered_at", TIMESTAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("document_pdfs")
