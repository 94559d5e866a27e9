"""`techconnect user ...`: portal users, their roles, passwords and API tokens.

Same exit codes as the rest of the command line: 0 success, 2 refused (duplicate
e-mail, weak password, a contact without a customer...), 1 other failures.

Passwords are hashed by storage/credentials.py, the code the portal verifies them with (imported
when a command needs it; it holds no web framework).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli import runtime
from config.settings import Settings
from domain.errors import Refused, RuleRefused
from starter.database import database

user_app = typer.Typer(help="Portal users, roles and API tokens", no_args_is_help=True)

ROLE_HELP = "contact | tl | gts | support_rep | support_manager | ops | admin"


def _run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run a user command: a refusal exits 2, a database out of reach exits 1 (no Temporal involved)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from storage.credentials import WeakPassword
        from storage.users import UserError

        try:
            asyncio.run(fn(*args, **kwargs))
        except (RuleRefused, UserError, WeakPassword) as exc:
            runtime.fail(str(exc), 2)
        except OSError as exc:
            runtime.err.print(f"[bold red]error:[/] cannot reach the database: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper


def _read_password(password: str | None, password_stdin: bool, required: bool) -> str | None:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if password is not None:
        return password
    if not required:
        return None
    if not sys.stdin.isatty():
        raise Refused("give a password with --password or --password-stdin")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@user_app.command("add")
@_run
async def user_add(
    email: str = typer.Argument(..., help="E-mail address; also the sign-in name"),
    name: str = typer.Option(..., "--name", help="Full name"),
    role: str = typer.Option(..., "--role", help=ROLE_HELP),
    customer: str | None = typer.Option(None, "--customer", help="Customer ID (contacts only)"),
    tl_id: str | None = typer.Option(None, "--tl-id", help="The TL ID programmes use, e.g. tl-alice (TLs only)"),
    password: str | None = typer.Option(None, "--password", help="Prompted for when omitted (except contacts)"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a portal user. Contacts may have no password: they sign in with a link mailed to them."""
    from storage.credentials import hash_password
    from storage.users import Role, add_user

    try:
        the_role = Role(role)
    except ValueError:
        raise Refused(f"unknown role {role!r}; one of: {ROLE_HELP}") from None
    secret = _read_password(password, password_stdin, required=the_role != Role.contact)
    password_hash = hash_password(secret) if secret else None
    async with database(Settings()) as sessions, sessions() as session, session.begin():
        row = (await add_user(session, email=email, name=name, role=the_role, customer_id=customer,
                              technical_lead_id=tl_id, password_hash=password_hash)).row
        data = {"id": row.id, "email": row.email, "name": row.name, "role": row.role,
                "customer_id": row.customer_id, "technical_lead_id": row.technical_lead_id,
                "password": row.password_hash is not None}
    if as_json:
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        runtime.out.print(escape(f"added {data['role']} {data['email']} (id {data['id']})"), highlight=False)


@user_app.command("password")
@_run
async def user_password(
    email: str,
    password: str | None = typer.Option(None, "--password"),
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set (or reset) a user's password."""
    from storage.credentials import hash_password
    from storage.users import get_user_by_email, set_password_hash

    secret = _read_password(password, password_stdin, required=True)
    assert secret is not None
    async with database(Settings()) as sessions, sessions() as session, session.begin():
        row = await get_user_by_email(session, email)
        if row is None:
            raise Refused(f"no user with e-mail {email}")
        await set_password_hash(session, row.id, hash_password(secret))
    runtime.out.print(escape(f"password of {email} set"), highlight=False)


@user_app.command("token")
@_run
async def user_token(
    email: str,
    name: str = typer.Option("api", "--name", help="What the token is for"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create an API bearer token for a user (shown once; only its digest is stored)."""
    from storage.credentials import digest, new_api_token
    from storage.users import create_api_token, get_user_by_email

    token, prefix = new_api_token()
    async with database(Settings()) as sessions, sessions() as session, session.begin():
        row = await get_user_by_email(session, email)
        if row is None or not row.active:
            raise Refused(f"no active user with e-mail {email}")
        await create_api_token(session, user_id=row.id, name=name, token_hash=digest(token), prefix=prefix)
    if as_json:
        sys.stdout.write(json.dumps({"email": email, "name": name, "token": token}) + "\n")
    else:
        runtime.out.print(f"token for {escape(email)} (shown once): {token}", highlight=False)
        runtime.out.print("use it as: curl -H 'Authorization: Bearer <token>' http://127.0.0.1:8000/api/me",
                   highlight=False)


@user_app.command("list")
@_run
async def user_list(
    role: str | None = typer.Option(None, "--role", help=ROLE_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Portal users and their roles."""
    from storage.users import list_users

    async with database(Settings()) as sessions, sessions() as session:
        rows = [{"id": u.id, "email": u.email, "name": u.name, "role": u.role, "customer_id": u.customer_id,
                 "technical_lead_id": u.technical_lead_id, "active": u.active,
                 "password": u.password_hash is not None} for u in await list_users(session, role=role)]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    t = Table("email", "name", "role", "customer", "TL ID", "active")
    for r in rows:
        t.add_row(escape(str(r["email"])), escape(str(r["name"])), str(r["role"]), str(r["customer_id"] or ""),
                  str(r["technical_lead_id"] or ""), "yes" if r["active"] else "no")
    runtime.out.print(t)


@user_app.command("disable")
@_run
async def user_disable(email: str) -> None:
    """Deactivate a user: their sessions end, their tokens stop working."""
    from storage.users import get_user_by_email, set_active

    async with database(Settings()) as sessions, sessions() as session, session.begin():
        row = await get_user_by_email(session, email)
        if row is None:
            raise Refused(f"no user with e-mail {email}")
        await set_active(session, row.id, False)
    runtime.out.print(escape(f"{email} disabled"), highlight=False)


__all__ = ["user_app"]
