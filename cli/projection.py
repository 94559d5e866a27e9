"""`techconnect projection check [--fix]`: the inbox projection against the workflows (issue 16)."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from cli import runtime
from cli.runtime import emit, run_async
from config.settings import Settings
from starter.database import database

projection_app = typer.Typer(help="The application database's projection of the workflows", no_args_is_help=True)


@projection_app.command("check")
@run_async
async def projection_check(
    fix: bool = typer.Option(False, "--fix", help="Write the workflows' open steps over the differing rows"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Compare the inbox's rows with every running programme and cycle (one query each: a repair tool).
    Exit 0 when they agree or were fixed, 3 when differences remain."""
    from starter.projection import check_projection

    settings = Settings()
    client = await runtime.client_for(settings)

    def progress(done: int, total: int) -> None:
        if not as_json and (done == total or done % 100 == 0):
            print(f"checked {done}/{total} workflows", file=sys.stderr, flush=True)

    async with database(settings) as sessions:
        report = await check_projection(client, sessions, fix=fix, progress=progress)

    def human() -> None:
        if report.differences:
            t = Table("workflow", "missing", "extra", "changed")
            for d in report.differences:
                t.add_row(d.workflow_id, ", ".join(d.missing), ", ".join(d.extra), ", ".join(d.changed))
            runtime.out.print(t)
        verdict = (f"fixed {report.fixed}" if report.fixed else
                   "run again with --fix to repair" if report.differences else "the projection agrees")
        runtime.out.print(f"{report.checked} workflow(s) checked, {len(report.differences)} differ: {verdict}")

    emit(report.model_dump(mode="json"), as_json, human)
    if report.differences and not report.fixed:
        runtime.finish(3)
