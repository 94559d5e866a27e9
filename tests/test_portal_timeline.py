"""The timeline on the customer's workspace and the staff programme page (D10, A9), judged at the portal's
clock (`PortalState.clock`): over ASGI, and in Debian's headless Chromium (Playwright, as
tests/test_portal_browser.py runs it) for the screenshot of docs/portal.md.

The programme is in month five of its period with one overdue deliverable: its projection row is written
directly (tests/timeline_status.py) and Temporal is not part of these tests (the programme page falls back to
the projection when the workflow does not answer). Dates come from the clock the test sets, never literals.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from config.settings import Settings
from domain.local_time import local_date
from domain.timeline import day_label
from portal.app import create_app
from portal.server import bound_port, serving
from portal.state import PortalState
from storage import repositories as repo
from storage import users as users_repo
from storage.db import SessionFactory
from storage.users import Role
from testing.databases import migrated_sessions
from tests.chromium import CHROMIUM_ARGS, chromium
from tests.portal_fixtures import PASSWORD, InProcess, UnreachableTemporal, password_hash, sign_in
from tests.timeline_status import OVERDUE_STEP, status_in_month_five

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHOTS = PROJECT_ROOT / ".artefacts" / "portal"
CUSTOMER = "webco"
CONTACT, OPS = f"carol@{CUSTOMER}.example", "ops@techconnect.example"
TIMEZONE = "Europe/Paris"  # the seeded programme's calendar


@dataclass
class Portal(InProcess):
    app: Any
    today: date  # the portal clock's day in the programme's time zone

    @property
    def state(self) -> PortalState:
        state: PortalState = self.app.state.portal
        return state


def fixed_clock() -> tuple[Callable[[], datetime], date]:
    # Noon UTC of the machine's day: the same local day in Paris whatever the hour the test runs.
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return (lambda: now), local_date(now, TIMEZONE)


async def seed(sessions: SessionFactory, today: date) -> None:
    status = status_in_month_five(CUSTOMER, today)
    async with sessions() as s, s.begin():
        await repo.upsert_customer(s, CUSTOMER, status.customer_name, f"SMP-{CUSTOMER}")
        await repo.upsert_programme(s, status)
        await users_repo.add_user(s, email=CONTACT, name="Carol Diaz", role=Role.contact, customer_id=CUSTOMER,
                                  password_hash=password_hash())
        await users_repo.add_user(s, email=OPS, name="Oscar Ops", role=Role.ops, password_hash=password_hash())


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    clock, today = fixed_clock()
    async with migrated_sessions(sqlite_url) as sessions:
        await seed(sessions, today)
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            app.state.portal.clock = clock
            yield Portal(app, today)


def assert_timeline(html: str, today: date) -> None:
    """The SVG is there, the overdue step is drawn and labelled overdue, today's line is at the clock's day."""
    assert "<svg" in html and "data-timeline" in html, html[:500]
    assert re.search(rf'<g data-lane="{OVERDUE_STEP}" data-mark="overdue">', html), "the overdue lane is missing"
    due = today - timedelta(days=21)
    assert f"overdue, due {day_label(due)}" in html
    assert f'data-today="{today.isoformat()}"' in html and f"Today {day_label(today)}" in html
    assert "Deliverables: 5 done &middot; 1 overdue" in html


@pytest.mark.rule("D10", "A9")
async def test_the_workspace_shows_the_timeline_with_the_overdue_step(portal: Portal) -> None:
    async with portal.client() as http:
        await sign_in(http, CONTACT)
        page = await http.get(f"/workspace/{CUSTOMER}")
    assert page.status_code == 200, page.text[:300]
    assert_timeline(page.text, portal.today)


async def test_the_programme_page_shows_the_same_timeline_from_the_projection(portal: Portal) -> None:
    async with portal.client() as http:
        await sign_in(http, OPS)
        page = await http.get(f"/programmes/{CUSTOMER}")
    assert page.status_code == 200, page.text[:300]
    assert_timeline(page.text, portal.today)


async def test_the_timeline_follows_the_portal_clock(portal: Portal) -> None:
    """A week on by the portal's clock, today's line is a week on: the page never reads the machine's clock."""
    later = portal.state.clock() + timedelta(days=7)
    portal.state.clock = lambda: later
    async with portal.client() as http:
        await sign_in(http, CONTACT)
        page = await http.get(f"/workspace/{CUSTOMER}")
    day = local_date(later, TIMEZONE)
    assert f'data-today="{day.isoformat()}"' in page.text and f"Today {day_label(day)}" in page.text


# ------------------------------------------------------------------------------------- in a browser
@pytest_asyncio.fixture
async def site(tmp_path: Path, sqlite_url: str) -> AsyncIterator[tuple[str, Any, date]]:
    executable = chromium()
    from playwright.async_api import async_playwright

    clock, today = fixed_clock()
    async with migrated_sessions(sqlite_url) as sessions:
        await seed(sessions, today)
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="browser-test-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with serving(app) as server:
            app.state.portal.clock = clock
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
                try:
                    yield f"http://127.0.0.1:{bound_port(server)}", browser, today
                finally:
                    await browser.close()


@pytest.mark.rule("D10", "A9")
async def test_the_workspace_timeline_in_a_browser(site: tuple[str, Any, date]) -> None:
    url, browser, today = site
    # The portal's width: the timeline must read at 1000 px.
    context = await browser.new_context(viewport={"width": 1000, "height": 900}, base_url=url)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/login")
    await page.fill("#email", CONTACT)
    await page.fill("#password", PASSWORD)
    await page.click("[data-sign-in]")
    await page.wait_for_url(f"**/workspace/{CUSTOMER}")
    svg = page.locator("svg[data-timeline]")
    assert await svg.is_visible()
    box = await svg.bounding_box()
    assert box is not None and box["width"] >= 850, box  # drawn at the card's width, not shrunk
    overdue = page.locator(f'[data-lane="{OVERDUE_STEP}"] [data-marker="overdue"]')
    assert await overdue.count() == 1 and await overdue.is_visible()
    label = await overdue.locator("text").text_content()
    assert label == f"overdue, due {day_label(today - timedelta(days=21))}", label
    assert await page.locator(f'[data-today="{today.isoformat()}"]').is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "workspace-timeline.png"), full_page=True)
    # The card alone for docs/portal.md (copied from here to docs/portal-timeline.png, as the other shots are).
    await page.locator("[data-timeline-card]").screenshot(path=str(SHOTS / "timeline.png"))
