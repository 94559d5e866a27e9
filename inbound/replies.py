"""What becomes of one inbound message: stored raw first (so a crash loses nothing), then checked
(reply token, request, sender, size), trimmed of the quoted part, and posted to the request's thread
as the `add_comment` Update, or quarantined with the reason and the sender told once.

A message delivered twice (same Message-ID) has one row and is posted once; the Update carries an
id derived from the Message-ID, so a post retried after a crash is not posted twice either."""

from __future__ import annotations

import email
import email.message
import email.policy
import hashlib
import logging
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr

from mailparser_reply import EmailReplyParser
from sqlalchemy import func, select
from temporalio.client import Client

from activities.faults import INBOUND_AFTER_STORE, maybe_crash
from activities.mail import MailActivities
from config.settings import Settings, reply_secret
from domain.activities import MailRequest
from domain.attachments import MAX_ATTACHMENTS, attachment_refused, clean_filename
from domain.errors import NotFound, RuleRefused
from domain.reply_address import request_of_reply
from domain.request import AddComment, AttachmentRef, AuthorRole
from starter.requests import update_request
from storage.db import SessionFactory
from storage.repositories.attachments import drop_attachments_of, keep_attachment
from storage.repositories.inbound import list_inbound, mark_inbound, store_inbound
from storage.repositories.programmes import closed_workspace
from storage.tables import ContactRow, InboundMessageRow, ProgrammeRow, SupportRequestRow
from storage.users import Role, get_user_by_email

log = logging.getLogger("techconnect.inbound")

STAFF = frozenset({Role.support_rep, Role.support_manager, Role.ops, Role.admin})
TRIMMER = EmailReplyParser(languages=["en", "fr", "de", "es", "it", "nl"])


@dataclass(frozen=True)
class Author:
    by: str
    role: AuthorRole


class Quarantined(Exception):
    """The reason a message is not posted (shown to ops and in the bounce)."""

    def __init__(self, reason: str, bounce: bool = True) -> None:
        super().__init__(reason)
        self.bounce = bounce


def spoofed(message: email.message.EmailMessage) -> bool:
    """The From names the author, so a relay's verdict that it is forged (RFC 8601 Authentication-Results,
    added by the relay in front of the receiver) quarantines the message; nobody is told (backscatter)."""
    verdicts = " ".join(str(v) for v in message.get_all("Authentication-Results", [])).lower()
    return "dmarc=fail" in verdicts or "spf=fail" in verdicts


def automatic(message: email.message.EmailMessage, mail_from: str) -> bool:
    """RFC 3834 and common practice: auto-replies, lists and bulk mail are neither posted nor answered
    (an out-of-office reply would otherwise resume a pending request and mail the TL back and forth)."""
    return (not mail_from.strip("<>") or str(message.get("Auto-Submitted", "no")).lower() != "no"
            or str(message.get("Precedence", "")).lower() in {"bulk", "junk", "list", "auto_reply"}
            or any(message.get(h) is not None for h in ("List-Id", "X-Autoreply", "X-Autorespond")))


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def message_id_of(message: email.message.EmailMessage, raw: bytes) -> str:
    given = " ".join(str(message.get("Message-ID", "")).split())
    return given[:998] if given else f"<sha256-{hashlib.sha256(raw).hexdigest()}@inbound.techconnect>"


def reply_text(message: email.message.EmailMessage) -> str:
    """The new part of the reply: the plain body without the quoted mail below it."""
    body = message.get_body(("plain",))
    if not isinstance(body, email.message.EmailMessage):
        raise Quarantined("the message has no plain-text part to post")
    try:
        content = str(body.get_content())
    except (LookupError, UnicodeError, ValueError) as err:  # an unknown charset, a broken encoding
        raise Quarantined(f"the message's text cannot be read: {err}") from None
    text = str(TRIMMER.parse_reply(text=content)).strip()
    if not text:
        raise Quarantined("the reply is empty once the quoted message is taken away")
    return text


@dataclass(frozen=True)
class Attachment:
    part: int
    filename: str
    content_type: str
    content: bytes


def attachments_of(message: email.message.EmailMessage) -> tuple[list[Attachment], list[str]]:
    """(the attachments kept: allowed type, under the size limit; the names of the others)."""
    kept: list[Attachment] = []
    dropped: list[str] = []
    for n, part in enumerate(message.iter_attachments(), 1):
        assert isinstance(part, email.message.EmailMessage)
        name = clean_filename(part.get_filename() or "", f"attachment-{n}")
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        if attachment_refused(name, part.get_content_type(), len(content)) is None and len(kept) < MAX_ATTACHMENTS:
            kept.append(Attachment(n, name, part.get_content_type(), content))
        else:
            dropped.append(f"{name} ({part.get_content_type()}, {len(content)} bytes)")
    return kept, dropped


class ReplyPoster:
    """Turns stored inbound messages into posts or quarantine entries, with injected dependencies."""

    def __init__(self, settings: Settings, sessions: SessionFactory, client: Client, mail: MailActivities) -> None:
        self._settings = settings
        self._sessions = sessions
        self._client = client
        self._mail = mail
        self._secret = reply_secret(settings)

    async def receive(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> InboundMessageRow:
        """Store first, then process. A message already processed (delivered again) is left as it is."""
        message = parse(raw)
        message_id = message_id_of(message, raw)
        async with self._sessions() as session, session.begin():
            stored = await store_inbound(session, message_id=message_id, mail_from=mail_from, rcpt_to=rcpt_tos,
                                         raw=raw)
        maybe_crash(INBOUND_AFTER_STORE)  # crash tests: stored, nothing else done
        if stored.row.status != "received":
            log.info("inbound %s delivered again: already %s", message_id, stored.row.status)
            return stored.row
        return await self.process(stored.row, message)

    async def process_pending(self) -> int:
        """Messages stored but not processed (the receiver stopped in between): processed now. One that
        cannot be posted yet (Temporal out of reach) stays stored for the next start or delivery."""
        async with self._sessions() as session:
            pending = await list_inbound(session, status="received", with_raw=True)
        done = 0
        for row in reversed(pending):
            try:
                await self.process(row)
                done += 1
            except Exception:
                log.exception("inbound %s left stored, not processed", row.message_id)
        return done

    async def process(self, row: InboundMessageRow,
                      message: email.message.EmailMessage | None = None) -> InboundMessageRow:
        """Posted or quarantined; an error of Temporal or the database propagates (the row stays
        "received": the sender's server is told to try again, and the next start processes it)."""
        message = parse(row.raw) if message is None else message
        sender = parseaddr(str(message.get("From", "")))[1].strip().lower() or row.mail_from.lower()
        tracking: str | None = None
        try:
            if automatic(message, row.mail_from):
                raise Quarantined("an automatic message (auto-reply, list or bulk mail) is not posted", bounce=False)
            if spoofed(message):
                raise Quarantined("the relay found the sender's address forged (DMARC or SPF fail): the From "
                                  "cannot name the author", bounce=False)
            if row.size > self._settings.inbound_max_bytes:
                raise Quarantined(f"the message is {row.size} bytes, more than {self._settings.inbound_max_bytes}")
            tracking = self._tracking_number(row)
            author = await self._author(tracking, sender)
            text = reply_text(message)
            kept, dropped = attachments_of(message)
            if dropped:
                text = f"{text}\n\nNot kept (type or size): {', '.join(dropped)}"
            refs = await self._keep(row, tracking, kept)
            await self._post(row, tracking, author, text[:20_000], refs)
        except Quarantined as why:
            await self._quarantine(row, message, sender, str(why), tracking, why.bounce)
        else:
            async with self._sessions() as session, session.begin():
                await mark_inbound(session, row.id, status="posted", tracking_number=tracking)
            log.info("inbound %s posted to %s by %s", row.message_id, tracking, sender)
        async with self._sessions() as session:
            refreshed = await session.get(InboundMessageRow, row.id, populate_existing=True)
        assert refreshed is not None
        return refreshed

    def _tracking_number(self, row: InboundMessageRow) -> str:
        reasons = []
        for _, address in getaddresses(row.rcpt_to.split(",")):
            tracking, why = request_of_reply(address, self._secret, self._settings.reply_domain)
            if tracking:
                return tracking
            reasons.append(why)
        raise Quarantined("; ".join(reasons) or "no recipient")

    async def _author(self, tracking: str, sender: str) -> Author:
        async with self._sessions() as session:
            request = await session.get(SupportRequestRow, tracking, populate_existing=True)
            if request is None:
                raise Quarantined(f"there is no request {tracking}")
            if request.state == "closed":
                raise Quarantined(f"request {tracking} is closed: a reply to it is not posted")
            contact = await session.scalar(select(ContactRow.id).where(
                ContactRow.customer_id == request.customer_id, func.lower(ContactRow.email) == sender,
                ContactRow.active.is_(True)))
            if contact is not None:
                if await closed_workspace(session, request.customer_id) is not None:
                    # Rule D10: a closed programme's contacts read their workspace, they write nothing.
                    raise Quarantined(f"the programme of customer {request.customer_id} is closed: "
                                      "its contacts' replies are not posted")
                return Author(sender, AuthorRole.customer)
            user = await get_user_by_email(session, sender)
            programme = await session.get(ProgrammeRow, request.customer_id)
        if user is not None and user.active and user.role == Role.tl and programme is not None \
                and user.technical_lead_id == programme.technical_lead_id:
            return Author(programme.technical_lead_id, AuthorRole.technical_lead)
        if user is not None and user.active and user.role in STAFF:
            return Author(sender, AuthorRole.staff)
        raise Quarantined(f"{sender} is not a contact of customer {request.customer_id}, nor staff")

    async def _keep(self, row: InboundMessageRow, tracking: str, kept: list[Attachment]) -> list[AttachmentRef]:
        refs = []
        async with self._sessions() as session, session.begin():
            for a in kept:
                stored = await keep_attachment(session, tracking_number=tracking, inbound_message_id=row.id,
                                               part=a.part, filename=a.filename, content_type=a.content_type,
                                               content=a.content)
                refs.append(AttachmentRef(id=stored.id, filename=stored.filename, content_type=stored.content_type,
                                          size=stored.size))
        return refs

    async def _post(self, row: InboundMessageRow, tracking: str, author: Author, text: str,
                    attachments: list[AttachmentRef]) -> None:
        comment = AddComment(by=author.by, via="mail", message=text, role=author.role, attachments=attachments)
        # The Update id comes from the Message-ID: posted again after a crash, Temporal answers the first.
        update_id = "mail-" + hashlib.sha256(row.message_id.encode()).hexdigest()[:32]
        try:
            await update_request(self._client, tracking, "add_comment", comment, update_id=update_id)
        except NotFound:
            raise Quarantined(f"request {tracking} is closed: a reply to it is not posted") from None
        except RuleRefused as refused:
            raise Quarantined(refused.message) from None

    async def _quarantine(self, row: InboundMessageRow, message: email.message.EmailMessage, sender: str,
                          reason: str, tracking: str | None, bounce: bool) -> None:
        async with self._sessions() as session, session.begin():
            await mark_inbound(session, row.id, status="quarantined", reason=reason, tracking_number=tracking)
            await drop_attachments_of(session, row.id)  # kept for a post that did not happen
        log.warning("inbound %s from %s quarantined: %s", row.message_id, sender, reason)
        if not (bounce and sender):
            return
        try:  # the sender is told once (outbox key); a mail that cannot go out is logged, not retried by SMTP
            await self._mail.send_mail(MailRequest(
                idempotency_key=f"inbound-bounce-{row.id}", to=[sender], template="reply_not_posted",
                context={"reason": reason, "subject": str(message.get("Subject", ""))[:200],
                         "portal_url": self._settings.policy.portal_url,
                         # The mail layout names a customer: here, whom the reply was meant for if known.
                         "customer_name": "TechConnect support", "customer_id": tracking or "no request"}))
        except Exception:
            log.exception("inbound %s: the sender %s could not be told", row.message_id, sender)
