"""SMTP delivery over aiosmtplib, with failures sorted into "retry later" and "give up".

The activity layer decides what to do with each kind: a transient failure is left to
Temporal's retry policy, a permanent one fails the activity without retrying.
"""

from __future__ import annotations

import email.message
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiosmtplib

from activities.mail_message import envelope_of, wire_bytes

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)


class MailError(Exception):
    """A delivery failure; `code` is the SMTP reply code, or None when no reply came."""

    def __init__(self, message: str, code: int | None = None, text: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.text = text


class TransientMailError(MailError):
    """4xx reply, connection refused/lost, timeout: the same message may go through later."""


class PermanentMailError(MailError):
    """5xx reply: resending the same message to the same relay will fail the same way."""


def _classify(code: int, text: str, what: str) -> MailError:
    # RFC 5321: 4yz is a transient negative completion, 5yz permanent. Anything else
    # at this point is a protocol oddity; retrying is the safer guess.
    message = f"{what}: {code} {text}".strip()
    if 500 <= code < 600:
        return PermanentMailError(message, code, text)
    return TransientMailError(message, code, text)


@dataclass(eq=False)
class SmtpMailer:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    starttls: bool = False
    timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpMailer:
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_user, settings.smtp_password,
                   settings.smtp_starttls, settings.smtp_timeout_seconds)

    async def send(self, message: email.message.Message) -> None:
        """Deliver `message` to the envelope taken from its From/To/Cc/Bcc headers."""
        # Flattened here, once, with the envelope read from the headers (aiosmtplib would copy the message and
        # flatten it again with a policy of its own).
        try:
            envelope = envelope_of(message)
        except ValueError as exc:  # no sender or no recipient: no retry will find one
            raise PermanentMailError(str(exc)) from exc
        try:
            refused, _reply = await aiosmtplib.send(
                wire_bytes(message),
                sender=envelope.sender,
                recipients=envelope.recipients,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                # False, not None: aiosmtplib's None means "upgrade if offered", which
                # would break against relays with certificates we were told not to expect.
                start_tls=self.starttls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Every recipient refused: permanent only if every refusal is permanent.
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentMailError(f"all recipients refused: {detail}", max(codes), detail) from exc
            raise TransientMailError(f"all recipients refused: {detail}", min(codes, default=None), detail) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, exc.message, type(exc).__name__) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Connect errors, timeouts and disconnects carry no reply code: the relay may be back soon.
            raise TransientMailError(f"{type(exc).__name__}: {exc}") from exc
        if refused:
            # Some recipients took the message: retrying would mail them twice, so the
            # refusals are logged rather than raised.
            log.warning(
                "message %s refused for some recipients: %s",
                message.get("Message-ID"),
                {addr: (r.code, r.message) for addr, r in refused.items()},
            )
