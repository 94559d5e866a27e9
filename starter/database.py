"""The application database as a command or a client call opens it: migrated to head, disposed after.

SQLAlchemy is imported on first use only, so a command that never reads the database starts fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from config.settings import Settings

if TYPE_CHECKING:
    from storage.db import SessionFactory


@contextlib.asynccontextmanager
async def database(settings: Settings, sessions: SessionFactory | None = None) -> AsyncIterator[SessionFactory]:
    """`sessions` when given (the portal's, a test's); else an engine on the configured database,
    migrated to head first when it is not there (the CLI may be the first to touch it), disposed at the end."""
    if sessions is not None:
        yield sessions
        return
    from storage.db import make_engine, make_session_factory
    from storage.schema_version import at_newest_revision

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    if not await at_newest_revision(engine):
        from storage.migrate import upgrade  # Alembic only when there is something to do

        await upgrade(settings.effective_database_url)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()
