"""Shared fixtures: databases (SQLite and the machine's PostgreSQL), SMTP on loopback, Temporal."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
import pytest_asyncio

from testing.databases import PG_ADMIN_DSN, migrated_sessions, pg_database
from testing.servers import free_port as free_port  # tests import it from here too

if TYPE_CHECKING:  # tests.harness imports the whole worker: only the fixtures below that need it load it
    from temporalio.testing import WorkflowEnvironment

    from domain.policy import ProgramPolicy
    from storage.db import SessionFactory
    from tests.harness import Stack


def _pg_unreachable(exc: BaseException) -> NoReturn:
    # In CI a missing PostgreSQL is a failure, not a skip (issue 2, item 3).
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI: {exc}")
    pytest.skip(f"PostgreSQL unreachable: {exc}")


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    async with contextlib.AsyncExitStack() as databases:
        try:
            url = await databases.enter_async_context(pg_database(f"tc_test_{uuid.uuid4().hex[:12]}"))
        except (TimeoutError, OSError) as exc:
            _pg_unreachable(exc)
        yield url


@pytest_asyncio.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_pg_database() as url:
        yield url


@pytest_asyncio.fixture
async def shared_db(tmp_path: Path) -> AsyncIterator[str]:
    """A database worker processes share (testing/workers.py): a fresh PostgreSQL database,
    else (outside CI) a SQLite file."""
    async with contextlib.AsyncExitStack() as databases:
        try:
            url = await databases.enter_async_context(pg_database(f"tc_scale_{uuid.uuid4().hex[:10]}"))
        except (TimeoutError, OSError) as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI: {exc}")
            yield f"sqlite+aiosqlite:///{tmp_path / 'techconnect.db'}"
            return
        yield url


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


@pytest_asyncio.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """Sessions on `database_url` (SQLite, then PostgreSQL), migrated to head by Alembic. A module that needs
    another database, or rows in it, overrides this fixture."""
    async with migrated_sessions(database_url) as factory:
        yield factory


@pytest_asyncio.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping Temporal server of the test's own, at TECHCONNECT_TEST_NOW when set (tests/clock.py)."""
    from tests.harness import start_time_skipping

    async with await start_time_skipping() as e:
        yield e


@pytest.fixture
def stack_policy() -> ProgramPolicy | None:
    """The policy `st` runs with (None: the default); a module overrides this fixture to change it."""
    return None


@pytest_asyncio.fixture
async def st(env: WorkflowEnvironment, tmp_path: Path, sqlite_url: str,
             stack_policy: ProgramPolicy | None) -> AsyncIterator[Stack]:
    """The real worker on `env` (time-skipping), SQLite, an SMTP sink: tests/harness.py's `stack`."""
    from tests.harness import stack

    async with stack(env, sqlite_url, tmp_path, policy=stack_policy) as s:
        yield s


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
    # `make bench` runs the full-period scenario test in a pytest of its own and reads its figures
    # here (bench/period.py), rather than importing the test.
    if path := os.environ.get("TECHCONNECT_FIGURES_FILE"):
        Path(path).write_text(json.dumps(FIGURES), encoding="utf-8")
