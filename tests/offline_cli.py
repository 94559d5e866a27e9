"""The environment of a CLI test that must not reach Temporal (tests/test_cli_offline.py, test_extras_cli.py,
test_holidays.py): no setting of the caller's, a Temporal address where nothing listens, a SQLite database in
the test's folder, and a client that fails the test if the command connects at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import cli.runtime as cli_module
from tests.conftest import free_port


def offline_cli_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, connected: str) -> None:
    """`connected`: the failure when the command connects to Temporal anyway."""
    for name in list(os.environ):
        if name.startswith(("TEMPORAL_", "TECHCONNECT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("TECHCONNECT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TECHCONNECT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'techconnect.db'}")
    monkeypatch.setenv("COLUMNS", "200")

    async def no_temporal(*_: Any, **__: Any) -> Any:
        raise AssertionError(connected)

    monkeypatch.setattr(cli_module, "client_for", no_temporal)
