"""`techconnect`: the command line for operations staff and Technical Leads.

Exit codes are a stable interface: 0 success, 2 a rule or a check refused the
request (the message names the rule and the numbers), 1 any other failure; `projection check` says 3
when the projection differs from the workflows.
`--json` prints machine-readable output on stdout. One module per command group, assembled here.
"""

from __future__ import annotations

import typer

from cli import servers
from cli.db import db_app, maintenance_app
from cli.extras import extras_app
from cli.holidays import holidays_app
from cli.prices import prices_app
from cli.programs import notice_app, program_app, step_app
from cli.projection import projection_app
from cli.requests import request_app
from cli.users import user_app

app = typer.Typer(help="TechConnect orchestration service", no_args_is_help=True, add_completion=False)
servers.register(app)  # dev, worker, portal, codec-server (cli/servers.py)
app.add_typer(program_app, name="program")  # cli/programs.py
app.add_typer(step_app, name="step")  # cli/programs.py
app.add_typer(notice_app, name="notice")  # cli/programs.py
app.add_typer(maintenance_app, name="maintenance")  # cli/db.py
app.add_typer(db_app, name="db")  # cli/db.py
app.add_typer(request_app, name="request")  # cli/requests.py (A4, C12, C13)
app.add_typer(user_app, name="user")  # cli/users.py (portal users, roles, API tokens)
app.add_typer(prices_app, name="prices")  # cli/prices.py (OT's price list, C3)
app.add_typer(holidays_app, name="holidays")  # cli/holidays.py (OT's holiday lists, A1)
app.add_typer(extras_app, name="extras")  # cli/extras.py (the billable-extras ledger, C3)
app.add_typer(projection_app, name="projection")  # cli/projection.py (the inbox projection, issue 16)


def main() -> None:
    app()


__all__ = ["app", "main"]
