"""Whether a database is at the newest migration, without importing Alembic.

A command that only reads (`techconnect step list`, `program list`) would otherwise spend a third of its time
importing Alembic to learn there is nothing to upgrade. The migrations are numbered and linear (0001, 0002 ...,
each revising the one before), so the newest is the highest number among the files;
tests/test_storage.py checks that this is Alembic's head.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

VERSIONS_DIR = Path(__file__).resolve().parent / "migrations" / "versions"


def newest_revision() -> str:
    return max(p.name[:4] for p in VERSIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.py"))


async def at_newest_revision(engine: AsyncEngine) -> bool:
    """True when the database records the newest revision; False when older, empty or unreadable."""
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()
    except DBAPIError:
        return False  # no alembic_version table yet: a new database
    return found == newest_revision()
