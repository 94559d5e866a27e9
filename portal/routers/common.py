"""What more than one router needs: the programme's time zone, a refusal shown on a form, a list's page."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.calendar import BusinessCalendar
from domain.errors import RuleRefused
from domain.local_time import first_response_promise
from portal import forms
from portal.access import CustomerInReach


def programme_tz(customer: CustomerInReach) -> ZoneInfo:
    """The programme's calendar time zone (rule C16 and the step forms' dates count in it); UTC without one."""
    status = customer.programme.status if customer.programme else None
    name = ((status or {}).get("calendar") or {}).get("timezone") or "UTC"
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def response_promise(customer: CustomerInReach, minutes: int) -> dict[str, object]:
    """Rule C12 as the programme's calendar runs it, for the request pages: "one business hour on your
    programme's calendar (Mon–Fri 09:00–17:00 Europe/Paris)", or 24x7 with an out-of-hours agreement."""
    status = customer.programme.status if customer.programme else None
    try:
        cal = BusinessCalendar.model_validate(((status or {}).get("calendar")) or {})
    except ValueError:  # a projection written by an older version: the defaults (C5) still say the truth
        cal = BusinessCalendar()
    return {"first_response_promise": first_response_promise(cal, minutes),
            "round_the_clock": bool(cal.out_of_hours_agreement_ref)}


def refusal_errors(fields: Sequence[forms.Field], exc: RuleRefused) -> forms.FormErrors:
    """A refusal on the form: each rule violation at its field when there are any, else the message on top."""
    return forms.violation_errors(fields, exc.violations) if exc.violations else forms.FormErrors(top=[exc.message])


def page_number(raw: str | None) -> int:
    """`?page=` of a paged list: 1 for anything that is not a small positive number."""
    return max(1, int(raw)) if raw and raw.isdigit() and len(raw) < 7 else 1
