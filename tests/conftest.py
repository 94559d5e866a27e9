"""Shared fixtures: databases (SQLite and the machine's PostgreSQL), SMTP on loopback, Temporal."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

# Admin DSN of the machine's PostgreSQL (trust auth). Each test gets its own database.
PG_ADMIN_DSN = os.environ.get("TECHCONNECT_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_unreachable(exc: BaseException) -> None:
    # In CI a missing PostgreSQL is a failure, not a skip (issue 2, item 3).
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI: {exc}")
    pytest.skip(f"PostgreSQL unreachable: {exc}")


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    name = f"tc_test_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError) as exc:
        _pg_unreachable(exc)
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database() as url:
        yield url


@pytest_asyncio.fixture
async def shared_db(tmp_path: Path) -> AsyncIterator[str]:
    """A database worker processes share (tests/worker_processes.py): a fresh PostgreSQL database,
    else (outside CI) a SQLite file."""
    name = f"tc_scale_{uuid.uuid4().hex[:10]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI: {exc}")
        yield f"sqlite+aiosqlite:///{tmp_path / 'techconnect.db'}"
        return
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'techconnect.db'}"


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Runs the test once on SQLite and once on PostgreSQL (issue 2, item 6)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'techconnect.db'}"
    else:
        async with fresh_pg_database() as url:
            yield url


@pytest.fixture
def artefacts_dir() -> Iterator[Path]:
    path = Path(__file__).resolve().parent.parent / ".artefacts"
    path.mkdir(exist_ok=True)
    yield path


# Figures measured by tests (history size, wall time), printed at the end of every run
# so `make test` shows them without `-s`.
FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def report_figure() -> Callable[[str, object], None]:
    def record(name: str, value: object) -> None:
        FIGURES.append((name, str(value)))

    return record


def pytest_configure(config: pytest.Config) -> None:
    """A TECHCONNECT_TEST_NOW that is not a date stops the run before any test (tests/clock.py)."""
    from tests.clock import requested_now

    try:
        requested_now()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header() -> str | None:
    """Say so when TECHCONNECT_TEST_NOW moves the time-skipping servers (tests/clock.py)."""
    from tests.clock import TEST_NOW, requested_now

    at = requested_now()
    return f"{TEST_NOW}={at.isoformat()}: time-skipping servers start at that instant (tests/clock.py)" if at else None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("measured figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
