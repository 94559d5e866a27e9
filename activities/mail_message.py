"""A mail's MIME message: built with the email package's compat32 classes (`email.mime`), flattened once.

Why not `EmailMessage`, the email package's newer API: it parses every header into a structured object as it
is set and folds each again when the message is flattened. A welcome mail took 1.85 ms of the worker's CPU
to build and flatten that way and takes 0.38 ms here (issue 16: an enrolment sends two mails, a request's
opening one, and the worker's CPU is what bounds how many a second it starts). The structure is the one
the newer API built: multipart/alternative (text, then HTML; the HTML inside multipart/related when it
shows images by Content-ID), inside multipart/mixed when files are attached.

Bodies are 7bit when they are ASCII with lines RFC 5322 allows (998 characters), base64 of their UTF-8
otherwise: base64 is C code, where quoted-printable would walk a 20 MB monthly report in Python.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.utils import formataddr, getaddresses
from urllib.parse import quote

_MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what SMTP takes for a line end (str.splitlines takes more)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not 7bit text (RFC 2045 2.7)
_PARAMETER_CHUNK = 60  # percent-encoded characters of a file name a header line carries (RFC 2231 3)


class UndeliverableAddress(ValueError):
    """An address no relay takes without SMTPUTF8 (a local part outside ASCII): retrying cannot help."""


@dataclass(frozen=True)
class Envelope:
    """SMTP's MAIL FROM and RCPT TO, taken from the message's headers."""

    sender: str
    recipients: list[str]


def ascii_address(address: str) -> str:
    """An address as a relay without SMTPUTF8 takes it: an internationalised domain in IDNA (punycode)."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        raise UndeliverableAddress(f"{address!r}: a local part outside ASCII needs SMTPUTF8")
    return f"{local}@{domain.encode('idna').decode('ascii')}"


def address_header(value: str) -> str:
    """An address list for a header: display names outside ASCII as RFC 2047 words (several when long, each
    within its 75 characters), domains outside ASCII in IDNA."""
    if value.isascii():
        return value
    out = []
    for name, address in getaddresses([value]):
        address = ascii_address(address)
        if name.isascii():
            out.append(formataddr((name, address)))
        else:
            words = " ".join(Header(name, "utf-8").encode(linesep=" ").split())
            out.append(f"{words} <{address}>")
    return ", ".join(out)


def _disposition(part: MIMEBase, disposition: str, filename: str) -> None:
    """Content-Disposition with the file name; outside ASCII in RFC 2231 continuations (filename*0*, filename*1*,
    ...), so a long name in a script that percent-encodes nine characters a letter still folds within SMTP's lines."""
    if filename.isascii():
        part.add_header("Content-Disposition", disposition, filename=filename)
        return
    encoded = quote(filename, safe="")
    chunks, at = [], 0
    while at < len(encoded):
        end = min(at + _PARAMETER_CHUNK, len(encoded))
        while end < len(encoded) and "%" in encoded[end - 2:end]:  # never cut a %XX triplet
            end -= 1
        chunks.append(encoded[at:end])
        at = end
    charset = "utf-8''"  # RFC 2231: charset'language' before the first piece only
    params = "; ".join(f"filename*{n}*={charset if n == 0 else ''}{c}" for n, c in enumerate(chunks))
    part["Content-Disposition"] = f"{disposition}; {params}"


def _part(maintype: str, subtype: str, **params: str) -> MIMEBase:
    part = MIMEBase(maintype, subtype)
    del part["MIME-Version"]  # a header of the message, not of each part
    for name, value in params.items():
        part.set_param(name, value)
    return part


def text_part(text: str, subtype: str = "plain", **params: str) -> MIMEBase:
    part = _part("text", subtype, charset="utf-8", **params)
    if (text.isascii() and not _CONTROL.search(text)
            and max(map(len, _LINE_BREAK.split(text)), default=0) <= _MAX_LINE):
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
    _disposition(part, disposition, filename)
    return part


def multipart(subtype: str, parts: list[Message]) -> MIMEMultipart:
    outer = MIMEMultipart(subtype, _subparts=parts)
    del outer["MIME-Version"]
    return outer


def envelope_of(message: Message) -> Envelope:
    """The envelope from the headers, as SMTP clients read it (aiosmtplib's `send_message` too): Sender, else
    From; To, Cc and Bcc. Without a sender or a recipient there is nothing to send (ValueError)."""
    senders = [addr for _, addr in getaddresses([str(message.get("Sender") or message.get("From") or "")]) if addr]
    recipients = [addr for _, addr in getaddresses(
        [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]) if addr]
    if not senders or not recipients:
        raise ValueError(f"no envelope: sender {senders}, recipients {recipients}")
    return Envelope(sender=senders[0], recipients=recipients)


def wire_bytes(message: Message) -> bytes:
    """The message as SMTP's DATA carries it: CRLF line ends, no Bcc (its addresses are in the envelope only)."""
    if "Bcc" in message:
        message = copy.copy(message)  # deleting a header replaces the header list: the caller's stays whole
        del message["Bcc"]
    # as_bytes never writes a body line starting "From " as ">From " (an mbox habit of compat32's generator,
    # which aiosmtplib's own flattening of such a message would keep).
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
