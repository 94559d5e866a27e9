"""What the mail tests share (tests/test_mail.py, test_mail_retry.py, test_draft_privacy.py, test_document_pdf.py):
one sample context per mail template (the contract between workflows and templates), a database with a
customer, documents filed as the documents activity would, and the mail activity on a sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.mail import MailActivities
from activities.mailer import SmtpMailer
from activities.templating import TEMPLATES_DIR, make_template_environment
from devstack.smtp_sink import SmtpSink
from domain.activities import MailRequest
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.tables import Base, CustomerRow, DocumentRow, OutboxRow
from testing.servers import free_port

SENDER = "TechConnect <techconnect@support.example>"
ALICE = {"name": "Alice Martin", "email": "alice@support.example"}
BOB = {"name": "Bob Stone", "email": "bob@acme.example"}
BASE = {"customer_name": "ACME Corp", "customer_id": "acme", "portal_url": "http://127.0.0.1:8000/w/acme"}

# One sample context per mail template: the contract between workflows and templates.
SAMPLE_CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome": {
        "period_start": "2025-01-04",
        "period_end": "2026-01-03",
        "technical_lead": ALICE,
        "handbook_version": "TechConnect handbook FR, OpenText, rev. 2024",
        "workspace_url": "http://127.0.0.1:8000/w/acme",
        "deliverables": [
            {"id": "D4", "title": "Programme planning and review meeting", "frequency": "once a period"},
            {"id": "D6", "title": "Follow-up calls", "frequency": "monthly"},
        ],
    },
    "tl_assignment": {
        "technical_lead": ALICE,
        "period_start": "2025-01-04",
        "period_end": "2026-01-03",
        "open_steps": [{"title": "Schedule the kickoff meeting", "due_on": "2025-01-11"}],
    },
    "step_reminder": {"step_title": "Communication plan", "due_on": "2025-02-15", "technical_lead": ALICE},
    "step_escalation": {"step_title": "Communication plan", "due_on": "2025-02-15", "technical_lead": ALICE},
    "step_rejected": {"step": "kickoff_held", "reason": "the kickoff is not scheduled yet", "by": "tl-alice"},
    "tl_reassigned": {"previous_technical_lead": ALICE, "technical_lead": BOB, "reason": "rule C7: workload"},
    "contact_added": {"contact": BOB},
    "kickoff_scheduled": {
        "meeting_at": "2025-01-12T09:30:00+00:00",
        "attendance": "remote",
        "location": "Teams",
        "technical_lead": ALICE,
    },
    "call_invite": {
        "call_at": "2025-02-03T14:00:00+00:00",
        "dial_in": "https://teams.example/l/acme",
        "agenda": "Open issues\nComing changes",
        "month_label": "February 2025",
        "technical_lead": ALICE,
    },
    "monthly_report": {
        "month_label": "February 2025",
        "summary": "3 open, 5 closed, 1 pending.",
        "technical_lead": ALICE,
    },
    "renewal_notice": {
        "period_end": "2026-01-03",
        "current_price": {"amount": "48000.00", "currency": "EUR"},
        "next_price": {"amount": "52800.00", "currency": "EUR"},
        "non_renewal_deadline": "2025-10-05",
    },
    "renewal_invoice_unpaid": {
        "invoice": {"number": "TC-INV-ACME-P2", "due_on": "2026-01-03", "total": {"amount": "52800.00",
                                                                                "currency": "EUR"}},
        "period_end": "2026-01-03", "starts_unpaid": True,
    },
    "maintenance_lapse_warning": {
        "period_end": "2026-01-03", "next_period": 2, "check": 1, "technical_lead": ALICE,
        "maintenance_subscription_id": "SMP-1001",
        "detail": "rule E1: maintenance subscription SMP-1001 ends on 2026-06-30, inside the period",
    },
    "non_renewal_reminder": {"non_renewal_deadline": "2025-10-05", "period_end": "2026-01-03"},
    "non_renewal_accepted": {
        "party": "customer",
        "received_on": "2025-09-01",
        "reference": "LTR-2027-17",
        "period_end": "2026-01-03",
    },
    "programme_closed": {"period_end": "2026-01-03", "reason": "non-renewal notice from the customer"},
    "document_filed": {"document_title": "Communication plan 2027", "kind": "communication_plan"},
    # Support requests (A1, A4, C12): SupportRequestWorkflow passes more keys than each uses.
    "request_opened": {
        "technical_lead": ALICE, "tracking_number": "TC-ACME-2027-0001", "kind": "support", "priority": "high",
        "summary": "Search returns nothing", "description": "Since the patch.", "filed_by": "carol",
        "channel": "cli", "opened_at_local": "Fri 26 Mar 2027 16:30 Europe/Paris",
        "deadline_local": "Tue 30 Mar 2027 09:30 Europe/Paris", "first_response_minutes": 60,
        "round_the_clock": False,
    },
    "request_sla_warning": {
        "technical_lead": ALICE, "tracking_number": "TC-ACME-2027-0001", "kind": "support", "priority": "high",
        "summary": "Search returns nothing", "opened_at_local": "Fri 26 Mar 2027 16:30 Europe/Paris",
        "deadline_local": "Tue 30 Mar 2027 09:30 Europe/Paris", "first_response_minutes": 60, "minutes_left": 15,
    },
    "reply_not_posted": {"subject": "Re: TC-ACME-2027-0001", "reason": "request TC-ACME-2027-0001 is closed"},
    "request_message": {
        "tracking_number": "TC-ACME-2027-0001", "summary": "Search returns nothing",
        "state": "open",
        "message": {"seq": 2, "at": "2025-03-26T15:40:00+00:00", "by": "carol@acme.example", "role": "customer",
                    "via": "portal", "text": "The logs are attached."},
    },
    "request_sla_breached": {
        "technical_lead": ALICE, "tracking_number": "TC-ACME-2027-0001", "kind": "support", "priority": "high",
        "summary": "Search returns nothing", "filed_by": "carol", "channel": "cli",
        "opened_at_local": "Fri 26 Mar 2027 16:30 Europe/Paris",
        "deadline_local": "Tue 30 Mar 2027 09:30 Europe/Paris", "first_response_minutes": 60,
    },
    "dispatch_requested": {
        "tracking_number": "TC-ACME-2027-0001", "summary": "Search returns nothing",
        "dispatch": {"reason": "disk controller", "estimated_cost": {"amount": "1800.00", "currency": "EUR"},
                     "agreement_ref": "AGR-9", "requested_by": "tl-alice",
                     "customer_due_local": "Wed 31 Mar 2027 17:00 Europe/Paris",
                     "manager_due_local": "Tue 30 Mar 2027 17:00 Europe/Paris"},
    },
    "dispatch_booked": {
        "technical_lead": ALICE, "tracking_number": "TC-ACME-2027-0001", "summary": "Search returns nothing",
        "audience": "contacts",
        "dispatch": {"reason": "disk controller", "estimated_cost": {"amount": "1800.00", "currency": "EUR"},
                     "agreement_ref": "AGR-9", "engineer": "Dana Levy", "engineer_email": "dana@field.example",
                     "booking_ref": "BK-0123456789"},
    },
    "dispatch_refused": {
        "technical_lead": ALICE, "tracking_number": "TC-ACME-2027-0001", "summary": "Search returns nothing",
        "state": "open", "refusal": "rule A4: dispatch #1 refused: the customer's approval was not given in time",
        "dispatch": {"number": 1, "reason": "disk controller",
                     "estimated_cost": {"amount": "1800.00", "currency": "EUR"}, "agreement_ref": "AGR-9",
                     "customer_due_local": "Wed 31 Mar 2027 17:00 Europe/Paris",
                     "manager_due_local": "Tue 30 Mar 2027 17:00 Europe/Paris"},
    },
    # The portal mails customer contacts a one-time sign-in link (issue 4).
    "sign_in_link": {"name": "Carol Diaz", "link_url": "http://127.0.0.1:8000/login/link/abc", "expires_minutes": 15},
}


def sample_context(name: str) -> dict[str, Any]:
    return {**BASE, **SAMPLE_CONTEXTS[name]}


def mail_template_names() -> list[str]:
    return sorted(p.name.removesuffix(".subject.j2") for p in (TEMPLATES_DIR / "mail").glob("*.subject.j2"))


# ---- plumbing shared with test_mail_retry.py ------------------------------------
@asynccontextmanager
async def database(url: str) -> AsyncIterator[SessionFactory]:
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        async with make_session_factory(engine)() as session:
            session.add(
                CustomerRow(id="acme", name="ACME Corp", maintenance_subscription_id="SMP-1001", created_at=utc_now())
            )
            await session.commit()
        yield make_session_factory(engine)
    finally:
        await engine.dispose()


def utc_now() -> datetime:
    """When the test's own rows were created: any fixed instant (nothing here compares it with a clock)."""
    return datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def add_document(
    session: AsyncSession, customer_id: str, kind: str, title: str, body_text: str, body_html: str, key: str
) -> int:
    """Stores a period-1 document as the documents activity would, commits, and returns its id."""
    doc = DocumentRow(
        customer_id=customer_id,
        period=1,
        kind=kind,
        title=title,
        body_text=body_text,
        body_html=body_html,
        data={},
        idempotency_key=key,
        created_at=utc_now(),
    )
    session.add(doc)
    await session.commit()
    return doc.id


def make_mail_activities(sessions: SessionFactory, sink: SmtpSink, mailer: SmtpMailer | None = None) -> MailActivities:
    return MailActivities(
        sessions, mailer or SmtpMailer(sink.host, sink.port, timeout=5), make_template_environment(), SENDER
    )


def mail_request(key: str = "program-acme-p1-welcome", **overrides: Any) -> MailRequest:
    values: dict[str, Any] = {
        "idempotency_key": key,
        "to": ["bob@acme.example"],
        "template": "welcome",
        "context": sample_context("welcome"),
        "customer_id": "acme",
    }
    values.update(overrides)
    return MailRequest(**values)


async def outbox_row(sessions: SessionFactory, key: str) -> OutboxRow:
    async with sessions() as session:
        return (await session.scalars(select(OutboxRow).where(OutboxRow.idempotency_key == key))).one()


# The two fixtures of the modules that test mail against a sink: `from tests.mail_fixtures import mail_sink,
# mail_sessions` makes them that module's `sink` and `sessions` (the latter in place of conftest's migrated one).
@pytest_asyncio.fixture(name="sink")
async def mail_sink(tmp_path: Path) -> AsyncIterator[SmtpSink]:
    async with SmtpSink(port=free_port(), directory=tmp_path / "mail") as running:
        yield running


@pytest_asyncio.fixture(name="sessions")
async def mail_sessions(sqlite_url: str) -> AsyncIterator[SessionFactory]:
    async with database(sqlite_url) as factory:  # customer "acme" included
        yield factory
