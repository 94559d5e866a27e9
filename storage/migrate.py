"""Alembic upgrades run from code: the worker, the portal and `techconnect dev` call
`upgrade(url)` on every start, so it must be idempotent and safe when several
processes start at once.

Concurrency: on PostgreSQL the upgrade holds a transaction-scoped advisory lock; on
SQLite it runs inside `BEGIN IMMEDIATE`, which takes the database write lock up front.
Either way a second process waits, then finds the schema at head and does nothing.
DDL is transactional on both, so a failed upgrade leaves no half-made schema.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Arbitrary but fixed: every process must ask for the same advisory lock.
_PG_LOCK_ID = 0x7EC4C0 << 8


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    # Config values go through configparser interpolation: a literal % must be doubled.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _migration_engine(url: str) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _no_driver_begin(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite would run DDL outside any transaction; take over BEGIN ourselves.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _upgrade_on(connection: Connection, url: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    cfg = alembic_config(url)
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def upgrade(url: str) -> None:
    """Bring the database at `url` to the head revision (a no-op when it is there)."""
    engine = _migration_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_on, url)
    finally:
        await engine.dispose()


def upgrade_sync(url: str) -> None:
    """`upgrade` for synchronous callers; works whether or not an event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade(url))
        return
    # Called from inside a loop (e.g. a sync helper in async code): asyncio.run would
    # refuse, so run the upgrade on a fresh loop in a thread and wait for it.
    errors: list[BaseException] = []

    def _target() -> None:
        try:
            asyncio.run(upgrade(url))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=_target, name="alembic-upgrade")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(url: str) -> str | None:
    """The revision the database is at; None for a database never migrated."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_revision_of)
    finally:
        await engine.dispose()


__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade", "upgrade_sync"]
