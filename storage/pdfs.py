"""PDFs of workspace documents (D10, A9): rendered once, on first need, and kept in `document_pdfs`.

One place for both callers: the mail activity (a mail with `attach_document_id` carries `<title>.pdf`) and
the portal's download route; faces share it here because the portal does not import activities/.

- What is printed: the HTML the document's template rendered when it was filed (`body_html`), so the PDF says
  what the HTML says. A monthly report whose request listing is longer than the PDF's cap carries a shorter
  rendering of the same template in `data["print_html"]` (activities/report_print.py): WeasyPrint lays out
  about 300 table rows a second, and a month of 50,000 requests would take minutes.
- When: not when the document is filed (the monthly report's activity is benchmarked, and most PDFs are
  never needed twice), but the first time a mail or a download needs it; then stored, so a resent mail
  carries the same bytes and a second download does not render again. Two renders racing store one (the
  primary key is the document's) and both callers get the stored bytes.
- Where: WeasyPrint is CPU-bound and holds the GIL for most of its work: it runs in a thread
  (`asyncio.to_thread`), never on the event loop that the worker's workflows share, one render a process at
  a time (a 2-core machine gains nothing from two, and the lock keeps a burst from starving the loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from storage.db import SessionFactory
from storage.repositories.common import insert_ignore
from storage.tables import DocumentPdfRow, DocumentRow

PRINT_HTML_KEY = "print_html"
PDF_CONTENT_TYPE = "application/pdf"

_RENDER_LOCK = threading.Lock()

# WeasyPrint warns about every SVG presentation attribute its CSS parser skips (the chart's `fill`,
# `text-anchor`: its SVG renderer draws them all the same): hundreds of lines a report, none actionable.
logging.getLogger("weasyprint").setLevel(logging.ERROR)


def print_html(document: DocumentRow) -> str:
    """The HTML the PDF is made from: the capped rendering when the document has one, else its HTML."""
    data: Any = document.data
    capped = data.get(PRINT_HTML_KEY) if isinstance(data, dict) else None
    return capped if isinstance(capped, str) and capped else document.body_html


def render_pdf(html: str) -> bytes:
    """HTML -> PDF bytes with WeasyPrint (blocking: call it in a thread).

    Nothing is fetched: documents are self-contained (inline CSS, inline SVG chart), and a URL in a
    document must never make the server read a local file or call out. Only `data:` URIs load.
    """
    # Imported here: WeasyPrint loads Pango and its fonts, which the CLI and most tests never need.
    from weasyprint import HTML, URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    with _RENDER_LOCK:
        # Presentational hints: the monthly report's long tables are styled by HTML attributes (border,
        # cellpadding, nowrap, <font color>) so that mail clients show them; WeasyPrint ignores those unless told.
        pdf = HTML(string=html, url_fetcher=fetcher, media_type="print").write_pdf(presentational_hints=True)
    assert isinstance(pdf, bytes)
    return pdf


async def stored_pdf(sessions: SessionFactory, document_id: int) -> bytes | None:
    async with sessions() as session:
        row = await session.get(DocumentPdfRow, document_id, populate_existing=True)
    return row.pdf if row is not None else None


async def document_pdf(sessions: SessionFactory, document: DocumentRow) -> bytes:
    """The document's PDF: the stored one, or rendered now (in a thread) and stored.

    The caller has checked who may read the document; this only renders and keeps it.
    """
    pdf = await stored_pdf(sessions, document.id)
    if pdf is not None:
        return pdf
    rendered = await asyncio.to_thread(render_pdf, print_html(document))
    async with sessions() as session, session.begin():
        await insert_ignore(session, DocumentPdfRow, {
            "document_id": document.id, "pdf": rendered, "rendered_at": datetime.now(UTC)}, ["document_id"])
    # A racer's row, when it stored first: every caller hands out the same bytes.
    return await stored_pdf(sessions, document.id) or rendered
