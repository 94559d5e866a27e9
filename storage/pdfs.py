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
- Where: WeasyPrint is CPU-bound and holds the GIL for most of its work: it runs on a thread of its own
  (`_EXECUTOR`, one worker), never on the event loop that the worker's workflows share, and never on the
  loop's default executor: renders queued there would hold the threads that password hashing at sign-in,
  chart rendering and getaddrinfo wait for. One render a process at a time (a 2-core machine gains nothing
  from two); the ones behind it wait on the loop, holding no thread.
- Once: callers in one process that need the same document share one render (`_IN_FLIGHT`), and the
  render checks the store again right before it is queued (another process may have stored it). Two
  processes racing still may both render; the primary key keeps one.
- How many: a face that must answer soon (the portal) passes `max_in_flight` and gets `PdfBusy` rather
  than joining a queue without end; the mail activity waits its turn.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from storage.db import SessionFactory
from storage.repositories.common import insert_ignore
from storage.tables import DocumentPdfRow, DocumentRow

PRINT_HTML_KEY = "print_html"
PDF_CONTENT_TYPE = "application/pdf"

# Module-wide: every loop of the process (the worker's, the portal's, a test's) shares the one render thread.
_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdf")
# (session factory, document id) -> the render under way; the factory tells two databases' ids apart.
_IN_FLIGHT: dict[tuple[int, int], asyncio.Task[bytes]] = {}


class PdfBusy(Exception):
    """Too many renders under way in this process; the caller answers "try again" instead of waiting."""

    def __init__(self, in_flight: int) -> None:
        super().__init__(f"{in_flight} PDF renders are under way; try again shortly")
        self.in_flight = in_flight

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
    # Presentational hints: the monthly report's long tables are styled by HTML attributes (border,
    # cellpadding, nowrap, <font color>) so that mail clients show them; WeasyPrint ignores those unless told.
    pdf = HTML(string=html, url_fetcher=fetcher, media_type="print").write_pdf(presentational_hints=True)
    assert isinstance(pdf, bytes)
    return pdf


async def stored_pdf(sessions: SessionFactory, document_id: int) -> bytes | None:
    async with sessions() as session:
        row = await session.get(DocumentPdfRow, document_id, populate_existing=True)
    return row.pdf if row is not None else None


def _renders(loop: asyncio.AbstractEventLoop) -> dict[tuple[int, int], asyncio.Task[bytes]]:
    """This loop's renders under way (a test's closed loop may leave a task that never finishes)."""
    return {key: task for key, task in _IN_FLIGHT.items() if task.get_loop() is loop and not task.done()}


def renders_in_flight() -> int:
    return len(_renders(asyncio.get_running_loop()))


async def _render_and_store(sessions: SessionFactory, document: DocumentRow) -> bytes:
    # Checked again right before queueing: another process may have stored it since the caller looked.
    pdf = await stored_pdf(sessions, document.id)
    if pdf is not None:
        return pdf
    rendered = await asyncio.get_running_loop().run_in_executor(_EXECUTOR, render_pdf, print_html(document))
    async with sessions() as session, session.begin():
        await insert_ignore(session, DocumentPdfRow, {
            "document_id": document.id, "pdf": rendered, "rendered_at": datetime.now(UTC)}, ["document_id"])
    # A racer's row, when it stored first: every caller hands out the same bytes.
    return await stored_pdf(sessions, document.id) or rendered


async def document_pdf(sessions: SessionFactory, document: DocumentRow, *, max_in_flight: int | None = None) -> bytes:
    """The document's PDF: the stored one, or rendered now (on the PDF thread) and stored.

    The caller has checked who may read the document; this only renders and keeps it. With `max_in_flight`,
    a render that would join that many others under way raises `PdfBusy` (joining a render of the same
    document never does).
    """
    pdf = await stored_pdf(sessions, document.id)
    if pdf is not None:
        return pdf
    loop = asyncio.get_running_loop()
    key = (id(sessions), document.id)
    task = _renders(loop).get(key)
    if task is None:
        in_flight = len(_renders(loop))
        if max_in_flight is not None and in_flight >= max_in_flight:
            raise PdfBusy(in_flight)
        for stale in [k for k, t in _IN_FLIGHT.items() if t.get_loop().is_closed()]:
            del _IN_FLIGHT[stale]  # left by a loop closed mid-render (tests): never finishes, never pops itself
        task = loop.create_task(_render_and_store(sessions, document), name=f"pdf-{document.id}")
        _IN_FLIGHT[key] = task
        task.add_done_callback(lambda done: _IN_FLIGHT.pop(key, None) if _IN_FLIGHT.get(key) is done else None)
    # Shielded: a caller that gives up (a closed download) does not cancel the render the others wait for.
    return await asyncio.shield(task)
