"""Replies by mail (issue 13): a request mail carries a reply address with an HMAC token and threads;
a customer's reply, sent through a real SMTP session to the inbound receiver, lands trimmed in the
request's thread, once; forged, foreign, late and oversized replies are quarantined with the reason and
the sender is told once; a receiver killed right after storing the raw message posts it after restart.

Real parts: the Temporal dev server, the worker, SQLite, the SMTP sink for outgoing mail, aiosmtplib
to the inbound receiver (in this module's event loop, and as a `techconnect inbound` subprocess)."""

from __future__ import annotations

import asyncio
import email.message
import html
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib
import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from activities.faults import FAULT_DIR_ENV, FAULT_ENV, INBOUND_AFTER_STORE
from config.settings import Settings, reply_secret
from domain.reply_address import reply_address, reply_token, thread_id
from domain.request import AddComment, NewRequest, RecordWrittenAcceptance
from inbound.service import inbound_receiver
from portal.app import create_app
from starter.requests import open_request, request_status, update_request
from storage import users as users_repo
from storage.repositories import get_request
from storage.repositories.inbound import list_inbound
from storage.tables import RequestAttachmentRow
from storage.users import Role
from testing.servers import free_port
from tests.harness import Cli, Stack, add_subscription, cli_environ, enrolment, stack_on_server, until_passes
from tests.portal_fixtures import csrf_of, password_hash, sign_in

pytestmark = pytest.mark.asyncio(loop_scope="module")

PARIS = ZoneInfo("Europe/Paris")
MAX_BYTES = 4096  # a reply bigger than this is quarantined (small, so the test sends little)
PDF_NAME = "r\u00e9sum\u00e9 \u65e5\u672c.pdf"  # a name a browser and a header must both carry
QUOTED = "\n\nOn Tue, 1 Dec 2026 at 10:00, TechConnect <techconnect@opentext.example> wrote:\n> {}\n> Regards\n"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def st(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with stack_on_server(tmp_path_factory.mktemp("replies")) as s:
        yield s


def settings_of(st: Stack) -> Settings:
    return st.settings.model_copy(update={"task_queue": st.task_queue, "inbound_max_bytes": MAX_BYTES})


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def inbound(st: Stack) -> AsyncIterator[int]:
    async with inbound_receiver(settings_of(st), st.client, st.sessions, port=0) as port:
        yield port


async def live_request(st: Stack, customer_id: str) -> str:
    today = datetime.now(PARIS).date()
    await add_subscription(st.sessions, customer_id, today - timedelta(days=30), today + timedelta(days=800))
    await st.start(enrolment(customer_id, today - timedelta(days=1)))
    await st.wait_enrolled(customer_id)
    return await another_request(st, customer_id)


async def another_request(st: Stack, customer_id: str) -> str:
    new = NewRequest.model_validate({"customer_id": customer_id, "kind": "support", "priority": "high",
                                     "summary": "Search is down", "filed_by": f"carol@{customer_id}.example"})
    return await open_request(st.client, settings_of(st), new, sessions=st.sessions)


async def staff_message(st: Stack, number: str, text: str) -> email.message.EmailMessage:
    """Staff write on the request; the mail the contacts get (the one they reply to)."""
    await update_request(st.client, number, "add_comment", AddComment(by="rep-sam", message=text))
    mails = await st.sink.wait_for(lambda m: number in str(m["Subject"]) and text in str(m.get_body(
        ("plain",)).get_content()), timeout=20)  # type: ignore[union-attr]
    return mails[-1]


def reply_to(mail: email.message.EmailMessage, sender: str, text: str, *, to: str | None = None,
             message_id: str | None = None, extra: str = "") -> email.message.EmailMessage:
    reply = email.message.EmailMessage()
    reply["From"] = sender
    reply["To"] = to or str(mail["Reply-To"])
    reply["Subject"] = f"Re: {mail['Subject']}"
    reply["Message-ID"] = message_id or make_msgid(domain="customer.example")
    reply["In-Reply-To"] = str(mail["Message-ID"])
    reply["References"] = f"{mail['References']} {mail['Message-ID']}"
    reply.set_content(text + QUOTED.format("the text of our mail") + extra)
    return reply


async def send(port: int, message: email.message.EmailMessage) -> None:
    await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=30)


@asynccontextmanager
async def signed_in(st: Stack, email: str, role: Role, customer_id: str | None = None
                    ) -> AsyncIterator[httpx.AsyncClient]:
    """The portal (in process, on this stack) with `email` signed in as a new user of `role`."""
    async with st.sessions() as session, session.begin():
        await users_repo.add_user(session, email=email, name=email.split("@")[0].title(), role=role,
                                  customer_id=customer_id, password_hash=password_hash())
    app = create_app(settings_of(st).model_copy(update={"portal_secret": "replies-" + "x" * 32}),
                     sessions=st.sessions, client=st.client)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://portal.test") as http:
        await sign_in(http, email)
        yield http


async def thread(st: Stack, number: str) -> list[tuple[str, str, str]]:
    s = await request_status(st.client, number)
    return [(m.by, m.via, m.text) for m in s.messages]


async def inbound_rows(st: Stack) -> dict[str, Any]:
    async with st.sessions() as session:
        return {r.message_id: r for r in await list_inbound(session)}


@pytest.mark.rule("A4")
async def test_a_reply_lands_trimmed_in_the_thread_once(st: Stack, inbound: int) -> None:
    number = await live_request(st, "mailco")
    mail = await staff_message(st, number, "Could you send the indexer log?")
    settings = settings_of(st)
    # The request mail names its request in an unforgeable reply address, and threads.
    assert str(mail["Reply-To"]) == reply_address(number, reply_secret(settings), settings.reply_domain)
    assert str(mail["In-Reply-To"]) == thread_id(number, settings.reply_domain) == str(mail["References"])

    reply = reply_to(mail, "Carol Diaz <carol@mailco.example>", "Here it is: the indexer stopped at 02:10.")
    await send(inbound, reply)
    assert (await thread(st, number))[-1] == ("carol@mailco.example", "mail",
                                              "Here it is: the indexer stopped at 02:10.")
    # The TL and the desk hear of it like of a portal message.
    await st.sink.wait_for(lambda m: number in str(m["Subject"]) and "from carol@mailco.example" in str(
        m["Subject"]), timeout=20)

    # The same message delivered again (same Message-ID): one row, one post.
    await send(inbound, reply)
    assert [t for t in await thread(st, number) if t[1] == "mail"] == [
        ("carol@mailco.example", "mail", "Here it is: the indexer stopped at 02:10.")]
    rows = await inbound_rows(st)
    assert rows[str(reply["Message-ID"])].status == "posted"

    shown = await Cli(env=cli_environ(st))("request", "show", number, "--json")
    assert shown.code == 0, str(shown)
    assert shown.json()["messages"][-1]["text"] == "Here it is: the indexer stopped at 02:10."


@pytest.mark.rule("A4")
async def test_a_replys_allowed_attachments_are_kept_and_served_on_the_request_page_only(
    st: Stack, inbound: int
) -> None:
    number = await live_request(st, "fileco")
    other = await live_request(st, "fileother")
    mail = await staff_message(st, number, "Please attach the indexer log.")
    reply = reply_to(mail, "carol@fileco.example", "Log attached.")
    reply.add_attachment(b"02:10 indexer stopped\n", maintype="text", subtype="plain", filename="indexer.log")
    reply.add_attachment(b"MZ\x90\x00", maintype="application", subtype="x-msdownload", filename="tool.exe")
    reply.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=PDF_NAME)
    await send(inbound, reply)
    posted = (await request_status(st.client, number)).messages[-1]
    assert [(a.filename, a.content_type, a.size) for a in posted.attachments] == [
        ("indexer.log", "text/plain", 22), (PDF_NAME, "application/pdf", 8)]
    assert "Not kept (type or size): tool.exe (application/x-msdownload, 4 bytes)" in posted.text

    ref = posted.attachments[0].id
    async with signed_in(st, "carol@fileco.example", Role.contact, "fileco") as http:
        page = await http.get(f"/workspace/fileco/requests/{number}")
        assert 'data-attachment="indexer.log"' in page.text
        got = await http.get(f"/workspace/fileco/requests/{number}/attachments/{ref}")
        assert got.status_code == 200 and got.content == b"02:10 indexer stopped\n"
        assert got.headers["content-disposition"] == \
            'attachment; filename="indexer.log"; filename*=UTF-8\'\'indexer.log'
        pdf = await http.get(f"/workspace/fileco/requests/{number}/attachments/{posted.attachments[1].id}")
        assert pdf.status_code == 200 and pdf.content == b"%PDF-1.4"
        assert pdf.headers["content-disposition"] == ('attachment; filename="r_sum_ __.pdf"; '
                                                      "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.pdf")
        # Not through another request's address (of the same customer, or another's).
        sibling = await another_request(st, "fileco")

        async def recorded() -> None:  # in the database once its workflow has recorded it
            async with st.sessions() as session:
                assert await get_request(session, sibling) is not None, sibling
        await until_passes(recorded, timeout=30, interval=0.2)
        assert (await http.get(f"/workspace/fileco/requests/{sibling}/attachments/{ref}")).status_code == 404
        assert (await http.get(f"/workspace/fileco/requests/{other}/attachments/{ref}")).status_code == 404
        assert (await http.get(f"/workspace/fileother/requests/{other}/attachments/{ref}")).status_code == 404

        # From the portal's message form too: an allowed file is kept with the message, a refused one
        # refuses the message, naming the file, and nothing of it is stored.
        csrf = csrf_of(page.text)
        url = f"/workspace/fileco/requests/{number}/comment"
        sent = await http.post(url, data={"csrf_token": csrf, "message": "And the screenshot."},
                               files={"files": ("screen.png", b"\x89PNG\r\n\x1a\n", "image/png")})
        assert sent.status_code == 303, sent.text
        refused = await http.post(url, data={"csrf_token": csrf, "message": "And the installer."},
                                  files={"files": ("setup.exe", b"MZ", "application/x-msdownload")})
        assert refused.status_code == 422 and "setup.exe: application/x-msdownload files are not kept" in \
            html.unescape(refused.text)
    messages = (await request_status(st.client, number)).messages
    assert [(m.text, [a.filename for a in m.attachments]) for m in messages[-2:]] == [
        (posted.text, ["indexer.log", PDF_NAME]), ("And the screenshot.", ["screen.png"])]
    async with st.sessions() as session:
        names = [r.filename for r in (await session.execute(
            select(RequestAttachmentRow).where(RequestAttachmentRow.tracking_number == number))).scalars()]
    assert sorted(names) == sorted(["indexer.log", PDF_NAME, "screen.png"])


@pytest.mark.rule("A4")
async def test_forged_foreign_late_and_oversized_replies_are_quarantined_and_bounced_once(
    st: Stack, inbound: int
) -> None:
    number = await live_request(st, "quarco")
    other = await live_request(st, "otherco")
    mail = await staff_message(st, number, "Which version do you run?")
    settings = settings_of(st)
    # The token of this request on the address of another: a customer cannot post into a request by
    # editing the tracking number.
    forged = f"reply+{other}.{reply_token(number, reply_secret(settings))}@{settings.reply_domain}"
    cases = {
        "forged": (reply_to(mail, "carol@quarco.example", "Version 23.4.", to=forged),
                   f"is not the one of request {other}"),
        "no token": (reply_to(mail, "carol@quarco.example", "Version 23.4.", to=f"help@{settings.reply_domain}"),
                     "names no request"),
        "stranger": (reply_to(mail, "eve@elsewhere.example", "Let me in."),
                     "eve@elsewhere.example is not a contact of customer quarco"),
        # Over the limit but under twice it: taken, kept, quarantined (beyond, SMTP refuses it with 552).
        "oversized": (reply_to(mail, "carol@quarco.example", "Big logs.", extra="x" * (MAX_BYTES + 200)),
                      f"more than {MAX_BYTES}"),
    }
    before = await thread(st, number)
    for reply, _ in cases.values():
        await send(inbound, reply)
    await update_request(st.client, number, "record_written_acceptance",
                         RecordWrittenAcceptance(by="ops-olga", reference="LTR-1"))
    late = reply_to(mail, "carol@quarco.example", "Thanks, all good.")
    await send(inbound, late)
    cases["closed"] = (late, f"request {number} is closed")

    rows = await inbound_rows(st)
    for name, (reply, reason) in cases.items():
        row = rows[str(reply["Message-ID"])]
        assert row.status == "quarantined" and reason in row.reason, (name, row.reason)
        sender = str(reply["From"])
        bounces = await st.sink.wait_for(lambda m, s=sender: s in str(m["To"]) and "was not added" in str(
            m["Subject"]), timeout=20)
        assert len([b for b in bounces if reason in b.get_body(("plain",)).get_content()]) == 1, name  # type: ignore[union-attr]
    assert await thread(st, number) == before  # nothing posted
    # Each quarantined message is bounced once, even when delivered again.
    await send(inbound, cases["stranger"][0])  # answered 250 once the stored row is found: nothing more
    assert len(st.mails("was not added", to="eve@elsewhere.example")) == 1

    # Ops see the quarantine in the portal, with each reason; a customer contact may not.
    async with signed_in(st, "ops@techconnect.example", Role.ops) as http:
        page = await http.get("/desk/quarantine")
        assert page.status_code == 200, page.text
        for name, (_, reason) in cases.items():
            assert reason in html.unescape(page.text), name
    async with signed_in(st, "carol@quarco.example", Role.contact, "quarco") as http:
        assert (await http.get("/desk/quarantine")).status_code == 403


@pytest.mark.rule("A4")
async def test_a_receiver_killed_after_storing_a_reply_posts_it_once_after_restart(
    st: Stack, tmp_path: Path
) -> None:
    number = await live_request(st, "crashco")
    mail = await staff_message(st, number, "Is the cluster back?")
    port = free_port()
    env = cli_environ(st) | {"TECHCONNECT_INBOUND_PORT": str(port), "TECHCONNECT_INBOUND_HOST": "127.0.0.1",
                             FAULT_ENV: INBOUND_AFTER_STORE, FAULT_DIR_ENV: str(tmp_path)}

    log = tmp_path / "inbound.log"

    async def receiver() -> asyncio.subprocess.Process:
        with log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", "inbound", env=env, stdout=out,
                                                        stderr=out, start_new_session=True)

        async def listening() -> None:
            assert proc.returncode is None, f"techconnect inbound exited {proc.returncode}: {log.read_text()}"
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as err:
                raise AssertionError(f"techconnect inbound not listening on {port} yet: {err}; "
                                     f"{log.read_text()[-600:]}") from err
            writer.close()
        await until_passes(listening, timeout=60, interval=0.2)
        return proc

    reply = reply_to(mail, "carol@crashco.example", "Yes, since 09:40.")
    first = await receiver()
    with pytest.raises(aiosmtplib.SMTPException):  # the receiver dies after storing, before answering
        await send(port, reply)
    assert await asyncio.wait_for(first.wait(), 30) != 0
    assert (await inbound_rows(st))[str(reply["Message-ID"])].status == "received"
    assert ("carol@crashco.example", "mail", "Yes, since 09:40.") not in await thread(st, number)

    second = await receiver()  # the stored message is posted at start
    try:
        async def posted() -> None:
            assert (await inbound_rows(st))[str(reply["Message-ID"])].status == "posted"
        await until_passes(posted, timeout=30, interval=0.3)
        await send(port, reply)  # the sender's server retries: 250, nothing more
        mine = [t for t in await thread(st, number) if t[0] == "carol@crashco.example"]
        assert mine == [("carol@crashco.example", "mail", "Yes, since 09:40.")]
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        await asyncio.wait_for(second.wait(), 30)


@pytest.mark.rule("A4")
async def test_auto_replies_forged_senders_and_unreadable_mail_are_quarantined_without_a_mail_loop(
    st: Stack, inbound: int
) -> None:
    number = await live_request(st, "autoco")
    mail = await staff_message(st, number, "Any news?")
    away = reply_to(mail, "carol@autoco.example", "I am out of the office until Monday.")
    away["Auto-Submitted"] = "auto-replied"
    forged = reply_to(mail, "carol@autoco.example", "Close it, all good.")
    forged["Authentication-Results"] = "mx.techconnect.example; spf=pass smtp.mailfrom=evil.example; dmarc=fail"
    garbled = reply_to(mail, "carol@autoco.example", "Logs follow.")
    garbled.replace_header("Content-Type", 'text/plain; charset="x-no-such-charset"')
    for reply in (away, forged, garbled):
        await send(inbound, reply)
    rows = await inbound_rows(st)
    reasons = {name: rows[str(r["Message-ID"])] for name, r in
               (("away", away), ("forged", forged), ("garbled", garbled))}
    assert all(r.status == "quarantined" for r in reasons.values()), {k: r.status for k, r in reasons.items()}
    assert "automatic message" in reasons["away"].reason
    assert "DMARC or SPF fail" in reasons["forged"].reason
    assert "cannot be read" in reasons["garbled"].reason
    assert [t for t in await thread(st, number) if t[1] == "mail"] == []
    # No answer to an automatic or forged message (no loop, no backscatter); the garbled one is told.
    bounces = [str(m["Subject"]) for m in st.mails("was not added", to="carol@autoco.example")]
    assert len(bounces) == 1, bounces

    # A receiver that takes only its reply domain: any other recipient is refused at RCPT, nothing stored.
    stray = reply_to(mail, "carol@autoco.example", "Hello", to="someone@elsewhere.example")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await send(inbound, stray)
    assert str(stray["Message-ID"]) not in await inbound_rows(st)
