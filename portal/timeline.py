"""The timeline of the workspace and the programme page (D10, A9): the programme's state judged at the
portal's clock (`PortalState.clock`), in the programme's own time zone. domain/timeline.py computes it,
templates/portal/_timeline.svg.j2 draws it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from domain.local_time import local_date
from domain.program import ProgramStatus
from domain.timeline import Timeline, programme_timeline
from storage.tables import ProgrammeRow

log = logging.getLogger("techconnect.portal")


def of_status(status: ProgramStatus, clock: Callable[[], datetime]) -> Timeline | None:
    try:
        today = local_date(clock(), status.calendar.timezone)
    except (ValueError, KeyError):  # an unknown zone name (ZoneInfoNotFoundError is a KeyError)
        today = local_date(clock(), "UTC")
    return programme_timeline(status, today)


def of_projection(row: ProgrammeRow | None, clock: Callable[[], datetime]) -> Timeline | None:
    """From the stored projection; None without one, or when it cannot be read as today's `ProgramStatus`
    (a row written by an older version: the page shows everything else)."""
    data: dict[str, Any] = (row.status if row is not None else None) or {}
    if not data.get("plan"):
        return None
    try:
        status = ProgramStatus.model_validate(data)
    except ValidationError as exc:
        log.warning("no timeline for %s: its projection does not read as a status (%s)", row and row.customer_id,
                    exc.error_count())
        return None
    return of_status(status, clock)
