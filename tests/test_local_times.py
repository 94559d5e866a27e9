"""Honest promises, local times (issue 15): what the portal, the mails and the documents say about
the first-response clock (rule C12) and the times they show.

The clock runs in business hours on the programme's calendar (C5), so nothing may promise an answer
"within one hour"; the due time is shown as the request stores it, in the programme's time zone with
its label. Every scenario places itself after now (the next Friday with no holiday on it nor on the
Monday after: tests/calendar_positions.py), so the file passes whatever the date.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.calendar import CalendarActivities
from activities.templating import TEMPLATES_DIR, make_template_environment
from config.settings import Settings
from domain.activities import BusinessDeadlineRequest
from domain.calendar import BusinessCalendar
from domain.local_time import business_hours_label, first_response_promise, format_local, local_time_label
from domain.request import NewRequest, RequestStatus
from portal.app import create_app
from portal.rendering import environment
from storage import repositories as repo
from storage.db import SessionFactory
from storage.users import Role
from testing.databases import migrated_sessions
from tests.calendar_positions import next_plain_friday
from tests.harness import Stack
from tests.portal_fixtures import InProcess, Tenant, UnreachableTemporal, add_staff, seed_tenant, sign_in
from tests.request_fixtures import file, live_programme

PARIS = ZoneInfo("Europe/Paris")
# The old promise, in any spelling a template might use; the clock never ran 60 plain minutes.
OLD_PROMISE = re.compile(r"within\s+(one|1|an)\s+hours?\b", re.IGNORECASE)
HOURS = "Mon–Fri 09:00–17:00 Europe/Paris"


def paris(d: date, hh: int, mm: int) -> datetime:
    return datetime.combine(d, time(hh, mm), PARIS).astimezone(UTC)


def label_by_hand(at: datetime, tz: ZoneInfo = PARIS) -> str:
    """What a person reads, spelt out here without the code under test: "Mon 7 Dec 2026, 09:30 CET"."""
    local = at.astimezone(tz)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname()}"


async def friday_request_deadline(friday: date) -> datetime:
    """The first-response deadline of a request filed that Friday at 16:30 in Paris, from the
    business-deadline activity (rule C12), as the workflow records it."""
    result = await ActivityEnvironment().run(CalendarActivities().business_deadline, BusinessDeadlineRequest(
        calendar=BusinessCalendar(), start=paris(friday, 16, 30), minutes=60, warning_minutes=15))
    return result.deadline


# ---- the label ---------------------------------------------------------------------------------
@pytest.mark.rule("C12", "C5")
def test_a_time_is_labelled_in_the_programme_zone_and_the_promise_names_the_calendar() -> None:
    winter = datetime(2026, 12, 3, 11, 25, tzinfo=UTC)
    summer = datetime(2027, 7, 1, 7, 30, tzinfo=UTC)
    assert local_time_label(winter, "Europe/Paris") == "Thu 3 Dec 2026, 12:25 CET"
    assert local_time_label(summer, "Europe/Paris") == "Thu 1 Jul 2027, 09:30 CEST"
    assert format_local(winter, "Europe/Paris") == "Thu 3 Dec 2026, 12:25 CET (Europe/Paris)"
    assert local_time_label(winter, "Asia/Dubai") == "Thu 3 Dec 2026, 15:25 UTC+04"  # tzdata's "+04", readable
    assert local_time_label(winter.replace(tzinfo=None), "UTC") == "Thu 3 Dec 2026, 11:25 UTC"  # stored naive UTC
    assert business_hours_label(BusinessCalendar()) == HOURS
    assert business_hours_label(BusinessCalendar(weekdays=[1, 3], timezone="America/New_York")) == (
        "Mon, Wed 09:00–17:00 America/New_York")
    assert first_response_promise(BusinessCalendar(), 60) == f"one business hour on your programme's calendar ({HOURS})"
    assert first_response_promise(BusinessCalendar(), 90).startswith("90 business minutes")
    round_the_clock = first_response_promise(BusinessCalendar(out_of_hours_agreement_ref="OOH-7"), 60)
    assert "24x7" in round_the_clock and "OOH-7" in round_the_clock and "business" not in round_the_clock


# ---- templates ---------------------------------------------------------------------------------
@pytest.mark.rule("C12")
def test_no_template_promises_an_answer_within_one_hour() -> None:
    found = [f"{p.relative_to(TEMPLATES_DIR)}:{n}: {line.strip()}"
             for p in sorted(TEMPLATES_DIR.rglob("*.j2"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OLD_PROMISE.search(line)]
    assert not found, "templates still promise a plain one-hour answer (rule C12 runs in business hours):\n" + (
        "\n".join(found))
    assert OLD_PROMISE.search("answers within one hour (C12)") and OLD_PROMISE.search("within 1 hour")


@pytest.mark.rule("C12")
def test_mail_and_document_times_are_shown_in_the_context_zone() -> None:
    env = make_template_environment()
    at = "2027-02-03T13:00:00+00:00"
    paris_text = env.from_string("{{ at | local }}").render(at=at, timezone="Europe/Paris")
    assert paris_text == "Wed 3 Feb 2027, 14:00 CET"
    assert env.from_string("{{ at | local }}").render(at=at) == "Wed 3 Feb 2027, 13:00 UTC"  # no zone: UTC, labelled
    assert env.from_string("{{ at | local(zone_name=True) }}").render(at=at, timezone="Europe/Paris") == (
        "Wed 3 Feb 2027, 14:00 CET (Europe/Paris)")
    invite = env.get_template("mail/call_invite.subject.j2").render(
        call_at=at, month_label="February 2027", timezone="Europe/Paris")
    assert invite.strip().endswith("Wed 3 Feb 2027, 14:00 CET"), invite


# ---- portal ------------------------------------------------------------------------------------
@dataclass
class Portal(InProcess):
    app: Any
    sessions: SessionFactory
    acme: Tenant


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    async with migrated_sessions(sqlite_url) as sessions:
        acme = await seed_tenant(sessions, "acme", "tl-alice")  # its programme's calendar: Europe/Paris, FR
        await add_staff(sessions, "ops@techconnect.example", Role.ops)
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            yield Portal(app, sessions, acme)


async def file_friday_request(p: Portal) -> tuple[str, datetime, datetime]:
    """A request of acme filed on the next plain Friday at 16:30 Paris, stored as the workflow stores it."""
    friday = next_plain_friday(datetime.now(UTC), PARIS, "FR")
    opened, deadline = paris(friday, 16, 30), await friday_request_deadline(friday)
    assert deadline == paris(friday + timedelta(days=3), 9, 30)  # rule C12: Monday 09:30, Paris
    tracking = f"TC-ACME-{friday.year}-0042"
    async with p.sessions() as s, s.begin():
        await repo.upsert_request(
            s, request=NewRequest(customer_id="acme", kind="support", priority="high", summary="Search is down",
                                  filed_by=p.acme.contact_email, channel="portal"),
            period=1, now=opened, status=RequestStatus(
                tracking_number=tracking, workflow_id=f"request-{tracking}", customer_id="acme", kind="support",
                priority="high", summary="Search is down", opened_at=opened, first_response_deadline=deadline))
    return tracking, opened, deadline


def page_text(body: str) -> str:
    """What a person reads of a page: tags out, entities decoded, white space as one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", body)).split())


@pytest.mark.rule("C12", "C5")
async def test_the_request_page_shows_the_business_hour_due_time_in_paris_time(portal: Portal) -> None:
    tracking, opened, deadline = await file_friday_request(portal)
    async with portal.client() as http:
        await sign_in(http, portal.acme.contact_email)
        page = await http.get(f"/workspace/acme/requests/{tracking}")
    assert page.status_code == 200, page.text
    text = page_text(page.text)
    due = label_by_hand(deadline)
    assert due.startswith("Mon ") and ", 09:30 " in due
    assert f"First answer due by {due} (Europe/Paris)" in text, text
    assert f"one business hour on your programme's calendar ({HOURS})" in text
    assert not OLD_PROMISE.search(text), OLD_PROMISE.search(text)
    # rule C5: a Paris customer reads Paris time, labelled; not the UTC instant alone.
    assert label_by_hand(opened) in text and ", 16:30 " in label_by_hand(opened)
    assert f"{opened:%H:%M} UTC" not in text and f"{deadline:%H:%M} UTC" not in text


@pytest.mark.rule("C12", "C5")
async def test_staff_read_the_programme_time_with_utc_beside_it(portal: Portal) -> None:
    tracking, opened, deadline = await file_friday_request(portal)
    async with portal.client() as http:
        await sign_in(http, "ops@techconnect.example")
        page = await http.get(f"/workspace/acme/requests/{tracking}")
    assert page.status_code == 200, page.text
    text = page_text(page.text)
    assert f"{label_by_hand(opened)} ({opened:%H:%M} UTC)" in text
    assert f"{label_by_hand(deadline)} (Europe/Paris) ({deadline:%H:%M} UTC)" in text


@pytest.mark.rule("C12")
async def test_before_filing_the_form_states_the_rule_and_the_calendar(portal: Portal) -> None:
    async with portal.client() as http:
        await sign_in(http, portal.acme.contact_email)
        form = await http.get("/workspace/acme/requests/new")
        workspace = await http.get("/workspace/acme")
    assert form.status_code == 200 and workspace.status_code == 200
    text = page_text(form.text)
    assert f"within one business hour on your programme's calendar ({HOURS}) (rule C12)" in text, text
    assert "The clock runs only in those hours and stops on the calendar's holidays." in text
    # No worked example: "Friday 16:30 is due Monday 09:30" holds only for a 09:00-17:00 Mon-Fri calendar
    # and a 60-minute clock; the request's page shows the due time the workflow computed.
    assert "16:30" not in text and "09:30" not in text
    for body in (form.text, workspace.text):
        assert not OLD_PROMISE.search(page_text(body))


# ---- the mail, from the real workflow ----------------------------------------------------------
@pytest.mark.rule("C12", "A1")
async def test_the_request_opened_mail_carries_the_business_hour_promise_and_the_local_due_time(st: Stack) -> None:
    """SupportRequestWorkflow on the time-skipping server mails the TL through the real templates and
    SMTP: the due time in Paris time with its zone, and the business-hour rule."""
    await live_programme(st)
    friday = next_plain_friday(await st.now(), PARIS, "FR")
    number, _ = await file(st, at=paris(friday, 16, 30))
    (mail,) = await st.sink.wait_for(lambda m: number in str(m["Subject"]) and "New" in str(m["Subject"]))
    text_part, html_part = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text_part is not None and html_part is not None
    text = " ".join(text_part.get_content().split())  # type: ignore[attr-defined]
    page = page_text(html_part.get_content())  # type: ignore[attr-defined]
    due = label_by_hand(paris(friday + timedelta(days=3), 9, 30))
    for body in (text, page):
        assert f"{due} (Europe/Paris)" in body, body
        assert f"one business hour on the programme's calendar ({HOURS})" in body, body
        assert f"{label_by_hand(paris(friday, 16, 30))} (Europe/Paris)" in body  # filed at, Paris time
        assert not OLD_PROMISE.search(body)


@pytest.mark.rule("C12")
@pytest.mark.parametrize(("zone", "local", "utc_added"), [
    ("Asia/Dubai", "Thu 3 Dec 2026, 16:25 UTC+04", True),  # tzdata's label is "+04": still not UTC
    ("Europe/Paris", "Thu 3 Dec 2026, 13:25 CET", True),
    ("UTC", "Thu 3 Dec 2026, 12:25 UTC", False),  # already UTC: said once
    ("Europe/London", "Thu 3 Dec 2026, 12:25 GMT", False),  # offset 0 in winter: the same time twice is noise
])
def test_staff_see_the_utc_time_beside_any_zone_whose_offset_is_not_zero(zone: str, local: str,
                                                                         utc_added: bool) -> None:
    at = datetime(2026, 12, 3, 12, 25, tzinfo=UTC)
    template = environment().from_string("{{ at | when }}")
    staff = template.render(at=at, timezone=zone, principal=type("Staff", (), {"is_staff": True})())
    contact = template.render(at=at, timezone=zone, principal=type("Contact", (), {"is_staff": False})())
    assert contact == local
    assert staff == (f"{local} (12:25 UTC)" if utc_added else local), staff
