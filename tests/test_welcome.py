"""`EnrolmentActivities.send_welcome`: a new period's welcome document and its two mails in one activity
(`welcome-in-one-activity`), each mail with its own outbox row, against a real SMTP sink and database.

What the three activities it stands for did on their own must still hold: a mail refused for good is told to
the workflow without failing the others; a filing that fails does not hold the mails back; a retry sends
nothing twice.
"""

from __future__ import annotations

import dataclasses
import email.message
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.mailer import SmtpMailer, TransientMailError
from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.activities import FileDocumentRequest, Welcome
from storage.db import SessionFactory
from storage.repositories import get_programme, list_documents, list_outbox
from tests.document_samples import sample_contexts
from tests.harness import Stack, add_subscription, enrolment, eventually
from tests.mail_fixtures import (  # the module's `sink` and `sessions` fixtures
    mail_request,
    mail_sessions,  # noqa: F401
    mail_sink,  # noqa: F401
    sample_context,
)
from worker import ActivitySet, build_activities


@pytest.fixture
def acts(sessions: SessionFactory, sink: SmtpSink, tmp_path: Path) -> ActivitySet:
    return build_activities(Settings(data_dir=tmp_path, smtp_host=sink.host, smtp_port=sink.port), sessions)


def welcome(tl_address: str = "alice@support.example", template: str = "welcome") -> Welcome:
    context: dict[str, Any] = sample_contexts()["welcome"]
    return Welcome(
        document=FileDocumentRequest(customer_id="acme", period=1, kind="welcome", title="Welcome to TechConnect",
                                     template=template, context=context,
                                     idempotency_key="program-acme:p1:doc:welcome:v1"),
        mails=[mail_request("program-acme:p1:mail:welcome"),
               mail_request("program-acme:p1:mail:tl_assignment", to=[tl_address], template="tl_assignment",
                            context=sample_context("tl_assignment"))])


async def test_the_welcome_files_its_document_and_sends_both_mails_once_however_often_it_runs(
        acts: ActivitySet, sessions: SessionFactory, sink: SmtpSink) -> None:
    first = await ActivityEnvironment().run(acts.enrolment.send_welcome, welcome())
    assert [m.result.status if m.result else m.refused for m in first.mails] == ["sent", "sent"]
    await sink.wait_for(count=2)
    again = await ActivityEnvironment().run(acts.enrolment.send_welcome, welcome())  # a retry, or a worker restart
    assert [m.result.status if m.result else m.refused for m in again.mails] == ["already_sent", "already_sent"]
    assert again.document == first.document
    async with sessions() as session:
        assert [d.kind for d in await list_documents(session, "acme")] == ["welcome"]
        assert sorted((r.template, r.status) for r in await list_outbox(session, customer_id="acme")) == [
            ("tl_assignment", "sent"), ("welcome", "sent")]
    assert sorted(str(m["X-TechConnect-Template"]) for m in sink.messages) == ["tl_assignment", "welcome"]
    assert sink.received == 2 and not sink.duplicates


async def test_a_mail_refused_for_good_is_told_to_the_workflow_and_the_other_still_goes(
        acts: ActivitySet, sessions: SessionFactory, sink: SmtpSink) -> None:
    """An address no relay takes (a local part outside ASCII): that mail's outcome says why, its row is failed;
    the document is filed and the contacts' welcome is sent, and the activity itself succeeds (no retry)."""
    sent = await ActivityEnvironment().run(acts.enrolment.send_welcome, welcome(tl_address="zoë@support.example"))
    outcome = {m.idempotency_key: m for m in sent.mails}
    refused = outcome["program-acme:p1:mail:tl_assignment"]
    assert refused.result is None and refused.refused is not None and "SMTPUTF8" in refused.refused
    assert outcome["program-acme:p1:mail:welcome"].result is not None
    (msg,) = await sink.wait_for(count=1)
    assert msg["X-TechConnect-Template"] == "welcome"
    async with sessions() as session:
        rows = {r.template: r.status for r in await list_outbox(session, customer_id="acme")}
        assert [d.kind for d in await list_documents(session, "acme")] == ["welcome"]
    assert rows == {"welcome": "sent", "tl_assignment": "failed"}


async def test_a_filing_that_fails_does_not_hold_the_mails_back(
        acts: ActivitySet, sessions: SessionFactory, sink: SmtpSink) -> None:
    """The filing's error is raised (the activity is retried) only after both mails went, so a broken document
    template delays the document alone, as when the three were activities of their own."""
    with pytest.raises(Exception, match="no-such-document"):
        await ActivityEnvironment().run(acts.enrolment.send_welcome, welcome(template="no-such-document"))
    await sink.wait_for(count=2)
    async with sessions() as session:
        assert await list_documents(session, "acme") == []
        assert sorted(r.status for r in await list_outbox(session, customer_id="acme")) == ["sent", "sent"]
    # The retry, with the template fixed: the document is filed, the mails are not sent again.
    fixed = await ActivityEnvironment().run(acts.enrolment.send_welcome, welcome())
    assert [m.result.status for m in fixed.mails if m.result] == ["already_sent", "already_sent"]
    assert sink.received == 2


async def test_a_programme_records_the_welcome_mail_refused_for_good_and_goes_on(st: Stack) -> None:
    """The workflow's side: the refused mail is in the programme's `mail_failures`, as a `send_mail` of its own
    refused for good was, and the programme is onboarding with its workspace and welcome."""
    start = (await st.now()).date() + timedelta(days=30)  # nothing falls due at enrolment, whatever the hour
    await add_subscription(st.sessions, "zoe", start - timedelta(days=1), start + timedelta(days=800))
    await st.start(enrolment("zoe", start, technical_lead={
        "id": "tl-zoe", "name": "Zoë Ärger", "email": "zoë@support.example"}))
    status = await eventually(lambda: st.status("zoe"), lambda s: bool(s.mail_failures),
                              "the refused TL mail recorded", timeout=60)
    assert status.phase.value == "onboarding" and status.workspace_id == "ws-zoe"
    (failure,) = status.mail_failures
    assert failure.startswith("tl_assignment to zoë@support.example: ") and "SMTPUTF8" in failure, failure
    (welcome_mail,) = await st.sink.wait_for(count=1)
    assert welcome_mail["X-TechConnect-Template"] == "welcome"
    async with st.sessions() as session:
        assert [d.kind for d in await list_documents(session, "zoe")] == ["welcome"]
        row = await get_programme(session, "zoe")
    # Saved after the welcome: the projection says so too (what the ops pages show).
    assert row is not None and row.status["mail_failures"] == [failure]


@dataclass(eq=False)
class RelayRefusingWelcomeForNow(SmtpMailer):
    """A relay that answers 4xx to the contacts' welcome while `busy`: a temporary failure of that mail alone."""

    busy: bool = True

    async def send(self, message: email.message.Message) -> None:
        if self.busy and message["X-TechConnect-Template"] == "welcome":
            raise TransientMailError("451 4.3.0 mailbox busy, try later")
        await super().send(message)


async def test_a_mail_the_relay_cannot_take_yet_does_not_hold_back_the_next(
        sessions: SessionFactory, sink: SmtpSink, tmp_path: Path) -> None:
    """The welcome mail fails for now: the TL's mail still goes in the same attempt, and the error is raised after
    it (the activity is retried); the retry sends the welcome only, once the relay takes it."""
    relay = RelayRefusingWelcomeForNow(sink.host, sink.port, timeout=5)
    acts = build_activities(Settings(data_dir=tmp_path), sessions, mailer=relay)
    with pytest.raises(TransientMailError, match="451"):
        await ActivityEnvironment().run(acts.enrolment.send_welcome, welcome())
    (tl_mail,) = await sink.wait_for(count=1)
    assert tl_mail["X-TechConnect-Template"] == "tl_assignment"
    relay.busy = False
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    sent = await retry.run(acts.enrolment.send_welcome, welcome())
    assert [m.result.status for m in sent.mails if m.result] == ["sent", "already_sent"]
    assert sorted(str(m["X-TechConnect-Template"]) for m in sink.messages) == ["tl_assignment", "welcome"]
    assert sink.received == 2


async def test_a_retry_does_not_offer_a_refused_mail_to_the_relay_again(
        acts: ActivitySet, sessions: SessionFactory, sink: SmtpSink) -> None:
    """Attempt 1: the document fails (its template is missing), the welcome goes, the TL's mail is refused for good.
    Attempt 2 (the template back): the document is filed, the welcome is "already sent", and the TL's mail is told
    refused as attempt 1 refused it, from its row, which no new attempt touched."""
    with pytest.raises(Exception, match="no-such-document"):
        await ActivityEnvironment().run(acts.enrolment.send_welcome,
                                        welcome(tl_address="zoë@support.example", template="no-such-document"))
    async with sessions() as session:
        (refused_row,) = [r for r in await list_outbox(session, customer_id="acme") if r.template == "tl_assignment"]
    assert (refused_row.status, refused_row.attempts) == ("failed", 1)
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2)
    sent = await retry.run(acts.enrolment.send_welcome, welcome(tl_address="zoë@support.example"))
    outcome = {m.idempotency_key: m for m in sent.mails}
    assert outcome["program-acme:p1:mail:welcome"].result is not None
    assert outcome["program-acme:p1:mail:welcome"].result.status == "already_sent"
    assert outcome["program-acme:p1:mail:tl_assignment"].refused == (
        f"mail program-acme:p1:mail:tl_assignment refused: {refused_row.last_error}")
    async with sessions() as session:
        rows = {r.template: (r.status, r.attempts) for r in await list_outbox(session, customer_id="acme")}
        assert [d.kind for d in await list_documents(session, "acme")] == ["welcome"]
    assert rows == {"welcome": ("sent", 1), "tl_assignment": ("failed", 1)}
    assert sink.received == 1
