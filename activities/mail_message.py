"""A mail's MIME message: built with the email package's compat32 classes (`email.mime`), flattened once.

Why not `EmailMessage`, the email package's newer API: it parses every header into a structured object as it
is set and folds each again when the message is flattened. A welcome mail took 1.85 ms of the worker's CPU
to build and flatten that way and takes 0.6 ms here (issue 16: an enrolment sends two mails, a request's
opening one, and the worker's CPU is what bounds how many a second it starts). The structure is the one
the newer API built: multipart/alternative (text, then HTML; the HTML inside multipart/related when it
shows images by Content-ID), inside multipart/mixed when files are attached.

Bodies are 7bit when they are ASCII with lines RFC 5322 allows (998 characters), base64 of their UTF-8
otherwise: base64 is C code, where quoted-printable would walk a 20 MB monthly report in Python.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.utils import formataddr, getaddresses

_MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF


@dataclass(frozen=True)
class Envelope:
    """SMTP's MAIL FROM and RCPT TO: taken from the message's From, To, Cc and Bcc, as a relay would."""

    sender: str
    recipients: list[str]


def address_header(value: str) -> str:
    """An address list for a header: display names outside ASCII as RFC 2047 words, the addresses as they are."""
    if value.isascii():
        return value
    return ", ".join(formataddr(pair, charset="utf-8") for pair in getaddresses([value]))


def _part(maintype: str, subtype: str, **params: str) -> MIMEBase:
    part = MIMEBase(maintype, subtype)
    del part["MIME-Version"]  # a header of the message, not of each part
    for name, value in params.items():
        part.set_param(name, value)
    return part


def text_part(text: str, subtype: str = "plain", **params: str) -> MIMEBase:
    part = _part("text", subtype, charset="utf-8", **params)
    if text.isascii() and max(map(len, text.splitlines()), default=0) <= _MAX_LINE:
        part.set_payload(text)
        part["Content-Transfer-Encoding"] = "7bit"
    else:
        part.set_payload(base64.encodebytes(text.encode("utf-8")).decode("ascii"))
        part["Content-Transfer-Encoding"] = "base64"
    return part


def binary_part(content: bytes, maintype: str, subtype: str) -> MIMEBase:
    part = _part(maintype or "application", subtype or "octet-stream")
    part.set_payload(base64.encodebytes(content).decode("ascii"))
    part["Content-Transfer-Encoding"] = "base64"
    return part


def file_part(content: bytes | str, content_type: str, filename: str, disposition: str = "attachment",
              **params: str) -> MIMEBase:
    """A file for multipart/mixed (or an inline image for multipart/related): text as text, the rest base64."""
    maintype, _, subtype = content_type.partition("/")
    if isinstance(content, str):
        part = text_part(content, subtype or "plain", **params)
    else:
        part = binary_part(content, maintype, subtype)
    # RFC 2231 for a name outside ASCII (a document title with accents).
    part.add_header("Content-Disposition", disposition,
                    filename=filename if filename.isascii() else ("utf-8", "", filename))
    return part


def multipart(subtype: str, parts: list[Message]) -> MIMEMultipart:
    outer = MIMEMultipart(subtype, _subparts=parts)
    del outer["MIME-Version"]
    return outer


def envelope_of(message: Message) -> Envelope:
    """The envelope of a message, from its headers (Sender before From, as RFC 5321 relays read it)."""
    sender = getaddresses([str(message.get("Sender") or message.get("From") or "")])
    recipients = [addr for _, addr in getaddresses(
        [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]) if addr]
    return Envelope(sender=sender[0][1] if sender else "", recipients=recipients)


def wire_bytes(message: Message) -> bytes:
    """The message as SMTP's DATA carries it: CRLF line ends, no Bcc (its addresses are in the envelope only)."""
    if "Bcc" in message:
        message = copy.copy(message)  # deleting a header replaces the header list: the caller's stays whole
        del message["Bcc"]
    # as_bytes never writes a body line starting "From " as ">From " (an mbox habit of compat32's generator,
    # which aiosmtplib's own flattening of such a message would keep).
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
