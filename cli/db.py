"""`techconnect db ...` and `maintenance ...`: the application database and the maintenance registry (rule E1)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel

from cli import runtime
from cli.runtime import emit, run_async
from config.settings import Settings
from domain.errors import Refused
from starter.database import database

db_app = typer.Typer(help="Application database", no_args_is_help=True)
maintenance_app = typer.Typer(help="The maintenance subscription registry (rule E1)", no_args_is_help=True)


@db_app.command("upgrade")
@run_async
async def db_upgrade() -> None:
    """Apply the Alembic migrations (also done by `dev` and `worker` at start)."""
    from storage.migrate import upgrade

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.effective_database_url)
    runtime.out.print("database at head")


@maintenance_app.command("import")
@run_async
async def maintenance_import(
    file: Path = typer.Argument(..., help="CSV: id, customer_id, start, end, contact_count"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import maintenance subscriptions (all or nothing)."""
    from storage.maintenance_import import MaintenanceImportError, import_maintenance_csv

    async with database(Settings()) as sessions:
        try:
            report = await import_maintenance_csv(file, sessions)
        except MaintenanceImportError as exc:
            raise Refused(f"{file}: {exc}; nothing was imported") from None
        except OSError as exc:
            raise Refused(f"cannot read {file}: {exc.strerror or exc}; nothing was imported") from None
    data = report.model_dump() if isinstance(report, BaseModel) else dict(vars(report))
    emit(data, as_json, lambda: runtime.out.print(f"imported {file}: {data}"))


__all__ = ["db_app", "maintenance_app"]
