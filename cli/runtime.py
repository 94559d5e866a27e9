"""What every command group shares: the consoles, exit codes, `--json` output, reading files, the client.

Exit codes are a stable interface: 0 success, 2 a rule or a check refused the request (the
message names the rule and the numbers), 1 any other failure. Command modules call
`runtime.client_for` and print to `runtime.out` through the module, so a test that swaps
either swaps it for every command.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import date
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from config.settings import Settings
from domain.errors import Refused, RuleRefused

if TYPE_CHECKING:
    from temporalio.client import Client

err = Console(stderr=True)
out = Console()

# Set once this process has created a Temporal client (see `finish`).
_temporal_client_created = False
# Set when this process is the `techconnect` command itself (console script or `python -m cli`), not the
# app invoked in-process (tests, CliRunner).
_cli_process = False


def mark_cli_process() -> None:
    global _cli_process
    _cli_process = True


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async command: a refusal exits 2, Temporal or a database out of reach exits 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            asyncio.run(fn(*args, **kwargs))
        except RuleRefused as exc:
            fail(str(exc), 2)
        except (ConnectionError, OSError) as exc:
            fail(f"cannot reach a service: {exc}", 1)
        except RuntimeError as exc:
            if "connect" in str(exc).lower():
                fail(f"cannot reach Temporal ({Settings().temporal.address}): {exc}", 1)
            raise
        except Exception as exc:
            _fail_if_temporal_error(exc)
            if _is_database_error(exc):
                # Not the URL: it may hold a password.
                fail(f"database error: {getattr(exc, 'orig', None) or str(exc).splitlines()[0]}", 1)
            raise
        finish(0)

    return wrapper


def _is_database_error(exc: BaseException) -> bool:
    # By module name: importing SQLAlchemy here would slow every command down.
    return any(cls.__module__.startswith("sqlalchemy.") for cls in type(exc).__mro__)


def _fail_if_temporal_error(exc: BaseException) -> None:
    """A refusal or an outage of Temporal's service, told as such (exit 1)."""
    # Only a command that loaded Temporal's client can raise its errors; the database commands never
    # import it (issue 16: `step list` starts in under a second).
    if "temporalio.service" not in sys.modules:
        return
    from temporalio.service import RPCError, RPCStatusCode

    if not isinstance(exc, RPCError):
        return
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        fail(f"cannot reach Temporal ({Settings().temporal.address}): {exc.message or exc}", 1)
    fail(f"Temporal refused the request ({exc.status.name if exc.status else 'unknown status'}): "
         f"{exc.message or exc}", 1)


def finish(code: int) -> None:
    """End the command with `code`.

    The Temporal client's Rust runtime keeps threads that may call into Python while the
    interpreter finalizes, which aborts the process now and then (SIGABRT/SIGSEGV instead
    of the exit code; temporalio/sdk-python#300). A CLI process that created a client
    therefore leaves without interpreter teardown, once its output is flushed.
    """
    if _temporal_client_created and _cli_process:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    if code:
        raise typer.Exit(code)


def fail(message: str, code: int) -> NoReturn:
    # The message quotes user input (file contents, IDs): never read it as rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    finish(code)
    raise typer.Exit(code)  # finish() has exited already; this line satisfies NoReturn


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        human()


def load_document(path: Path) -> Any:
    """JSON or YAML by extension; errors name the line."""
    try:
        # utf-8-sig: editors on Windows often save a byte-order mark, which json refuses.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise Refused(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            problem = getattr(exc, "problem", None) or "syntax error"
            context = getattr(exc, "context", None)
            raise Refused(f"{path}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
                          + (f" ({context})" if context else "")) from None
        raise Refused(f"{path}: invalid YAML: {exc}") from None


async def client_for(settings: Settings) -> Client:
    from config.temporal import connect

    global _temporal_client_created
    _temporal_client_created = True  # the Rust runtime starts with the first connect attempt
    return await connect(settings)


def who() -> str:
    """Who runs the command, for the `--by` of an import (default: the login name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def check_date(option: str, value: str) -> None:
    """A YYYY-MM-DD option, refused (exit 2) before anything connects."""
    try:
        date.fromisoformat(value)
    except ValueError:
        raise Refused(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None
