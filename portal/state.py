"""What every request of the portal shares: settings, database, Temporal client, mail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import HTTPException, Request
from temporalio.client import Client

from activities.mail import MailActivities
from config.settings import Settings
from storage.db import SessionFactory
from storage.repositories.clock import utcnow


class TemporalUnavailable(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)


@dataclass
class PortalState:
    settings: Settings
    sessions: SessionFactory
    secret: str
    mail: MailActivities
    client: Client | None = None
    # The time the contacts' workspace access is judged at (D10: read-only until access_ends_at).
    clock: Callable[[], datetime] = field(default=utcnow)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def temporal(self) -> Client:
        """The one Temporal client (config/temporal.py), connected on first use.

        Pages that read only the database keep working while Temporal is down.
        """
        if self.client is not None:
            return self.client
        async with self._lock:
            if self.client is None:
                from config.temporal import connect

                try:
                    self.client = await connect(self.settings)
                except RuntimeError as exc:
                    raise TemporalUnavailable(
                        f"cannot reach Temporal at {self.settings.temporal.address}: {exc}") from None
            return self.client

    def workflow_url(self, workflow_id: str) -> str:
        """The workflow's history in the Temporal UI (for admins and support staff)."""
        ns = self.settings.temporal.namespace
        return f"{self.settings.ui_url.rstrip('/')}/namespaces/{ns}/workflows/{workflow_id}"


def get_state(request: Request) -> PortalState:
    state: PortalState = request.app.state.portal
    return state
