"""`make bench` (bench/, issue 7) at tiny sizes, so the bench code cannot rot: every figure is
measured (none errors), results.md is written with its sections, and each figure prints as
`name: value`. The sizes are Sizes.smoke(); the figures themselves are meaningless here."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from bench.__main__ import main, run_bench
from bench.harness import Sizes
from tests.conftest import PG_ADMIN_DSN


async def _postgres_reachable() -> bool:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
        await conn.close()
        return True
    except (OSError, TimeoutError):
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is unreachable in CI")
        return False


@pytest.mark.slow
async def test_bench_runs_every_measurement_at_tiny_sizes(tmp_path: Path) -> None:
    sizes = Sizes.smoke()
    if not await _postgres_reachable():
        sizes = dataclasses.replace(sizes, report_databases=("sqlite",))
    out = tmp_path / "results.md"
    results = await run_bench(sizes, tmp_path / "work", out)

    errors = {f.name: f.error for f in results.figures if f.error is not None}
    assert not errors, errors
    names = {f.name for f in results.figures}
    expected = {"program_start_ratio", "request_open_ratio", "full_period_seconds", "events_per_period",
                "events_per_cycle", "events_per_request", f"worker_rss_mb_{sizes.rss_programmes}",
                "cached_programme_kib_ratio", "enrolment_shape_ratio",
                "sla_breach_lag_seconds"} | {f"report_seconds_40_{db}" for db in sizes.report_databases}
    assert expected <= names, expected - names
    for f in results.figures:
        assert f.value is not None and f.value >= 0 and f.baseline, f
        assert re.fullmatch(r"[a-z0-9_]+: [0-9.]+", f.line()), f.line()
    assert [p["title"] for p in results.profiles] and all(p["busy"] > 0 for p in results.profiles)
    assert results.what_if is not None and "program_start_ratio" in results.what_if

    text = out.read_text(encoding="utf-8")
    for section in ("## Run", "## Figures", "## What if", "## Profiles", "## What the profiles showed"):
        assert section in text, section
    for key in ("cores", "load average", "temporalio", "temporal version"):
        assert key in text, key
    for f in results.figures:
        assert f"`{f.name}`" in text


def test_bench_command_line_rejects_unknown_options() -> None:
    with pytest.raises(SystemExit):
        main(["--no-such-option"])
