"""Server-rendered pages: templates/portal/*.html.j2, one Jinja2 environment, flash messages."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from itsdangerous import BadSignature
from jinja2.runtime import Context

from activities.templating import TEMPLATES_DIR, format_money, local_time
from domain.local_time import local_datetime
from portal import access
from portal.auth import FLASH_COOKIE, Principal, pre_csrf_token, serializer, set_pre_csrf_cookie
from portal.state import get_state
from storage.repositories import as_utc


@jinja2.pass_context
def format_when(context: Context, value: Any, tz: str | None = None, zone_name: bool = False) -> str:
    """A time a person reads: in the programme's time zone with its label ("Thu 3 Dec 2026, 12:25 CET"),
    through the mail templates' own filter (`activities.templating.local_time`), so a page and a mail
    agree. The zone is `tz`, else the page's `timezone` (set by `render` from the customer's
    programme), else UTC; `zone_name` adds "(Europe/Paris)" where a deadline is promised. Staff read
    customers of many zones: UTC is added beside."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if not isinstance(value, datetime):
        return format_day(value)
    moment = as_utc(value)
    label = local_time(context, moment, tz, zone_name)
    principal = context.get("principal")
    # Judged by the offset, not the label: a zone without a letter abbreviation reads "UTC+04" (Asia/Dubai),
    # and its staff reader still needs the UTC time beside it.
    zone = str(tz or context.get("timezone") or "UTC")
    if getattr(principal, "is_staff", False) and local_datetime(moment, zone).utcoffset() != timedelta(0):
        label += f" ({moment:%H:%M} UTC)"
    return label


def page_timezone(customer: Any) -> str:
    """The programme calendar's zone of the customer a page is about (every time on it is shown in
    it, rules C5 and C12); UTC on pages about no one customer, or without a programme."""
    programme = getattr(customer, "programme", None)
    status = getattr(programme, "status", None) or {}
    name = str((status.get("calendar") or {}).get("timezone") or "UTC")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "UTC"
    return name


def format_day(value: Any) -> str:
    """A date as "4 Jan 2027"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return f"{value.day} {value:%b %Y}"
    return str(value)


def humanise(value: Any) -> str:
    return str(value or "").replace("_", " ")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=True,  # every portal page is HTML; user text is always escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=format_when, local=local_time, day=format_day, money=format_money, human=humanise)
    return env


def set_flash(request: Request, response: RedirectResponse | HTMLResponse, text: str, tone: str = "good") -> None:
    value = serializer(request, "tc-flash").dumps({"text": text, "tone": tone})
    response.set_cookie(FLASH_COOKIE, value, max_age=60, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


def redirect(request: Request, url: str, flash: str | None = None, tone: str = "good") -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if flash:
        set_flash(request, response, flash, tone)
    return response


def _take_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = serializer(request, "tc-flash").loads(raw, max_age=120)
    except BadSignature:
        return None
    return data if isinstance(data, dict) else None


def nav_items(principal: Principal | None) -> list[tuple[str, str]]:
    if principal is None:
        return []
    items: list[tuple[str, str]] = []
    if principal.customer_id:
        items.append(("Workspace", f"/workspace/{principal.customer_id}"))
    if access.may(principal, access.Action.desk):
        items.append(("Desk", "/desk"))
    if access.may(principal, access.Action.quarantine):
        items.append(("Mail quarantine", "/desk/quarantine"))
    if access.may(principal, access.Action.inbox):
        items.append(("Inbox", "/inbox"))
    if principal.role.value in ("tl",):
        items.append(("My programmes", "/programmes"))
    if access.may(principal, access.Action.ops_pages):
        items += [("Programmes", "/programmes"), ("Notices", "/ops/notices"), ("Billable extras", "/ops/extras")]
    if access.may(principal, access.Action.price_list):
        items.append(("Price list", "/ops/prices"))
    if access.may(principal, access.Action.holiday_lists):
        items.append(("Holidays", "/ops/holidays"))
    if access.may(principal, access.Action.audit_log):
        items.append(("Audit log", "/ops/audit"))
    return items


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           title: str = "") -> HTMLResponse:
    principal: Principal | None = getattr(request.state, "principal", None)
    state = get_state(request)
    csrf = principal.csrf_token if principal is not None and principal.csrf_token else pre_csrf_token(request)
    flash = _take_flash(request)
    ctx: dict[str, Any] = {
        "request": request, "principal": principal, "csrf_token": csrf, "flash": flash, "title": title,
        "nav": nav_items(principal), "path": request.url.path, "temporal_url": state.workflow_url,
        "errors": None, "values": {},
    }
    ctx.update(context or {})
    ctx.setdefault("timezone", page_timezone(ctx.get("customer")))
    html = environment().get_template(f"portal/{template}").render(ctx)
    response = HTMLResponse(html, status_code=status)
    set_pre_csrf_cookie(request, response)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    # Pages are per person: never cached by a shared proxy, never framed by another site.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    # Filed documents carry inline styles and data: images (charts); no page runs inline script.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
    return response
