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
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from typing import Any

import jinja2
from sqlalchemy import select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.faults import MAIL_AFTER_COMMIT, MAIL_AFTER_SMTP, maybe_crash
from activities.invites import render_ics
from activities.mail_message import UndeliverableAddress, address_header, file_part, multipart, text_part
from activities.mailer import PermanentMailError, SmtpMailer, TransientMailError
from activities.metrics import MAILS_FAILED, MAILS_SENT
from activities.templating import make_template_environment
from config.settings import Settings, reply_secret
from domain.activities import MailRequest, MailResult
from domain.reply_address import reply_address, thread_id
from storage.db import SessionFactory
from storage.pdfs import document_pdf
from storage.repositories.common import conflict_insert
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


def refusal_text(key: str, why: str | None) -> str:
    """What a mail refused for good says (`why`: the row's `last_error`), whether raised now or read back later."""
    return f"mail {key} refused: {why}"


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


def _inline_image(f: DocumentFile) -> email.message.Message:
    part = file_part(f.content, f.content_type, f.filename, disposition="inline")
    part["Content-ID"] = f"<{f.cid}>"
    return part


def _files_context(files: list[DocumentFile]) -> dict[str, Any]:
    """What the mail templates may show of the document's files (monthly report: the chart, by CID)."""
    image = next((f for f in files if f.cid is not None), None)
    context: dict[str, Any] = {"attached_files": [f.filename for f in files if f.cid is None]}
    if image is not None:
        context.update(chart_cid=image.cid, chart_alt=image.alt)
    return context


@dataclass(frozen=True)
class OutboxClaim:
    """The outbox row an attempt claimed: `inserted` when this attempt wrote it."""

    id: int
    message_id: str
    created_at: datetime
    inserted: bool


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
        *,
        body_text: str,
        files: list[DocumentFile],
    ) -> email.message.Message:
        """`body_text` and `files`: what `send_mail` made of the document once (its text appended, its files
        decoded), for the outbox row and the template context."""
        html: email.message.Message = text_part(rendered.html, "html")
        inline = [f for f in files if f.cid is not None and isinstance(f.content, bytes)]
        if inline:
            # multipart/related around the HTML part: the body shows it as <img src="cid:...">,
            # which Gmail and Outlook render where they drop inline SVG.
            html = multipart("related", [html, *(_inline_image(f) for f in inline)])
        body = multipart("alternative", [text_part(body_text), html])

        attached: list[email.message.Message] = [
            file_part(att.content if att.content_type.partition("/")[0] == "text" else att.content.encode("utf-8"),
                      att.content_type, att.filename) for att in request.attachments]
        if document is not None:
            attached.append(file_part(document.body_html, "text/html", _safe_filename(document.title, ".html")))
            if pdf is not None:
                # D10/A9: the same document as PDF, for those who file or print it (storage/pdfs.py).
                attached.append(file_part(pdf, "application/pdf", _safe_filename(document.title, ".pdf")))
        attached += [file_part(f.content, f.content_type, f.filename) for f in files if f.cid is None]
        if request.invite is not None:
            # DTSTAMP from the outbox row, not the clock: a resend carries the same invite.
            ics = render_ics(request.invite, self._sender, stamp=created_at)
            attached.append(file_part(ics, "text/calendar", "invite.ics", method="REQUEST"))
        msg = multipart("mixed", [body, *attached]) if attached else body

        msg["MIME-Version"] = "1.0"
        msg["From"] = address_header(self._sender)
        msg["To"] = address_header(", ".join(request.to))
        if request.cc:
            msg["Cc"] = address_header(", ".join(request.cc))
        msg["Subject"] = rendered.subject  # outside ASCII, flattening writes RFC 2047 words
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
        return msg

    async def _claim(self, request: MailRequest, content: dict[str, str]) -> OutboxClaim | MailResult:
        """This attempt's outbox row, counted in the same transaction (a worker that dies mid-send still leaves a
        trace), or the "already sent" answer when the row is sent (by an earlier attempt, or a racer meanwhile).

        A new row counts attempt 1. A row the key already has, unless sent, counts one more and takes this
        attempt's content: a row left "failed" can be retried by a new call with corrected input. Each case is
        one statement that checks and writes at once, so no racer can mark the row sent between a look and a count.
        """
        key = request.idempotency_key
        claimed = (OutboxRow.id, OutboxRow.message_id, OutboxRow.created_at)
        async with self._sessions() as session:
            new = conflict_insert(session, OutboxRow, "the mail outbox").values(
                idempotency_key=key, customer_id=request.customer_id, template=request.template,
                message_id=message_id_for(key, self._sender), sender=self._sender, **content, status="pending",
                attempts=1, created_at=datetime.now(UTC),
            ).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(*claimed)
            row = (await session.execute(new)).first()
            inserted = row is not None
            if row is None:
                again = update(OutboxRow).where(OutboxRow.idempotency_key == key, OutboxRow.status != "sent").values(
                    attempts=OutboxRow.attempts + 1, status="pending", **content).returning(*claimed)
                row = (await session.execute(again)).first()
            if row is None:  # the key has a row, and it is sent
                sent = (await session.execute(select(OutboxRow.id, OutboxRow.message_id).where(
                    OutboxRow.idempotency_key == key))).one()
                return self._already_sent(key, sent.id, sent.message_id)
            await session.commit()
        return OutboxClaim(row.id, row.message_id, row.created_at, inserted)

    @staticmethod
    def _already_sent(key: str, outbox_id: int, message_id: str) -> MailResult:
        activity.logger.info("mail %s already sent as %s", key, message_id)
        return MailResult(outbox_id=outbox_id, status="already_sent", message_id=message_id)

    async def _sent_row(self, key: str) -> MailResult | None:
        """The key's row if it is sent, as an "already sent" result."""
        async with self._sessions() as session:
            row = (await session.execute(select(OutboxRow.id, OutboxRow.message_id).where(
                OutboxRow.idempotency_key == key, OutboxRow.status == "sent"))).first()
        return None if row is None else self._already_sent(key, row.id, row.message_id)

    async def refusal(self, key: str) -> str | None:
        """Why the key's mail was refused for good (its row says failed), as `send_mail` raised it; else None."""
        async with self._sessions() as session:
            row = (await session.execute(select(OutboxRow.status, OutboxRow.last_error).where(
                OutboxRow.idempotency_key == key))).first()
        return refusal_text(key, row.last_error) if row is not None and row.status == "failed" else None

    async def _update(self, outbox_id: int, **values: object) -> None:
        """Change the row unless it is sent: "sent" is final, whatever an attempt that lost the race learns later."""
        async with self._sessions() as session:
            await session.execute(update(OutboxRow).where(OutboxRow.id == outbox_id, OutboxRow.status != "sent")
                                  .values(**values))
            await session.commit()

    async def _refused(self, request: MailRequest, outbox_id: int, exc: PermanentMailError) -> ApplicationError:
        """A mail no retry can deliver: its row says failed, and the workflow is told without retrying."""
        MAILS_FAILED.labels(request.template, "permanent").inc()
        await self._update(outbox_id, status="failed", last_error=str(exc))
        return ApplicationError(
            refusal_text(request.idempotency_key, str(exc)),
            {"code": exc.code, "text": exc.text, "outbox_id": outbox_id},
            type="PermanentMailError",
            non_retryable=True,
        )

    @activity.defn
    async def send_mail(self, request: MailRequest) -> MailResult:
        try:
            document = await self._load_document(request) if request.attach_document_id is not None else None
            # A document's files (monthly report: CSV, chart PNG) are named to the templates, which
            # show the chart by Content-ID.
            files = document_files(document, self._sender)
            context = request.context | _files_context(files) if files else request.context
            rendered = self.render(request.template, context)
        except Exception:
            # A mail sent last month stays "already sent" even if its template or document has changed (or gone)
            # since, whatever the error. Looked up only here: nearly every call is a first attempt, which needs
            # no lookup before its claim.
            if (sent := await self._sent_row(request.idempotency_key)) is not None:
                return sent
            raise
        body_text = _text_body(rendered, document)
        row = await self._claim(request, outbox_content(request, rendered, body_text))
        if isinstance(row, MailResult):
            return row

        # Rendered on first need and stored (not on this loop: storage/pdfs.py renders in a thread); a resend
        # carries the stored bytes, so the message stays the same.
        pdf = await document_pdf(self._sessions, document) if document is not None else None
        try:
            message = self.build_message(request, rendered, row.message_id, row.created_at, document, pdf,
                                         body_text=body_text, files=files)
        except UndeliverableAddress as exc:
            raise await self._refused(request, row.id, PermanentMailError(str(exc))) from exc
        try:
            await self._mailer.send(message)
        except TransientMailError as exc:
            MAILS_FAILED.labels(request.template, "transient").inc()
            await self._update(row.id, last_error=str(exc))
            # Left to Temporal's retry policy; the retry resends with the same Message-ID.
            raise
        except PermanentMailError as exc:
            raise await self._refused(request, row.id, exc) from exc
        MAILS_SENT.labels(request.template).inc()
        maybe_crash(MAIL_AFTER_SMTP)  # crash tests: SMTP accepted, the outbox does not know yet
        await self._update(row.id, status="sent", sent_at=datetime.now(UTC))
        maybe_crash(MAIL_AFTER_COMMIT)  # crash tests: the outbox says sent, the workflow does not know yet
        return MailResult(outbox_id=row.id, status="sent", message_id=row.message_id)
