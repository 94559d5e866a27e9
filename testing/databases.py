"""The machine's PostgreSQL for tests and benchmarks: a fresh database each time, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade

# Admin DSN of the machine's PostgreSQL (trust auth). Each test gets its own database.
PG_ADMIN_DSN = os.environ.get("TECHCONNECT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_url(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the admin DSN's server."""
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def pg_database(name: str) -> AsyncIterator[str]:
    """Database `name`, created here (an unreachable server raises TimeoutError or OSError) and dropped after."""
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def migrated_sessions(url: str) -> AsyncIterator[SessionFactory]:
    """Sessions on the database at `url`, migrated to the latest revision by Alembic first."""
    await upgrade(url)
    engine = make_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()
