"""A monthly report's draft stays with the staff until approved (rules D7, A9), on SQLite and PostgreSQL.

The customer reaches it by no route: not the workspace's list, not the API's list, not its URL as HTML, JSON
or PDF; the mail activity refuses to attach it; the next report's "documents filed" leaves it out. Staff
read it, PDF included. The draft is filed by the real document activity, the portal is the ASGI app;
`sessions` is the conftest's (migrated, SQLite then PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.documents import DocumentActivities
from activities.templating import make_template_environment
from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.activities import MonthlyReportRequest
from domain.cycle import ReportReview
from portal.app import create_app
from storage import pdfs
from storage import repositories as repo
from storage.db import SessionFactory
from storage.repositories.documents import MONTHLY_REPORT_DRAFT
from storage.tables import CustomerRow, DocumentPdfRow, DocumentRow
from storage.users import Role
from tests.conftest import free_port
from tests.document_samples import CUSTOMER, CUSTOMER_NAME
from tests.mail_fixtures import mail_request, make_mail_activities
from tests.portal_fixtures import UnreachableTemporal, add_staff, seed_tenant, sign_in
from tests.test_document_pdf import pdf_words
from tests.test_documents import at, monthly_request, seed_month

PARIS = ZoneInfo("Europe/Paris")
STAFF = "ops@techconnect.example"


async def file_draft(sessions: SessionFactory) -> int:
    """March 2027's report, version 2 after a send-back, as the month-end cycle files it: a draft."""
    month_start = date(2027, 3, 1)
    draft = await DocumentActivities(sessions, make_template_environment()).generate_monthly_report(
        MonthlyReportRequest(
            customer_id="acme", customer_name="Acme Corp", period=1, month=3, month_start=month_start,
            month_end=month_start.replace(day=31), idempotency_key="draft-acme-m3-v2", draft=True, version=2,
            months_ended=True, reviews=[ReportReview(version=1, decision="sent_back", by="tl-alice",
                                                     at=datetime(2027, 4, 1, 9, tzinfo=PARIS),
                                                     comments="Name the patch level.")]))
    async with sessions() as s:
        row = await s.get(DocumentRow, draft.document_id)
    assert row is not None and row.kind == MONTHLY_REPORT_DRAFT
    return draft.document_id


@pytest.mark.rule("D7", "A9")
async def test_the_customer_reaches_a_draft_by_no_route_and_staff_get_its_pdf(
        sessions: SessionFactory, tmp_path: Path, database_url: str) -> None:
    tenant = await seed_tenant(sessions, "acme", "tl-alice")
    await add_staff(sessions, STAFF, Role.ops)
    draft_id = await file_draft(sessions)
    settings = Settings(data_dir=tmp_path, database_url=database_url, portal_secret="test-secret-" + "x" * 20)
    app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as contact:
            await sign_in(contact, tenant.contact_email)
            for url in (f"/workspace/acme/documents/{draft_id}.pdf", f"/workspace/acme/documents/{draft_id}",
                        f"/api/customers/acme/documents/{draft_id}"):
                refused = await contact.get(url)
                assert refused.status_code == 404, (url, refused.status_code)
                assert refused.headers["content-type"] != pdfs.PDF_CONTENT_TYPE
            # The published document beside it is served: the 404s above are the draft's.
            assert (await contact.get(f"/workspace/acme/documents/{tenant.document_id}.pdf")).status_code == 200
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as api:
            token = {"Authorization": f"Bearer {tenant.tokens[tenant.contact_email]}"}
            listed = await api.get("/api/customers/acme/documents", headers=token)
            assert listed.status_code == 200, listed.text
            assert [d["id"] for d in listed.json()] == [tenant.document_id]
            by_id = await api.get(f"/api/customers/acme/documents/{draft_id}", headers=token)
            assert by_id.status_code == 404
        async with sessions() as s:
            assert await s.get(DocumentPdfRow, draft_id) is None  # nothing was rendered for the contact

        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as staff:
            await sign_in(staff, STAFF)
            pdf = await staff.get(f"/workspace/acme/documents/{draft_id}.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == pdfs.PDF_CONTENT_TYPE
    assert "No call held this month" in pdf_words(pdf.content, tmp_path)


@pytest.mark.rule("D7", "A9")
async def test_the_mail_activity_never_attaches_a_draft(sessions: SessionFactory, tmp_path: Path) -> None:
    await seed_tenant(sessions, "acme", "tl-alice")
    draft_id = await file_draft(sessions)
    async with SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        mail = make_mail_activities(sessions, sink)
        for key, customer in (("to-the-customer", "acme"), ("no-customer-named", None)):
            with pytest.raises(ApplicationError) as info:
                await mail.send_mail(mail_request(key, customer_id=customer, attach_document_id=draft_id))
            assert info.value.type == "DocumentIsDraft" and info.value.non_retryable, key
            assert f"document {draft_id} is an unapproved draft" in str(info.value)
        assert sink.received == 0
    async with sessions() as s:
        assert await s.get(DocumentPdfRow, draft_id) is None


@pytest.mark.rule("D7")
async def test_the_next_report_lists_the_published_report_and_not_the_draft(sessions: SessionFactory) -> None:
    """February's report drafted on 3 March and approved on 4 March: March's report files the approved one."""
    async with sessions() as s, s.begin():
        s.add(CustomerRow(id=CUSTOMER, name=CUSTOMER_NAME, maintenance_subscription_id="SMP-1",
                          created_at=datetime(2027, 1, 1, tzinfo=UTC)))
    await seed_month(sessions)
    async with sessions() as s, s.begin():
        for key, kind, title, day in (
                ("feb-draft", MONTHLY_REPORT_DRAFT, "February 2027 report DRAFT-V1", 3),
                ("feb-report", "monthly_report", "February 2027 report", 4)):
            await repo.insert_document(s, customer_id=CUSTOMER, period=1, kind=kind, title=title, body_text="",
                                       body_html="", idempotency_key=key, now=at(day))
    acts = DocumentActivities(sessions, make_template_environment())
    report = await ActivityEnvironment().run(acts.generate_monthly_report, monthly_request())
    async with sessions() as s:
        row = await s.get(DocumentRow, report.document_id)
    assert row is not None
    filed = [d["title"] for d in row.data["sections"]["communications"]["documents"]]
    assert filed == ["Site inventory v1", "Communication plan", "February 2027 report"]
    assert "3 documents filed" in report.summary
    assert "DRAFT-V1" not in row.body_text and "DRAFT-V1" not in row.body_html
