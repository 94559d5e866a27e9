"""Alembic environment, driven from `storage.migrate` (no alembic.ini at the repo root).

`storage.migrate.upgrade` opens the connection itself (async engine, run_sync) and hands
it over in `config.attributes["connection"]`, so the migration runs inside the
transaction that holds the migration lock. Run without a connection (e.g. `alembic -c`
with a hand-made ini), it builds its own async engine from `sqlalchemy.url` or
`TECHCONNECT_DATABASE_URL`.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("TECHCONNECT_DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set sqlalchemy.url or TECHCONNECT_DATABASE_URL")
    return url


def _run(connection: Connection) -> None:
    # render_as_batch: SQLite can only ALTER through table copies; PostgreSQL ignores it.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
