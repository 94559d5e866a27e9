"""The one Jinja2 environment for mail and documents (templates/mail, templates/documents)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jinja2
from jinja2.runtime import Context

from domain.local_time import local_time_label

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


def format_date(value: Any) -> str:
    """ISO date or datetime (string or object) -> "4 January 2027"; unparsable input is shown as is."""
    if value is None:
        # Workflows pass None for a step with no agreed date yet; "None" would reach the customer.
        return "not set"
    if isinstance(value, str):
        text: str = value
        try:
            value = datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)
        except ValueError:
            return text
    if isinstance(value, datetime):
        # Explicit UTC offset: a customer in another time zone must not guess.
        return f"{value.day} {value:%B %Y, %H:%M} {value.tzname() or 'UTC'}"
    if isinstance(value, date):
        return f"{value.day} {value:%B %Y}"
    return str(value)


def _instant(value: Any) -> datetime | None:
    """A datetime, or an ISO date-time string (as workflows pass them in mail contexts); else None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and "T" in value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@jinja2.pass_context
def local_time(context: Context, value: Any, timezone: str | None = None,
               zone_name: bool = False) -> str:
    """The one time filter of mails, documents and portal pages: an instant in the programme's
    time zone, labelled ("Thu 3 Dec 2026, 12:25 CET"), so no template formats a time itself.

    The zone is the argument, else the template context's `timezone` (the programme calendar's,
    set by workflows in mail contexts and by the portal's routes), else UTC, still labelled.
    A date or anything unparsable is left to `format_date` / shown as is.
    """
    if value is None or value == "":
        return "not set"
    moment = _instant(value)
    if moment is None:
        return format_date(value)
    zone = timezone or context.get("timezone") or "UTC"
    return local_time_label(moment, str(zone), zone_name=zone_name)


def format_money(value: Any) -> str:
    """{"amount": "48000.00", "currency": "EUR"} -> "EUR 48,000.00"."""
    if isinstance(value, dict):
        amount, currency = value.get("amount"), value.get("currency", "")
    else:
        amount, currency = value, ""
    try:
        text = f"{Decimal(str(amount)):,.2f}"
    except (InvalidOperation, ValueError):
        text = str(amount)
    return f"{currency} {text}".strip()


def format_person(value: Any) -> str:
    """{"name", "email"} -> "Alice Martin <alice@support.example>"."""
    if isinstance(value, dict):
        name, address = value.get("name", ""), value.get("email", "")
        return f"{name} <{address}>" if name and address else str(name or address)
    return str(value)


def make_template_environment(path: Path | None = None) -> jinja2.Environment:
    """Loader over the whole templates/ folder, so `mail/...` and `documents/...` share filters and layouts."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path or TEMPLATES_DIR)),
        # Only HTML is escaped: subjects and text bodies are not markup, and escaping
        # them would put "&amp;" in front of the customer.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2", "htm"), default=False),
        # A missing context key is a bug in the caller, not an empty string in a customer's mail.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["date"] = format_date
    env.filters["money"] = format_money
    env.filters["person"] = format_person
    env.filters["local"] = local_time
    return env
