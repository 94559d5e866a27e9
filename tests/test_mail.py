"""Mail: templates, .ics invites, SMTP round trips through the embedded sink, and the outbox.

Every SMTP exchange here is real, over loopback, against devstack.smtp_sink.SmtpSink.
"""

from __future__ import annotations

import asyncio
import email.message
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import pytest
from icalendar import Calendar, Event
from sqlalchemy import select, update
from temporalio.exceptions import ApplicationError

from activities.invites import render_ics
from activities.mail import MailActivities, message_id_for, outbox_content
from activities.mailer import PermanentMailError, SmtpMailer, TransientMailError
from activities.templating import TEMPLATES_DIR, format_date, format_money, make_template_environment
from devstack.smtp_sink import SmtpSink
from domain.activities import Attachment, CallInvite, MailRequest
from storage.db import SessionFactory
from storage.tables import CustomerRow, OutboxRow
from tests.conftest import free_port
from tests.mail_fixtures import (
    BASE,
    SAMPLE_CONTEXTS,
    SENDER,
    add_document,
    database,
    mail_request,
    mail_sessions,  # noqa: F401 - the module's `sessions` fixture
    mail_sink,  # noqa: F401 - the module's `sink` fixture
    mail_template_names,
    make_mail_activities,
    outbox_row,
    sample_context,
    utc_now,
)


# ---- templates ----------------------------------------------------------------
def test_every_template_has_a_sample_context_and_all_three_parts() -> None:
    names = mail_template_names()
    assert names == sorted(SAMPLE_CONTEXTS)
    for name in names:
        for part in ("subject", "txt", "html"):
            assert (TEMPLATES_DIR / "mail" / f"{name}.{part}.j2").is_file(), (name, part)


@pytest.mark.parametrize("name", sorted(SAMPLE_CONTEXTS))
def test_template_renders_with_its_sample_context(name: str) -> None:
    env = make_template_environment()
    ctx = sample_context(name)
    subject = env.get_template(f"mail/{name}.subject.j2").render(ctx).strip()
    text = env.get_template(f"mail/{name}.txt.j2").render(ctx)
    html = env.get_template(f"mail/{name}.html.j2").render(ctx)
    assert subject and "\n" not in subject
    for body in (subject, text, html):
        assert "{{" not in body and "{%" not in body
    assert "ACME Corp" in text and "acme" in html
    assert html.lstrip().startswith("<!DOCTYPE html>") and "</html>" in html
    assert BASE["portal_url"] in text and BASE["portal_url"] in html


@pytest.mark.parametrize("name", sorted(SAMPLE_CONTEXTS))
def test_template_refuses_a_missing_key(name: str) -> None:
    env = make_template_environment()
    for key in SAMPLE_CONTEXTS[name]:
        ctx = sample_context(name)
        del ctx[key]
        parts = [env.get_template(f"mail/{name}.{p}.j2") for p in ("subject", "txt", "html")]
        with pytest.raises(jinja2.UndefinedError):
            for template in parts:
                template.render(ctx)


def test_html_is_escaped_and_text_is_not() -> None:
    env = make_template_environment()
    ctx = {**sample_context("step_rejected"), "reason": "<script>alert(1)</script> & more"}
    html = env.get_template("mail/step_rejected.html.j2").render(ctx)
    text = env.get_template("mail/step_rejected.txt.j2").render(ctx)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script> & more" in text


def test_filters_format_dates_and_money() -> None:
    env = make_template_environment()
    text = env.get_template("mail/renewal_notice.txt.j2").render(sample_context("renewal_notice"))
    assert "EUR 48,000.00" in text and "EUR 52,800.00" in text
    assert "5 October 2025" in text and "3 January 2026" in text
    assert format_date(None) == "not set"  # a step without an agreed date must not read "None"
    assert format_date("2025-02-10T10:00:00+01:00") == "10 February 2025, 10:00 UTC+01:00"
    assert format_money({"amount": "1234.5", "currency": "USD"}) == "USD 1,234.50"


# ---- .ics ----------------------------------------------------------------------
def _invite() -> CallInvite:
    return CallInvite(
        uid="program-acme-p1-m02-call@techconnect",
        summary="TechConnect follow-up call, February 2025",
        description="Open issues; coming changes",
        starts_at=datetime(2025, 2, 3, 15, 0, tzinfo=UTC) + timedelta(hours=-1),
        duration_minutes=45,
        location="https://teams.example/l/acme",
        organizer_email="alice@support.example",
        attendee_emails=["bob@acme.example", "carol@acme.example"],
    )


def test_render_ics_is_a_parsable_request() -> None:
    ics = render_ics(_invite(), SENDER)
    cal = Calendar.from_ical(ics)
    assert str(cal["METHOD"]) == "REQUEST"
    (event,) = cal.walk("VEVENT")
    assert isinstance(event, Event)
    assert str(event["UID"]) == "program-acme-p1-m02-call@techconnect"
    assert event.decoded("DTSTART") == datetime(2025, 2, 3, 14, 0, tzinfo=UTC)
    assert event.decoded("DTEND") == datetime(2025, 2, 3, 14, 45, tzinfo=UTC)
    assert "DTSTART:20250203T140000Z" in ics  # UTC form, not a floating time
    assert str(event["ORGANIZER"]) == "mailto:alice@support.example"
    assert event["ORGANIZER"].params["SENT-BY"] == "mailto:techconnect@support.example"
    assert sorted(str(a) for a in event.attendees) == ["mailto:bob@acme.example", "mailto:carol@acme.example"]
    assert str(event["SUMMARY"]) == "TechConnect follow-up call, February 2025"
    assert str(event["LOCATION"]) == "https://teams.example/l/acme"
    assert str(event["DESCRIPTION"]) == "Open issues; coming changes"
    # Deterministic: a resend carries byte-identical invite content.
    assert render_ics(_invite(), SENDER) == ics


# ---- SMTP round trips ------------------------------------------------------------
def _parts(msg: email.message.EmailMessage) -> dict[str, email.message.EmailMessage]:
    return {name: part for part in msg.iter_attachments() if (name := part.get_filename())}


async def test_round_trip_multipart_invite_and_document(database_url: str, tmp_path: Path) -> None:
    async with database(database_url) as sessions, SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        async with sessions() as session:
            doc_id = await add_document(
                session,
                "acme",
                "monthly_report",
                "Follow-up report February 2025",
                "Requests: 3 open, 5 closed.",
                "<h1>Follow-up report</h1><p>Requests: 3 open, 5 closed.</p>",
                "doc-acme-p1-m02",
            )
        acts = make_mail_activities(sessions, sink)
        request = mail_request(
            "program-acme-p1-m02-invite",
            to=["bob@acme.example"],
            cc=["carol@acme.example"],
            template="call_invite",
            context=sample_context("call_invite"),
            attachments=[Attachment(filename="agenda.txt", content="1. Open issues\n2. Coming changes\n")],
            invite=_invite(),
            attach_document_id=doc_id,
        )
        result = await acts.send_mail(request)

        assert result.status == "sent"
        assert result.message_id == message_id_for("program-acme-p1-m02-invite", SENDER)
        (msg,) = await sink.wait_for(count=1)
        assert msg["Message-ID"] == result.message_id
        # CPython folds a header that fits on one continuation line as "Subject:\r\n value".
        assert msg["Subject"].strip() == "TechConnect follow-up call for February 2025: Mon 3 Feb 2025, 14:00 UTC"
        assert msg["From"] == SENDER and msg["To"] == "bob@acme.example" and msg["Cc"] == "carol@acme.example"
        assert msg["X-Original-To"] == "bob@acme.example, carol@acme.example"
        assert msg.get_content_type() == "multipart/mixed"

        text_part = msg.get_body(("plain",))
        html_part = msg.get_body(("html",))
        assert isinstance(text_part, email.message.EmailMessage)
        assert isinstance(html_part, email.message.EmailMessage)
        text, html = text_part.get_content(), html_part.get_content()
        assert "follow-up call for February 2025" in text
        assert "Requests: 3 open, 5 closed." in text  # the document's text, appended
        assert "<!DOCTYPE html>" in html and "Follow-up call for February 2025" in html

        parts = _parts(msg)
        assert set(parts) == {"agenda.txt", "Follow-up report February 2025.html", "Follow-up report February 2025.pdf",
                              "invite.ics"}
        assert parts["Follow-up report February 2025.pdf"].get_content_type() == "application/pdf"
        assert parts["Follow-up report February 2025.pdf"].get_content().startswith(b"%PDF-")
        assert parts["agenda.txt"].get_content() == "1. Open issues\n2. Coming changes\n"
        assert "<h1>Follow-up report</h1>" in parts["Follow-up report February 2025.html"].get_content()
        ics_part = parts["invite.ics"]
        assert ics_part.get_content_type() == "text/calendar"
        assert ics_part.get_param("method") == "REQUEST"
        cal = Calendar.from_ical(ics_part.get_content())
        assert str(cal["METHOD"]) == "REQUEST"
        assert str(cal.walk("VEVENT")[0]["UID"]) == _invite().uid

        row = await outbox_row(sessions, "program-acme-p1-m02-invite")
        assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
        assert row.sent_at is not None and row.message_id == result.message_id
        assert row.recipients == "bob@acme.example, carol@acme.example"
        assert row.subject == msg["Subject"].strip() and "Requests: 3 open" in row.body_text
        assert len(list((tmp_path / "mail").glob("*-1.eml"))) == 1


async def test_round_trip_outside_ascii_long_lines_and_from_lines(sessions: SessionFactory, tmp_path: Path) -> None:
    """The message as activities/mail_message.py builds it reads back as written: a subject, a long display name, a
    domain (IDNA on the wire) and a long file name outside ASCII (RFC 2231 pieces), a body line longer than SMTP
    allows (998), a line starting "From " (not ">From ", compat32's habit), and the envelope from the headers;
    no line on the wire is longer than SMTP allows, and only the message itself says MIME-Version."""
    name = "Équipe d'assistance TechConnect de la Société Générale à Paris — 日本語のサポートチーム"
    title = "報告書" * 40  # 120 characters, each nine on the wire once percent-encoded
    long_line = "x" * 1500
    async with SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        acts = MailActivities(sessions, SmtpMailer(sink.host, sink.port, timeout=5), make_template_environment(),
                              f"{name} <techconnect@support.example>")
        await acts.send_mail(mail_request(
            "program-acme-p1-accents", cc=["carol@exämple.example"],
            context=sample_context("welcome") | {"customer_name": "Société Générale"},
            attachments=[Attachment(filename="résumé.txt", content=f"From the top\n{long_line}\n"),
                         Attachment(filename="notes.txt", content="From the desk\nshort\n"),
                         Attachment(filename=f"{title}.txt", content="x")]))
        (msg,) = await sink.wait_for(count=1)
    assert msg["Subject"] == "Welcome to OpenText TechConnect, Société Générale"
    (author,) = msg["From"].addresses
    # Python's parser keeps the space between two encoded words of a display name (RFC 2047 6.2 drops it).
    assert "".join(author.display_name.split()) == "".join(name.split())
    assert author.addr_spec == "techconnect@support.example"
    assert msg["Return-Path"] == "<techconnect@support.example>"
    assert msg["X-Original-To"] == "bob@acme.example, carol@xn--exmple-cua.example"
    text = msg.get_body(("plain",))
    assert isinstance(text, email.message.EmailMessage) and "Société Générale" in text.get_content()
    parts = _parts(msg)
    assert parts["résumé.txt"].get_content() == f"From the top\n{long_line}\n"
    assert parts["notes.txt"].get_content() == "From the desk\nshort\n"
    assert parts[f"{title}.txt"].get_content() == "x"
    assert msg.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in msg.walk() if "MIME-Version" in p] == ["multipart/mixed"]
    (stored,) = (tmp_path / "mail").glob("*.eml")
    assert max(map(len, stored.read_bytes().split(b"\r\n"))) <= 998


async def test_a_local_part_outside_ascii_is_refused_for_good_and_recorded(sessions: SessionFactory) -> None:
    """No relay without SMTPUTF8 takes it: the mail fails without retrying (the workflow records it), its row says
    why, and nothing reaches SMTP."""
    async with SmtpSink(port=free_port()) as sink:
        acts = make_mail_activities(sessions, sink)
        with pytest.raises(ApplicationError) as info:
            await acts.send_mail(mail_request(to=["zoë@acme.example"]))
        assert info.value.type == "PermanentMailError" and info.value.non_retryable
        assert sink.received == 0
    row = await outbox_row(sessions, "program-acme-p1-welcome")
    assert row.status == "failed" and row.last_error is not None and "SMTPUTF8" in row.last_error


async def test_a_sent_mail_stays_sent_whatever_its_template_raises_now(
        sessions: SessionFactory, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any error while rendering again (not only a template's own) answers "already sent" for a sent mail, and is
    raised for one not sent yet."""
    acts = make_mail_activities(sessions, sink)
    assert (await acts.send_mail(mail_request())).status == "sent"

    def broken(template: str, context: dict[str, Any]) -> Any:
        raise TypeError("unsupported operand type(s) for +: 'str' and 'int'")  # a template deployed since

    monkeypatch.setattr(acts, "render", broken)
    assert (await acts.send_mail(mail_request())).status == "already_sent"
    with pytest.raises(TypeError):
        await acts.send_mail(mail_request("program-acme-p1-another"))
    assert sink.received == 1


async def test_same_key_twice_delivers_one_message(database_url: str, sink: SmtpSink) -> None:
    async with database(database_url) as sessions:
        acts = make_mail_activities(sessions, sink)
        first = await acts.send_mail(mail_request())
        second = await acts.send_mail(mail_request())
        assert (first.status, second.status) == ("sent", "already_sent")
        assert first.outbox_id == second.outbox_id and first.message_id == second.message_id
        # The sink counts a transaction before it answers 250, and send_mail returns after the answer: a
        # second transaction would be counted by now. received counts SMTP transactions: the outbox, not
        # the sink's dedupe, stopped the second one.
        assert sink.received == 1 and len(sink.messages) == 1 and not sink.duplicates
        row = await outbox_row(sessions, "program-acme-p1-welcome")
        assert (row.status, row.attempts) == ("sent", 1)
        # A template changed or removed since cannot fail a sent mail's retry.
        gone = await acts.send_mail(mail_request(template="template_removed_since", context={}))
        assert gone.status == "already_sent" and sink.received == 1


async def test_concurrent_claims_share_one_outbox_row(database_url: str, sink: SmtpSink) -> None:
    async with database(database_url) as sessions:
        acts = make_mail_activities(sessions, sink)
        request = mail_request("program-acme-p1-race")
        rendered = acts.render(request.template, request.context)
        content = outbox_content(request, rendered, rendered.text)
        claims = [c for c in await asyncio.gather(*(acts._claim(request, content) for _ in range(4))) if c]
        assert len(claims) == 4 and len({c.id for c in claims}) == 1
        assert [c.inserted for c in claims].count(True) == 1  # one wrote the row, the others found it
        assert {c.message_id for c in claims} == {message_id_for(request.idempotency_key, SENDER)}
        row = await outbox_row(sessions, request.idempotency_key)
        assert (row.status, row.attempts) == ("pending", 4)  # each claim counted its attempt
        async with sessions() as session:
            assert len((await session.scalars(select(OutboxRow))).all()) == 1


async def test_4xx_is_retryable_and_recorded(sessions: SessionFactory, sink: SmtpSink) -> None:
    acts = make_mail_activities(sessions, sink)
    sink.fail_with = (451, "4.3.0 mailbox busy, try later")
    with pytest.raises(TransientMailError) as info:
        await acts.send_mail(mail_request())
    assert info.value.code == 451
    row = await outbox_row(sessions, "program-acme-p1-welcome")
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error is not None and "451" in row.last_error and "mailbox busy" in row.last_error
    assert sink.refused == 1 and sink.messages == []

    sink.fail_with = None
    assert (await acts.send_mail(mail_request())).status == "sent"
    row = await outbox_row(sessions, "program-acme-p1-welcome")
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(sink.messages) == 1


async def test_a_retry_that_finds_its_row_sent_by_a_racer_meanwhile_sends_nothing(
        sessions: SessionFactory, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    acts = make_mail_activities(sessions, sink)
    sink.fail_with = (451, "4.3.0 mailbox busy, try later")
    with pytest.raises(TransientMailError):
        await acts.send_mail(mail_request())  # the row stays pending, attempts 1
    sink.fail_with = None
    claim = acts._claim

    async def claim_after_racer(request: MailRequest, content: dict[str, str]) -> Any:
        # Between this retry's render and its claim, a racer (a worker presumed dead) sends the mail.
        async with sessions() as session, session.begin():
            await session.execute(update(OutboxRow).where(OutboxRow.idempotency_key == request.idempotency_key)
                                  .values(status="sent"))
        return await claim(request, content)

    monkeypatch.setattr(acts, "_claim", claim_after_racer)
    result = await acts.send_mail(mail_request())
    assert result.status == "already_sent"
    assert sink.refused == 1 and sink.received == 0 and sink.messages == []  # the retry sent nothing
    row = await outbox_row(sessions, "program-acme-p1-welcome")
    assert (row.status, row.attempts) == ("sent", 1)  # and counted no attempt on a sent row


async def test_5xx_is_permanent_and_marks_the_row_failed(sessions: SessionFactory, sink: SmtpSink) -> None:
    acts = make_mail_activities(sessions, sink)
    sink.fail_with = (554, "5.7.1 message rejected")
    with pytest.raises(ApplicationError) as info:
        await acts.send_mail(mail_request())
    assert info.value.type == "PermanentMailError" and info.value.non_retryable
    assert isinstance(info.value.__cause__, PermanentMailError) and info.value.__cause__.code == 554
    row = await outbox_row(sessions, "program-acme-p1-welcome")
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error is not None and "554" in row.last_error
    assert sink.messages == []


async def test_connection_refused_is_transient(sessions: SessionFactory, sink: SmtpSink) -> None:
    nobody = SmtpMailer("127.0.0.1", free_port(), timeout=2)
    acts = make_mail_activities(sessions, sink, mailer=nobody)
    with pytest.raises(TransientMailError):
        await acts.send_mail(mail_request())
    row = await outbox_row(sessions, "program-acme-p1-welcome")
    assert row.status == "pending" and row.attempts == 1 and row.last_error


async def test_document_of_another_customer_is_never_attached(sessions: SessionFactory, sink: SmtpSink) -> None:
    async with sessions() as session:
        session.add(CustomerRow(id="globex", name="Globex", maintenance_subscription_id="SMP-2", created_at=utc_now()))
        doc_id = await add_document(session, "globex", "notice", "Secret", "x", "<p>x</p>", "doc-globex")
    acts = make_mail_activities(sessions, sink)
    with pytest.raises(ApplicationError) as info:
        await acts.send_mail(mail_request(attach_document_id=doc_id))
    assert info.value.type == "DocumentCustomerMismatch" and info.value.non_retryable
    assert sink.received == 0


async def test_smtp_auth_success_and_refusal() -> None:
    async with SmtpSink(port=free_port(), credentials={"worker": "s3cret"}) as sink:
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = SENDER, "bob@acme.example", "auth"
        msg.set_content("hello")
        await SmtpMailer(sink.host, sink.port, "worker", "s3cret", timeout=5).send(msg)
        assert len(await sink.wait_for(count=1)) == 1
        # Must fail fast with 535, not hang until the client's timeout.
        with pytest.raises(PermanentMailError) as info:
            await asyncio.wait_for(SmtpMailer(sink.host, sink.port, "worker", "wrong", timeout=5).send(msg), 3)
        assert info.value.code == 535


async def test_sink_drops_a_resent_message_id_and_remembers_stored_ones(tmp_path: Path) -> None:
    directory = tmp_path / "mail"
    msg = email.message.EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, "bob@acme.example", "once"
    msg["Message-ID"] = message_id_for("k", SENDER)
    msg.set_content("hello")
    async with SmtpSink(port=free_port(), directory=directory) as sink:
        mailer = SmtpMailer(sink.host, sink.port, timeout=5)
        await mailer.send(msg)
        await mailer.send(msg)
        assert sink.received == 2 and len(sink.messages) == 1 and len(sink.duplicates) == 1
    # A restarted sink (make run) still knows the stored message.
    async with SmtpSink(port=free_port(), directory=directory) as sink:
        await SmtpMailer(sink.host, sink.port, timeout=5).send(msg)
        assert sink.received == 1 and sink.messages == [] and len(sink.duplicates) == 1
    assert len(list(directory.glob("*.eml"))) == 1
