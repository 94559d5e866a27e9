"""What more than one router needs: the programme's time zone and a refusal shown on a form."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.errors import RuleRefused
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


def refusal_errors(fields: Sequence[forms.Field], exc: RuleRefused) -> forms.FormErrors:
    """A refusal on the form: each rule violation at its field when there are any, else the message on top."""
    return forms.violation_errors(fields, exc.violations) if exc.violations else forms.FormErrors(top=[exc.message])
