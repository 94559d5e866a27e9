"""The inbound receiver with what it needs: the database, Temporal, the outbox for bounces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client

from activities.mail import MailActivities
from config.settings import Settings
from inbound.receiver import receiving
from inbound.replies import ReplyPoster
from storage.db import SessionFactory, make_engine, make_session_factory


def reply_poster(settings: Settings, client: Client, sessions: SessionFactory | None = None) -> ReplyPoster:
    sessions = sessions or make_session_factory(make_engine(settings.effective_database_url))
    return ReplyPoster(settings, sessions, client, MailActivities.from_settings(settings, sessions))


@asynccontextmanager
async def inbound_receiver(settings: Settings, client: Client, sessions: SessionFactory | None = None,
                           port: int | None = None) -> AsyncIterator[int]:
    """Receive replies on settings.inbound_host and `port` (default settings.inbound_port; 0: any free
    port) until the block ends; yields the bound port."""
    poster = reply_poster(settings, client, sessions)
    async with receiving(poster, settings.inbound_host, settings.inbound_port if port is None else port,
                         settings.inbound_max_bytes, settings.reply_domain) as bound:
        yield bound
