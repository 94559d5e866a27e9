"""Embedded SMTP sink (aiosmtpd) for `make run` and tests: accepts every message and keeps it.

It behaves like a mailbox rather than a relay: a message whose Message-ID it already
holds is accepted (250) but not stored again, as Gmail and Exchange do. That is the
downstream half of the mail activity's at-least-once delivery (see activities/mail.py),
and `received` still counts every accepted transaction so tests can tell the two apart.

Run alone: `python -m devstack.smtp_sink --port 8025 --directory .data/mail`.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.message
import email.parser
import email.policy
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

log = logging.getLogger(__name__)

Predicate = Callable[[email.message.EmailMessage], bool]
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)  # the Message-ID only: cheap


def _parse(raw: bytes) -> email.message.EmailMessage:
    # The email package works in "\n" internally; CRLF left in would leak into get_content().
    parsed = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def _free_port(host: str) -> int:
    # aiosmtpd's Controller cannot bind port 0 (it probes the port it was given), so pick one first.
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self._sink._accept(envelope)


class SmtpSink:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        directory: Path | None = None,
        *,
        fail_with: tuple[int, str] | None = None,
        credentials: dict[str, str] | None = None,
        dedupe: bool = True,
    ) -> None:
        """`port=0` picks a free port; `credentials` (user -> password) offers AUTH without TLS."""
        self.host = host
        self.port = port or _free_port(host)
        self.directory = directory
        # Read on the sink's thread at DATA time, so tests may flip it between sends.
        self.fail_with: tuple[int, str] | None = fail_with
        self.credentials = credentials
        self.dedupe = dedupe
        self.received = 0  # accepted DATA transactions, duplicates included
        self.refused = 0  # DATA transactions answered with `fail_with`
        self.duplicates: list[email.message.EmailMessage] = []
        # Kept as received, parsed when read: parsing every message on the sink's thread cost the process as much
        # CPU as the mail activity spent building it (issue 16's bench runs the sink beside the measured stack).
        self._raw: list[bytes] = []
        self._messages: list[email.message.EmailMessage] = []
        self._seen_ids: set[str] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    # ---- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        if self._controller is not None:
            return
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remember_stored_ids(self.directory)
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            # AUTH offered without TLS (loopback), but not required: aiosmtpd warns on every
            # connection when both are set, and a sink has nothing to protect.
            kwargs.update(authenticator=self._authenticate, auth_required=False, auth_require_tls=False)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        log.info("SMTP sink listening on %s:%s (directory: %s)", self.host, self.port, self.directory)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # start() blocks until the server thread answers; keep the caller's loop free meanwhile.
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # ---- messages -------------------------------------------------------------
    @property
    def messages(self) -> list[email.message.EmailMessage]:
        """A snapshot: the server thread may append while the caller iterates."""
        with self._lock:
            self._messages += [_parse(raw) for raw in self._raw[len(self._messages):]]
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._raw.clear()
            self._messages.clear()
            self.duplicates.clear()
            self._seen_ids.clear()
            self.received = 0
            self.refused = 0

    async def wait_for(
        self,
        predicate: Predicate | None = None,
        count: int = 1,
        timeout: float = 10,  # noqa: ASYNC109 (a polling deadline, read by tests more easily than asyncio.timeout)
    ) -> list[email.message.EmailMessage]:
        """Wait until at least `count` held messages match `predicate` (all messages when None)."""
        deadline = time.monotonic() + timeout
        while True:
            matching = [m for m in self.messages if predicate is None or predicate(m)]
            if len(matching) >= count:
                return matching
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(matching)} of {count} expected messages after {timeout}s "
                    f"(sink holds {len(self.messages)}, received {self.received})"
                )
            await asyncio.sleep(0.02)

    def _remember_stored_ids(self, directory: Path) -> None:
        # A restarted `make run` must still recognise a resend of a message it kept before.
        for path in directory.glob("*.eml"):
            with path.open("rb") as fh:
                message_id = str(_HEADERS.parse(fh).get("Message-ID", "")).strip()  # as _accept reads it
            if message_id:
                with self._lock:
                    self._seen_ids.add(message_id)

    # ---- server side (runs on the controller's thread) --------------------------
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.credentials is not None
            and self.credentials.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        # handled=False lets aiosmtpd send the 535 itself; handled=True with no reply hangs the client.
        return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)

    def _accept(self, envelope: Envelope) -> str:
        failure = self.fail_with
        if failure is not None:
            with self._lock:
                self.refused += 1
            return f"{failure[0]} {failure[1]}"
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        # What a delivering MTA adds, so the stored copy shows the envelope (Bcc included).
        trace = (
            f"Return-Path: <{envelope.mail_from or ''}>\r\nX-Original-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        raw = trace + raw
        message_id = str(_HEADERS.parsebytes(raw).get("Message-ID", "")).strip()
        with self._lock:
            self.received += 1
            if self.dedupe and message_id and message_id in self._seen_ids:
                self.duplicates.append(_parse(raw))
                log.info("SMTP sink: duplicate %s dropped", message_id)
                return "250 OK: duplicate Message-ID, already delivered"
            if message_id:
                self._seen_ids.add(message_id)
            self._raw.append(raw)
            n = len(self._raw)
        if self.directory is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            (self.directory / f"{stamp}-{n}.eml").write_bytes(raw)
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local SMTP sink that keeps every message.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--directory", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sink = SmtpSink(args.host, args.port, args.directory)
    sink.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
