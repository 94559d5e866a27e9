"""`techconnect`: the command line for operations staff and Technical Leads.

Exit codes are a stable interface: 0 success, 2 a rule or a check refused the
request (the message names the rule and the numbers), 1 any other failure; `projection check` says 3
when the projection differs from the workflows.
`--json` prints machine-readable output on stdout. One module per command group, assembled here.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

import typer

from cli import runtime, servers

# name -> (module, Typer): every command group. A command of one group imports that group's module only,
# so `step list` starts without Temporal's client or the other groups (issue 16: the whole command < 1 s).
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "program": ("cli.programs", "program_app"),
    "step": ("cli.steps", "step_app"),
    "notice": ("cli.steps", "notice_app"),  # rule C16
    "maintenance": ("cli.db", "maintenance_app"),  # rule E1
    "db": ("cli.db", "db_app"),
    "request": ("cli.requests", "request_app"),  # A4, C12, C13
    "user": ("cli.users", "user_app"),  # portal users, roles, API tokens
    "prices": ("cli.prices", "prices_app"),  # OT's price list, C3
    "holidays": ("cli.holidays", "holidays_app"),  # OT's holiday lists, A1
    "extras": ("cli.extras", "extras_app"),  # the billable-extras ledger, C3
    "projection": ("cli.projection", "projection_app"),  # the inbox projection, issue 16
}

# The whole command line (tests, CliRunner); built when first asked for, by the module's __getattr__.
app: typer.Typer


def build_app(group: str | None = None) -> typer.Typer:
    """The command line with every group, or with `group` alone (the servers come with every group)."""
    built = typer.Typer(help="TechConnect orchestration service", no_args_is_help=True, add_completion=False)
    if group is None:
        servers.register(built)  # dev, worker, portal, codec-server, inbound (cli/servers.py)
    for name, (module, attribute) in COMMAND_GROUPS.items():
        if group in (None, name):
            built.add_typer(getattr(importlib.import_module(module), attribute), name=name)
    return built


def main() -> None:
    """The `techconnect` command (and `python -m cli`)."""
    runtime.mark_cli_process()
    first = sys.argv[1] if len(sys.argv) > 1 else None
    build_app(first if first in COMMAND_GROUPS else None)()


if not TYPE_CHECKING:  # for mypy, `app` is the annotation above: any other name stays an error
    def __getattr__(name: str) -> typer.Typer:
        if name == "app":
            built = globals()["app"] = build_app()
            return built
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["COMMAND_GROUPS", "app", "build_app", "main"]
