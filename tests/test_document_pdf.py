"""Workspace documents as PDF (D10, A9): what a mail carries and what the portal hands out.

Documents are filed by the real DocumentActivities, mailed by the real MailActivities over SMTP to the
embedded sink, and the received message's PDF part is turned back into text by Debian's `pdftotext`
(poppler-utils): the customer, the period and the figures must be in it. The portal's download is checked
over ASGI with the same tenant isolation as the HTML document.
"""

from __future__ import annotations

import asyncio
import csv
import email.message
import io
import os
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from activities.documents import CHART_TITLE, DocumentActivities
from activities.mail import MailActivities, _safe_filename
from activities.mailer import SmtpMailer
from activities.report_print import PDF_BREACH_ROWS, PDF_DISPATCH_ROWS, PDF_REQUEST_ROWS, capped_print_context
from activities.templating import make_template_environment
from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.activities import FileDocumentRequest, FinalReportRequest, MailRequest
from portal.app import create_app
from portal.routers.workspace import PDF_RENDERS_WAITING, PDF_RETRY_AFTER_S
from storage import pdfs
from storage import repositories as repo
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.tables import Base, CustomerRow, DocumentPdfRow, DocumentRow
from testing.databases import migrated_sessions
from testing.report_month import CUSTOMER, open_db, report_request, seed
from tests.conftest import free_port
from tests.document_samples import sample_contexts
from tests.mail_fixtures import sample_context
from tests.portal_fixtures import InProcess, Tenant, UnreachableTemporal, seed_tenant, sign_in
from tests.test_documents import closing_status

SENDER = "TechConnect <techconnect@support.example>"
TRACKING = re.compile(r"TC-[A-Z]+-2027-\d{5}")
# The name test_documents files its samples under: markup in it must come out of the PDF as written.
SAMPLE_CUSTOMER = "ACME & Sons <Ltd>"


def pdftotext() -> str:
    """Debian's pdftotext (poppler-utils, installed by `make install`); never a download. In CI it must be there."""
    found = shutil.which("pdftotext")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdftotext is not on PATH in CI: `make install` installs Debian's poppler-utils as root")
        pytest.skip("pdftotext is not installed (apt-get install poppler-utils)")
    return found


def pdf_words(pdf: bytes, tmp_path: Path) -> str:
    """The PDF's text, every run of white space made one space (table columns, wrapped lines)."""
    assert pdf.startswith(b"%PDF-"), pdf[:20]
    source = tmp_path / "document.pdf"
    source.write_bytes(pdf)
    out = subprocess.run([pdftotext(), "-layout", str(source), "-"], capture_output=True, text=True, timeout=60,
                         check=True)
    return " ".join(out.stdout.split())


def one_line(value: str) -> str:
    return " ".join(value.split())


async def mail_with_document(sessions: SessionFactory, sink: SmtpSink, document_id: int, template: str,
                             context: dict[str, Any], customer_id: str = CUSTOMER) -> email.message.EmailMessage:
    """Send `template` carrying the document through the real mail activity; the message the sink received."""
    mail = MailActivities(sessions, SmtpMailer(sink.host, sink.port, timeout=5), make_template_environment(), SENDER)
    request = MailRequest(idempotency_key=f"pdf-test:{template}:{document_id}", to=["bob@acme.example"],
                          template=template, customer_id=customer_id, attach_document_id=document_id,
                          context=context)
    assert (await mail.send_mail(request)).status == "sent"
    (msg,) = await sink.wait_for(count=1)
    return msg


def pdf_attachment(msg: email.message.EmailMessage, title: str) -> bytes:
    parts = [p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert len(parts) == 1, [p.get_content_type() for p in msg.iter_attachments()]
    assert parts[0].get_filename() == _safe_filename(title, ".pdf"), parts[0].get_filename()
    # Beside the HTML the mail carried before PDFs, not instead of it.
    assert any(p.get_content_type() == "text/html" for p in msg.iter_attachments())
    content = parts[0].get_content()
    assert isinstance(content, bytes)
    return content


async def stored(sessions: SessionFactory, document_id: int) -> bytes:
    async with sessions() as s:
        row = await s.get(DocumentPdfRow, document_id)
    assert row is not None, f"no PDF stored for document {document_id}"
    return row.pdf


@pytest.mark.rule("D10", "A9", "A6")
async def test_monthly_report_mail_carries_a_pdf_with_its_figures_chart_and_capped_listing(
        sqlite_url: str, tmp_path: Path) -> None:
    async with open_db(sqlite_url) as sessions, SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        await seed(sessions, 300)
        draft = await DocumentActivities(sessions, make_template_environment()).generate_monthly_report(
            report_request())
        async with sessions() as s:
            row = await s.get(DocumentRow, draft.document_id)
        assert row is not None
        # Filing renders no PDF (the activity is benchmarked): only the capped HTML it is printed from later.
        async with sessions() as s:
            assert await s.get(DocumentPdfRow, row.id) is None
        assert pdfs.PRINT_HTML_KEY in row.data
        msg = await mail_with_document(sessions, sink, row.id, "monthly_report", {
            "customer_name": "ACME Corp", "customer_id": CUSTOMER, "portal_url": "http://127.0.0.1:8000/w/acme",
            "month_label": "March 2027", "summary": row.data["summary"],
            "technical_lead": {"name": "Alice Martin", "email": "alice@support.example"}})
        pdf = pdf_attachment(msg, row.title)
        assert pdf == await stored(sessions, row.id)  # the mail carried the stored PDF
        assert await pdfs.document_pdf(sessions, row) == pdf  # a second need renders nothing new

    text = pdf_words(pdf, tmp_path)
    req = row.data["sections"]["requests"]
    assert "ACME Corp (acme)" in text and "Programme period 1" in text and one_line(row.title) in text
    assert "1 March 2027 to 31 March 2027" in text
    assert one_line(row.data["summary"]) in text  # "311 support requests (139 open, 43 pending, 129 closed) ..."
    for kind, cells in req["matrix"].items():  # the kind x state table, figure by figure
        figures = " ".join(str(cells.get(state, 0)) for state in req["states"])
        assert f"{kind.capitalize()} {figures} {req['by_kind'][kind]}" in text, kind
    assert CHART_TITLE in text  # the inline SVG chart is drawn, its labels are text

    csv_part = next(p for p in msg.iter_attachments() if p.get_content_type() == "text/csv")
    listing = list(csv.DictReader(io.StringIO(csv_part.get_content())))
    total = sum(req["listed"].values())
    assert len(listing) == total > PDF_REQUEST_ROWS
    assert f"This PDF lists the first {PDF_REQUEST_ROWS} of the {total} requests" in text
    assert f"The full list of {total} requests is in the attached CSV ({csv_part.get_filename()})" in text
    printed = set(TRACKING.findall(text))
    in_csv = {r["tracking_number"] for r in listing}
    # The PDF's rows are the CSV's, at most the cap of requests and of breaches.
    assert printed <= in_csv and PDF_REQUEST_ROWS <= len(printed) <= PDF_REQUEST_ROWS + PDF_BREACH_ROWS


@pytest.mark.rule("D10", "A9", "C14")
async def test_renewal_invoice_pdf_names_the_invoice_and_its_total(sqlite_url: str, tmp_path: Path) -> None:
    async with sample_db(sqlite_url) as sessions, SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        ref = await DocumentActivities(sessions, make_template_environment()).file_document(FileDocumentRequest(
            customer_id=CUSTOMER, period=1, kind="renewal_invoice", title="Renewal invoice TC-INV-ACME-P2",
            template="renewal_invoice", context=sample_contexts()["renewal_invoice"],
            idempotency_key="program-acme:p1:doc:renewal_invoice:v1"))
        msg = await mail_with_document(sessions, sink, ref.document_id, "renewal_notice",
                                       sample_context("renewal_notice") | {"customer_name": SAMPLE_CUSTOMER})
        pdf = pdf_attachment(msg, ref.title)
    text = pdf_words(pdf, tmp_path)
    assert f"{SAMPLE_CUSTOMER} (acme)" in text  # escaped in the HTML, as written in the PDF
    assert "Invoice number TC-INV-ACME-P2" in text and "Due on 3 January 2028" in text
    assert "TechConnect programme, period 2 EUR 50,400.00" in text
    assert "Total due by 3 January 2028 EUR 50,400.00" in text
    assert re.search(r"Page 1 of \d+", text)  # the print CSS of the documents' base template


@pytest.mark.rule("D10", "A9", "C16")
async def test_final_report_pdf_names_the_outcome_steps_and_extras(sqlite_url: str, tmp_path: Path) -> None:
    async with sample_db(sqlite_url) as sessions, SmtpSink(port=free_port(), directory=tmp_path / "mail") as sink:
        ref = await DocumentActivities(sessions, make_template_environment()).generate_final_report(
            FinalReportRequest(status=closing_status(), idempotency_key="program-acme:p1:final"))
        async with sessions() as s:
            row = await s.get(DocumentRow, ref.document_id)
        assert row is not None
        msg = await mail_with_document(sessions, sink, ref.document_id, "programme_closed",
                                       sample_context("programme_closed") | {"customer_name": SAMPLE_CUSTOMER})
        pdf = pdf_attachment(msg, ref.title)
    text = pdf_words(pdf, tmp_path)
    assert "Final report, period 1" in text and f"{SAMPLE_CUSTOMER} (acme)" in text
    assert one_line(row.data["outcome"]) in text and "LTR-42" in text
    assert "EUR 900.00" in text  # the period's extras total
    assert "Second call in May" in text


@pytest.mark.rule("A6")
def test_the_cap_cuts_only_a_listing_longer_than_it() -> None:
    def context(n: int, breaches: int = 0) -> dict[str, Any]:
        rows = [{"tracking_number": f"TC-ACME-2027-{i:05d}"} for i in range(max(n, breaches))]
        return {"sections": {"requests": {"open": rows[: n // 2], "pending": [], "closed": rows[n // 2:n],
                                          "sla_breaches": rows[:breaches]}}}

    assert capped_print_context(context(PDF_REQUEST_ROWS, PDF_BREACH_ROWS), "x.csv") is None
    capped = capped_print_context(context(PDF_REQUEST_ROWS * 3, 10), "x.csv")
    assert capped is not None
    req = capped["sections"]["requests"]
    assert len(req["open"]) == PDF_REQUEST_ROWS and req["closed"] == [] and len(req["sla_breaches"]) == 10
    assert capped["print_cap"] == {"shown": PDF_REQUEST_ROWS, "total": PDF_REQUEST_ROWS * 3, "csv": "x.csv",
                                   "listed": {"open": PDF_REQUEST_ROWS * 3 // 2, "pending": 0,
                                              "closed": PDF_REQUEST_ROWS * 3 // 2},
                                   "breaches": 10, "breaches_shown": 10, "dispatches": 0, "dispatches_shown": 0}
    only_breaches = capped_print_context(context(10, PDF_BREACH_ROWS + 1), "x.csv")
    assert only_breaches is not None and len(only_breaches["sections"]["requests"]["sla_breaches"]) == PDF_BREACH_ROWS
    visits = context(10) | {"sections": context(10)["sections"] | {
        "dispatches": {"count": PDF_DISPATCH_ROWS + 1, "entries": [{"seq": 1}] * (PDF_DISPATCH_ROWS + 1)}}}
    only_dispatches = capped_print_context(visits, "x.csv")
    assert only_dispatches is not None
    cut = only_dispatches["sections"]["dispatches"]
    assert len(cut["entries"]) == PDF_DISPATCH_ROWS and cut["count"] == PDF_DISPATCH_ROWS + 1  # figures stay whole


# ---- the portal ------------------------------------------------------------------------------------


class sample_db:  # used like a function: `async with sample_db(url) as sessions`
    """Tables and the customer of test_documents' samples."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    async def __aenter__(self) -> SessionFactory:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        factory = make_session_factory(self.engine)
        async with factory() as s, s.begin():
            s.add(CustomerRow(id=CUSTOMER, name=SAMPLE_CUSTOMER, maintenance_subscription_id="SMP-1",
                              created_at=datetime(2027, 1, 1, tzinfo=UTC)))
        return factory

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.dispose()


@dataclass
class Portal(InProcess):
    app: Any
    sessions: SessionFactory
    mine: Tenant
    other: Tenant


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    async with migrated_sessions(sqlite_url) as sessions:
        mine = await seed_tenant(sessions, "acme", "tl-alice")
        other = await seed_tenant(sessions, "globex", "tl-bob")
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            yield Portal(app, sessions, mine, other)


@pytest.mark.rule("D10", "A9")
async def test_portal_hands_the_owner_the_pdf_and_another_customer_a_404(portal: Portal, tmp_path: Path) -> None:
    mine, other = portal.mine, portal.other
    async with portal.client() as http:
        await sign_in(http, mine.contact_email)
        workspace = await http.get(f"/workspace/{mine.customer_id}")
        link = f"/workspace/{mine.customer_id}/documents/{mine.document_id}.pdf"
        assert f'href="{link}"' in workspace.text  # the "PDF" link beside the document
        page = await http.get(f"/workspace/{mine.customer_id}/documents/{mine.document_id}")
        assert page.status_code == 200 and f'href="{link}"' in page.text

        response = await http.get(link)
        assert response.status_code == 200, response.text[:300]
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"].endswith("filename*=UTF-8''Welcome%2C%20acme.pdf")
        assert "Welcome acme" in pdf_words(response.content, tmp_path)
        assert (await http.get(link)).content == response.content == await stored(portal.sessions, mine.document_id)

        # Another customer's document, by its own path or under mine: 404, and nothing rendered for it.
        for url in (f"/workspace/{other.customer_id}/documents/{other.document_id}.pdf",
                    f"/workspace/{mine.customer_id}/documents/{other.document_id}.pdf",
                    f"/workspace/{mine.customer_id}/documents/999999.pdf"):
            refused = await http.get(url)
            assert refused.status_code == 404, (url, refused.status_code)
            assert refused.headers["content-type"] != "application/pdf"
    async with portal.sessions() as s:
        assert await s.get(DocumentPdfRow, other.document_id) is None


@pytest.mark.rule("A9")
def test_a_pdf_is_only_fetched_from_data_uris(tmp_path: Path) -> None:
    """A URL in a document never makes the server read a file or call out while printing it.

    A style sheet is what WeasyPrint does fetch and draw from (it never draws text from an <object>, an
    <iframe> or an <img> of text): were file:// allowed, its `content` would be in the PDF. A data: sheet,
    allowed, is drawn: the fetch itself works."""
    css = tmp_path / "secret.css"
    css.write_text('h1::after { content: "TOP-SECRET"; }')
    allowed = "data:text/css,h2%3A%3Aafter%7Bcontent%3A%22DATA-SHEET%22%7D"
    html = (f'<html><head><link rel="stylesheet" href="{css.as_uri()}"><link rel="stylesheet" href="{allowed}">'
            '</head><body><h1>Doc</h1><h2>Part</h2></body></html>')
    text = pdf_words(pdfs.render_pdf(html), tmp_path)
    assert "Doc" in text and "DATA-SHEET" in text
    assert "TOP-SECRET" not in text


# ---- the render thread -------------------------------------------------------------------------


class HeldRender:
    """A stand-in for WeasyPrint that holds every render until released: what is queued, on which thread."""

    def __init__(self) -> None:
        self.release, self.started = threading.Event(), threading.Event()
        self.calls: list[tuple[str, str]] = []  # (html, thread name)

    def __call__(self, html: str) -> bytes:
        self.calls.append((html, threading.current_thread().name))
        self.started.set()
        assert self.release.wait(60), "the test never released the render"
        return b"%PDF-1.7 held " + html.encode()


async def add_documents(sessions: SessionFactory, customer_id: str, n: int, tag: str) -> list[DocumentRow]:
    async with sessions() as s, s.begin():
        return [(await repo.insert_document(
            s, customer_id=customer_id, period=1, kind="notice", title=f"{tag} {i}", body_text=f"{tag} {i}",
            body_html=f"<p>{tag} {i}</p>", idempotency_key=f"{tag}-{i}")).row for i in range(n)]


async def in_flight(n: int, within_s: float = 20) -> None:
    """Until `n` renders are under way in this process (each first looks in the store), or fail saying how many."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while (seen := pdfs.renders_in_flight()) < n:
        assert loop.time() < deadline, f"{seen} renders under way after {within_s} s, expected {n}"
        await asyncio.sleep(0.01)


@pytest.mark.rule("A9")
async def test_renders_queue_on_their_own_thread_once_a_document_and_leave_the_default_executor_free(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldRender()
    monkeypatch.setattr(pdfs, "render_pdf", held)
    async with sample_db(sqlite_url) as sessions:
        # More renders than the default executor has threads on any machine (32 at most).
        docs = await add_documents(sessions, CUSTOMER, 40, "Notice")
        first = [asyncio.create_task(pdfs.document_pdf(sessions, docs[0])) for _ in range(3)]
        try:
            assert await asyncio.to_thread(held.started.wait, 10)
            rest = [asyncio.create_task(pdfs.document_pdf(sessions, d)) for d in docs[1:]]
            await in_flight(40)
            # Sign-in's password hashing, getaddrinfo, charts: the default executor still answers at once.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 5) == "free"
            with pytest.raises(pdfs.PdfBusy):  # a face that must answer soon is told to come back
                await pdfs.document_pdf(sessions, (await add_documents(sessions, CUSTOMER, 1, "Late"))[0],
                                        max_in_flight=4)
            # ... but joining a render under way is never refused.
            joined = asyncio.create_task(pdfs.document_pdf(sessions, docs[0], max_in_flight=4))
        finally:
            held.release.set()
        results = await asyncio.wait_for(asyncio.gather(*first, joined, *rest), 60)
    assert len(set(results[:4])) == 1 and results[0] == b"%PDF-1.7 held <p>Notice 0</p>"
    # One render per document, however many asked; all on the PDF thread.
    assert sorted(h for h, _ in held.calls) == sorted(d.body_html for d in docs)
    assert {name.split("_")[0] for _, name in held.calls} == {"pdf"}
    assert pdfs.renders_in_flight() == 0


@pytest.mark.rule("A9")
async def test_a_burst_of_first_downloads_is_told_to_retry_not_queued(
        portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    held = HeldRender()
    monkeypatch.setattr(pdfs, "render_pdf", held)
    mine = portal.mine
    busy = [asyncio.create_task(pdfs.document_pdf(portal.sessions, d))
            for d in await add_documents(portal.sessions, mine.customer_id, PDF_RENDERS_WAITING, "Busy")]
    link = f"/workspace/{mine.customer_id}/documents/{mine.document_id}.pdf"
    try:
        assert await asyncio.to_thread(held.started.wait, 10)
        await in_flight(PDF_RENDERS_WAITING)
        async with portal.client() as http:
            await sign_in(http, mine.contact_email)  # password hashing is not starved by the renders
            refused = await http.get(link)
            assert refused.status_code == 503, refused.text[:300]
            assert refused.headers["retry-after"] == str(PDF_RETRY_AFTER_S)
            held.release.set()
            await asyncio.wait_for(asyncio.gather(*busy), 30)
            served = await http.get(link)
            assert served.status_code == 200 and served.content.startswith(b"%PDF-1.7 held")
    finally:
        held.release.set()
