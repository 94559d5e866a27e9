"""The inbound SMTP receiver (aiosmtpd) in the running event loop: each message is handed to the
ReplyPoster, which stores it raw before anything else; the sender's server gets 250 once it is
stored, 451 (try again later) when even that failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP, Envelope, Session

from inbound.replies import ReplyPoster

log = logging.getLogger("techconnect.inbound")


class ReplyHandler:
    def __init__(self, poster: ReplyPoster, reply_domain: str) -> None:
        self._poster = poster
        self._domain = reply_domain.lower()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        # Only the reply domain: a receiver open to any address would store whatever is sent to it.
        if address.rpartition("@")[2].lower() != self._domain:
            return f"550 5.1.1 Only mail to the {self._domain} reply addresses is taken here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or (envelope.content if isinstance(envelope.content, bytes)
                                            else str(envelope.content or "").encode())
        try:
            await self._poster.receive(str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos], raw)
        except Exception:  # whatever failed, the sender's server keeps the message and retries
            log.exception("inbound message from %s not stored", envelope.mail_from)
            return "451 4.3.0 Not stored, try again later"
        return "250 2.0.0 Stored"


@asynccontextmanager
async def receiving(poster: ReplyPoster, host: str, port: int, max_bytes: int,
                    reply_domain: str) -> AsyncIterator[int]:
    """Serve SMTP on host:port (0: any free port) until the block ends; yields the bound port.
    Messages left stored but unprocessed by a previous run are processed first."""
    done = await poster.process_pending()
    if done:
        log.info("inbound: %d message(s) stored before a stop processed now", done)
    loop = asyncio.get_running_loop()
    handler = ReplyHandler(poster, reply_domain)
    # Twice the limit is accepted on the wire, so an oversized reply is kept and quarantined, not lost;
    # beyond that the sender's server is refused (552) and tells its user.
    server = await loop.create_server(lambda: SMTP(handler, data_size_limit=max_bytes * 2, enable_SMTPUTF8=True,
                                                   hostname="techconnect-inbound"), host, port)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
