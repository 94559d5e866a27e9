"""The mail activity: render, record in the outbox, deliver once per idempotency key.

Delivery is at-least-once with a deterministic Message-ID. The outbox makes a retry
after a *recorded* success a no-op; the one window it cannot close (SMTP accepted the
message, then the worker died or timed out before the outbox row said "sent") is
closed downstream: the resend carries the same Message-ID, which mailbox providers
(and our SmtpSink) use to drop the duplicate. The alternative, at-most-once, would
silently lose a renewal or non-renewal notice whenever a worker died mid-connect.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.policy
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from typing import Any

import jinja2
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.faults import MAIL_AFTER_COMMIT, MAIL_AFTER_SMTP, maybe_crash
from activities.invites import render_ics
from activities.mailer import PermanentMailError, SmtpMailer, TransientMailError
from activities.metrics import MAILS_FAILED, MAILS_SENT
from activities.templating import make_template_environment
from config.settings import Settings, reply_secret
from domain.activities import MailRequest, MailResult
from domain.reply_address import reply_address, thread_id
from storage.db import SessionFactory
from storage.pdfs import document_pdf
from storage.repositories.documents import DRAFT_KINDS
from storage.tables import DocumentRow, OutboxRow

_NOT_FILENAME = re.compile(r"[^\w .()-]+")


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def message_id_for(idempotency_key: str, sender: str) -> str:
    """Same key, same Message-ID: what lets a mailbox drop a resent duplicate."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "techconnect.invalid"
    return f"<tc.{digest}@{domain}>"


def outbox_content(request: MailRequest, rendered: RenderedMail, body_text: str) -> dict[str, str]:
    """What an outbox row holds of the message: written with a new row, refreshed on each later attempt."""
    return {"recipients": ", ".join([*request.to, *request.cc]), "subject": rendered.subject[:998],
            "body_text": body_text, "body_html": rendered.html}


def _text_body(rendered: RenderedMail, document: DocumentRow | None) -> str:
    if document is None:
        return rendered.text
    # Clients that hide attachments (or show only text) still show the document.
    rule = "=" * 72
    return f"{rendered.text.rstrip()}\n\n{rule}\n{document.title}\n{rule}\n\n{document.body_text.rstrip()}\n"


def _safe_filename(title: str, suffix: str) -> str:
    stem = _NOT_FILENAME.sub("_", title).strip(" ._") or "document"
    return f"{stem[:120]}{suffix}"


@dataclass(frozen=True)
class DocumentFile:
    """A file filed with a document (`DocumentRow.data["mail_files"]`), e.g. the monthly report's
    requests CSV and chart PNG (A6). `cid` is set for an image the HTML body shows inline."""

    filename: str
    content_type: str
    content: bytes | str
    cid: str | None = None
    alt: str = ""


def document_files(document: DocumentRow | None, sender: str) -> list[DocumentFile]:
    """The files a document carries into mail; unreadable entries are skipped, not fatal."""
    if document is None or not isinstance(document.data, dict):
        return []
    domain = parseaddr(sender)[1].rpartition("@")[2] or "techconnect.invalid"
    files: list[DocumentFile] = []
    for n, raw in enumerate(document.data.get("mail_files") or []):
        if not isinstance(raw, dict) or not raw.get("filename"):
            continue
        entry: dict[str, Any] = raw
        content: bytes | str
        try:
            content = base64.b64decode(entry["base64"], validate=True) if "base64" in entry else str(entry["text"])
        except (KeyError, binascii.Error):
            continue
        # Deterministic Content-ID: a resent mail (same document) is byte-identical.
        cid = f"doc{document.id}.{n}@{domain}" if entry.get("inline") else None
        files.append(DocumentFile(filename=_safe_filename(str(entry["filename"]), ""),
                                  content_type=str(entry.get("content_type") or "application/octet-stream"),
                                  content=content, cid=cid, alt=str(entry.get("alt") or "")))
    return files


def _files_context(files: list[DocumentFile]) -> dict[str, Any]:
    """What the mail templates may show of the document's files (monthly report: the chart, by CID)."""
    image = next((f for f in files if f.cid is not None), None)
    context: dict[str, Any] = {"attached_files": [f.filename for f in files if f.cid is None]}
    if image is not None:
        context.update(chart_cid=image.cid, chart_alt=image.alt)
    return context


@dataclass(frozen=True)
class ReplyAddresses:
    """Where replies to a request's mails go (inbound/): the secret of the tokens and the reply domain."""

    secret: str
    domain: str


class MailActivities:
    def __init__(
        self,
        session_factory: SessionFactory,
        mailer: SmtpMailer,
        templates: jinja2.Environment,
        sender: str,
        replies: ReplyAddresses | None = None,
    ) -> None:
        self._sessions = session_factory
        self._mailer = mailer
        self._templates = templates
        self._sender = sender
        self._replies = replies

    @classmethod
    def from_settings(cls, settings: Settings, session_factory: SessionFactory, mailer: SmtpMailer | None = None,
                      templates: jinja2.Environment | None = None) -> MailActivities:
        """The outbox and SMTP of the settings, with the request mails' reply addresses: the worker's, and
        the inbound receiver's for its bounces."""
        return cls(session_factory, mailer or SmtpMailer.from_settings(settings),
                   templates or make_template_environment(), settings.policy.sender,
                   ReplyAddresses(reply_secret(settings), settings.reply_domain))

    def render(self, template: str, context: dict[str, object]) -> RenderedMail:
        # A StrictUndefined error here is a bug in the calling workflow: it is left
        # retryable on purpose, so a fixed worker deployment resumes the programme
        # instead of the programme failing on a template.
        subject = self._templates.get_template(f"mail/{template}.subject.j2").render(context)
        text = self._templates.get_template(f"mail/{template}.txt.j2").render(context)
        html = self._templates.get_template(f"mail/{template}.html.j2").render(context)
        # One line only: a newline in a header would be header injection.
        return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)

    async def _load_document(self, request: MailRequest) -> DocumentRow:
        async with self._sessions() as session:
            doc = await session.get(DocumentRow, request.attach_document_id)
        if doc is None:
            raise ApplicationError(
                f"document {request.attach_document_id} does not exist", type="DocumentNotFound", non_retryable=True
            )
        if request.customer_id is not None and doc.customer_id != request.customer_id:
            # A workspace document must never reach another customer's contacts.
            raise ApplicationError(
                f"document {doc.id} belongs to {doc.customer_id}, not {request.customer_id}",
                type="DocumentCustomerMismatch",
                non_retryable=True,
            )
        if doc.kind in DRAFT_KINDS:
            # Rule D7: only the approved version reaches the customer; approval (publish_report) changes the
            # kind first, so a draft here is a workflow bug, and no retry would make it right.
            raise ApplicationError(
                f"document {doc.id} is an unapproved draft ({doc.kind}) and is never mailed",
                type="DocumentIsDraft",
                non_retryable=True,
            )
        return doc

    def build_message(
        self,
        request: MailRequest,
        rendered: RenderedMail,
        message_id: str,
        created_at: datetime,
        document: DocumentRow | None = None,
        pdf: bytes | None = None,
    ) -> email.message.EmailMessage:
        msg = email.message.EmailMessage(policy=email.policy.SMTP)
        msg["From"] = self._sender
        msg["To"] = ", ".join(request.to)
        if request.cc:
            msg["Cc"] = ", ".join(request.cc)
        msg["Subject"] = rendered.subject
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = message_id
        # RFC 3834: keeps out-of-office replies from mailing the service back.
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-TechConnect-Template"] = request.template
        if request.customer_id:
            msg["X-TechConnect-Customer"] = request.customer_id
        tracking = request.context.get("tracking_number")
        if self._replies is not None and isinstance(tracking, str) and tracking:
            # A request's mails form one thread, and a reply lands in the request (inbound/).
            msg["Reply-To"] = reply_address(tracking, self._replies.secret, self._replies.domain)
            root = thread_id(tracking, self._replies.domain)
            msg["In-Reply-To"] = root
            msg["References"] = root
            msg["X-TechConnect-Request"] = tracking

        msg.set_content(_text_body(rendered, document))
        msg.add_alternative(rendered.html, subtype="html")
        files = document_files(document, self._sender)
        html_part = msg.get_body(("html",))
        for f in files:
            if f.cid is not None and isinstance(f.content, bytes) and isinstance(html_part, email.message.EmailMessage):
                # multipart/related around the HTML part: the body shows it as <img src="cid:...">,
                # which Gmail and Outlook render where they drop inline SVG.
                maintype, _, subtype = f.content_type.partition("/")
                html_part.add_related(f.content, maintype=maintype, subtype=subtype, cid=f"<{f.cid}>",
                                      filename=f.filename, disposition="inline")

        for att in request.attachments:
            maintype, _, subtype = att.content_type.partition("/")
            if maintype == "text":
                msg.add_attachment(att.content, subtype=subtype or "plain", filename=att.filename)
            else:
                msg.add_attachment(
                    att.content.encode("utf-8"),
                    maintype=maintype or "application",
                    subtype=subtype or "octet-stream",
                    filename=att.filename,
                )
        if document is not None:
            msg.add_attachment(document.body_html, subtype="html", filename=_safe_filename(document.title, ".html"))
            if pdf is not None:
                # D10/A9: the same document as PDF, for those who file or print it (storage/pdfs.py).
                msg.add_attachment(pdf, maintype="application", subtype="pdf",
                                   filename=_safe_filename(document.title, ".pdf"))
        for f in files:
            if f.cid is None:
                maintype, _, subtype = f.content_type.partition("/")
                if isinstance(f.content, str):
                    msg.add_attachment(f.content, subtype=subtype or "plain", filename=f.filename)
                else:
                    msg.add_attachment(f.content, maintype=maintype, subtype=subtype, filename=f.filename)
        if request.invite is not None:
            # DTSTAMP from the outbox row, not the clock: a resend carries the same invite.
            ics = render_ics(request.invite, self._sender, stamp=created_at)
            msg.add_attachment(ics, subtype="calendar", filename="invite.ics", params={"method": "REQUEST"})
        return msg

    async def _claim(self, request: MailRequest, content: dict[str, str]) -> tuple[OutboxRow, bool]:
        """Insert the outbox row for this key, counting this attempt, or get the one a racer wrote; True when
        inserted here (the caller found no row before rendering)."""
        key = request.idempotency_key
        async with self._sessions() as session:
            row = OutboxRow(
                idempotency_key=key,
                customer_id=request.customer_id,
                template=request.template,
                message_id=message_id_for(key, self._sender),
                sender=self._sender,
                **content,
                status="pending",
                attempts=1,  # counted before the attempt, in the same write
                created_at=datetime.now(UTC),
            )
            session.add(row)
            try:
                await session.commit()
                return row, True
            except IntegrityError:
                await session.rollback()
        # Lost the race on the unique key: the winner's row is the one to use.
        async with self._sessions() as session:
            return (await session.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == key))).one(), False

    async def _update(self, outbox_id: int, unless_sent: bool = False, **values: object) -> bool:
        """Change the row; with `unless_sent`, only while it is not sent. True when a row changed."""
        stmt = update(OutboxRow).where(OutboxRow.id == outbox_id)
        if unless_sent:
            stmt = stmt.where(OutboxRow.status != "sent")
        async with self._sessions() as session:
            changed = getattr(await session.execute(stmt.values(**values)), "rowcount", 0)
            await session.commit()
        return bool(changed)

    @staticmethod
    def _already_sent(row: OutboxRow) -> MailResult:
        activity.logger.info("mail %s already sent as %s", row.idempotency_key, row.message_id)
        return MailResult(outbox_id=row.id, status="already_sent", message_id=row.message_id)

    @activity.defn
    async def send_mail(self, request: MailRequest) -> MailResult:
        # Looked up before rendering: a mail sent last month must stay "already sent" even if
        # its template has changed (or gone) since.
        async with self._sessions() as session:
            row = await session.scalar(select(OutboxRow).where(OutboxRow.idempotency_key == request.idempotency_key))
        if row is not None and row.status == "sent":
            return self._already_sent(row)
        document = await self._load_document(request) if request.attach_document_id is not None else None
        # A document's files (monthly report: CSV, chart PNG) are named to the templates, which
        # show the chart by Content-ID.
        files = document_files(document, self._sender)
        context = request.context | _files_context(files) if files else request.context
        rendered = self.render(request.template, context)
        content = outbox_content(request, rendered, _text_body(rendered, document))
        inserted = False
        if row is None:
            row, inserted = await self._claim(request, content)
        # Counted before the attempt, so a worker that dies mid-send still leaves a trace (a new row counts its
        # first attempt as it is written). Content is refreshed too: a row left "failed" can be retried by a new
        # call with corrected input. Never over a row a concurrent attempt has marked sent (then it is sent).
        if not inserted and not await self._update(row.id, unless_sent=True, attempts=OutboxRow.attempts + 1,
                                                   status="pending", **content):
            return self._already_sent(row)

        # Rendered on first need and stored (not on this loop: storage/pdfs.py renders in a thread); a resend
        # carries the stored bytes, so the message stays the same.
        pdf = await document_pdf(self._sessions, document) if document is not None else None
        message = self.build_message(request, rendered, row.message_id, row.created_at, document, pdf)
        try:
            await self._mailer.send(message)
        except TransientMailError as exc:
            MAILS_FAILED.labels(request.template, "transient").inc()
            await self._update(row.id, last_error=str(exc))
            # Left to Temporal's retry policy; the retry resends with the same Message-ID.
            raise
        except PermanentMailError as exc:
            MAILS_FAILED.labels(request.template, "permanent").inc()
            await self._update(row.id, status="failed", last_error=str(exc))
            raise ApplicationError(
                f"mail {request.idempotency_key} refused: {exc}",
                {"code": exc.code, "text": exc.text, "outbox_id": row.id},
                type="PermanentMailError",
                non_retryable=True,
            ) from exc
        MAILS_SENT.labels(request.template).inc()
        maybe_crash(MAIL_AFTER_SMTP)  # crash tests: SMTP accepted, the outbox does not know yet
        await self._update(row.id, status="sent", sent_at=datetime.now(UTC))
        maybe_crash(MAIL_AFTER_COMMIT)  # crash tests: the outbox says sent, the workflow does not know yet
        return MailResult(outbox_id=row.id, status="sent", message_id=row.message_id)
