"""The portal in a real browser (headless Chromium driven by Playwright) against the real
Temporal dev server, the real worker, SQLite and the SMTP sink (issue 4).

Operations start a programme from the form (a refused value shows the rule beside the
field), the TL schedules the kickoff from the inbox, a customer contact signs in with a
mailed link, reads the welcome document, and gets 404 for another customer's workspace
by URL and by API. Every page is saved under .artefacts/portal/.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from domain.money import Money
from domain.request import RequestDispatch, RequestStatus
from portal.app import create_app
from portal.server import bound_port, serving
from storage import repositories as repo
from storage import users as users_repo
from storage.users import Role
from tests.chromium import CHROMIUM_ARGS, chromium
from tests.clock import today_in
from tests.harness import Stack, add_subscription, stack_on_server
from tests.portal_fixtures import PASSWORD, password_hash

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHOTS = PROJECT_ROOT / ".artefacts" / "portal"
CUSTOMER = "webco"
OTHER = "otherco"
TL_ID = "tl-wendy"


@dataclass
class Site:
    url: str
    st: Stack
    browser: Any

    async def page(self) -> Any:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 860}, base_url=self.url)
        context.set_default_timeout(10_000)
        return await context.new_page()


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def submit(page: Any) -> None:
    await page.click("[data-submit]")
    await page.wait_for_load_state()


async def sign_in(page: Any, email: str) -> None:
    await page.goto("/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("[data-sign-in]")
    await page.wait_for_load_state()
    assert "/login" not in page.url, await page.inner_text("main")


async def eventually_on_page(page: Any, url: str, selector: str, timeout_s: float = 20.0) -> None:
    """Reload until `selector` shows: visibility and projections follow the workflows by a moment."""
    for _ in range(int(timeout_s / 0.5)):
        await page.goto(url)
        if await page.locator(selector).count():
            return
        await page.wait_for_timeout(500)
    raise AssertionError(f"{selector} never showed on {url}: {await page.inner_text('main')}")


# ------------------------------------------------------------------------------ fixtures
@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    executable = chromium()
    from playwright.async_api import async_playwright

    async with stack_on_server(tmp_path_factory.mktemp("portal-browser")) as st:
        today = today_in()
        await add_subscription(st.sessions, CUSTOMER, today - timedelta(days=30), today + timedelta(days=900))
        # Ends inside the period: rule E1 refuses it.
        await add_subscription(st.sessions, CUSTOMER, today - timedelta(days=30), today + timedelta(days=100),
                               sub_id="SMP-webco-short")
        async with st.sessions() as s, s.begin():
            await users_repo.add_user(s, email="ops@techconnect.example", name="Oscar Ops", role=Role.ops,
                                      password_hash=password_hash())
            await users_repo.add_user(s, email="desk@techconnect.example", name="Dana Desk", role=Role.support_rep,
                                      password_hash=password_hash())
            await users_repo.add_user(s, email="wendy@support.example", name="Wendy Lead", role=Role.tl,
                                      technical_lead_id=TL_ID, password_hash=password_hash())
            await repo.upsert_customer(s, OTHER, "Other Co", "SMP-otherco")
            await repo.insert_document(s, customer_id=OTHER, period=1, kind="welcome", title="Welcome, Other Co",
                                       body_text="secret", body_html="<p>secret of otherco</p>",
                                       idempotency_key="otherco-welcome")
        app_settings = st.settings.model_copy(update={"task_queue": st.task_queue, "portal_secret": "browser-test"})
        app = create_app(app_settings, sessions=st.sessions, client=st.client)
        async with serving(app) as server:
            url = f"http://127.0.0.1:{bound_port(server)}"
            # Links in mail point at this portal.
            app_settings.policy.portal_url = url
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
                try:
                    yield Site(url, st, browser)
                finally:
                    await browser.close()


# --------------------------------------------------------------------------------- tests
async def test_operations_start_a_programme_from_the_form(site: Site) -> None:
    page = await site.page()
    await page.goto("/login")
    await shot(page, "login")
    await sign_in(page, "ops@techconnect.example")
    await page.goto("/ops/programmes/new")
    # Begun yesterday: the month's cycle runs whatever the hour (it starts at the first day's 09:00,
    # which today may not have reached yet on the dev server's clock); the TL's inbox shows its call.
    today = (today_in() - timedelta(days=1)).isoformat()
    form = {
        "customer.id": CUSTOMER, "customer.name": "", "customer.maintenance_subscription_id": "SMP-webco-short",
        "period_start": today, "primary_system": "CS production cluster",
        "primary_contact.name": "Carol Diaz", "primary_contact.email": f"carol@{CUSTOMER}.example",
        "primary_contact.role": "CIO", "additional_contacts": f"Bob Stone; bob@{CUSTOMER}.example; IT manager",
        "annual_fee.amount": "48000.00",
    }
    for name, value in form.items():
        await page.fill(f'[name="{name}"]', value)
    await page.select_option('[name="technical_lead"]', TL_ID)
    await submit(page)
    # A pydantic error beside its field.
    assert await page.inner_text('[data-error-for="customer.name"]') == "This field is required."
    await page.fill('[name="customer.name"]', "Web Co")
    await submit(page)
    # Rule E1, checked before the workflow starts, shown beside the field it is about.
    error = await page.inner_text('[data-error-for="period_start"]')
    assert error.startswith("Rule E1:") and "SMP-webco-short ends on" in error, error
    assert await page.input_value('[name="customer.name"]') == "Web Co"  # what was typed stays
    await shot(page, "start-refused")
    await page.fill('[name="customer.maintenance_subscription_id"]', f"SMP-{CUSTOMER}")
    await page.click("[data-submit]")
    await page.wait_for_url(f"**/programmes/{CUSTOMER}")
    assert "Programme started: program-webco" in await page.inner_text("[data-flash]")
    link = await page.get_attribute("[data-temporal-link]", "href")
    assert link == f"{site.st.settings.ui_url}/namespaces/default/workflows/program-{CUSTOMER}"
    await site.st.wait_enrolled(CUSTOMER)
    await eventually_on_page(page, "/programmes", f'tr[data-customer="{CUSTOMER}"]')
    await shot(page, "programmes")
    await page.goto(f"/programmes/{CUSTOMER}")
    await shot(page, "programme")


async def test_the_tl_schedules_the_kickoff_from_the_inbox(site: Site) -> None:
    page = await site.page()
    await sign_in(page, "wendy@support.example")
    row = f'tr[data-step="schedule_kickoff"][data-customer="{CUSTOMER}"]'
    await eventually_on_page(page, "/inbox", row)
    assert await page.locator('tr[data-step="schedule_call"]').count() == 1  # the month's call, from the cycle
    await shot(page, "inbox")
    await page.click(f'{row} [data-complete="schedule_kickoff"]')
    await page.wait_for_url(f"**/programmes/{CUSTOMER}/steps/schedule_kickoff")
    # A bad value: the rule's message beside the field, nothing sent to the workflow.
    await submit(page)
    assert await page.inner_text('[data-error-for="meeting_at"]') == "This field is required."
    await shot(page, "step-form-error")
    meeting = (today_in() + timedelta(days=7)).isoformat() + "T10:00"
    await page.fill('[name="meeting_at"]', meeting)
    await page.fill('[name="location"]', "Teams")
    await shot(page, "step-form")
    await page.click("[data-submit]")
    await page.wait_for_url("**/inbox")
    assert "done for Web Co" in await page.inner_text("[data-flash]")
    status = await site.st.status(CUSTOMER)
    step = status.step("schedule_kickoff")
    assert step is not None and step.status.value == "done" and step.done_by == TL_ID
    # The same form again: the Update's validator refuses, its message at the top of the form.
    await page.goto(f"/programmes/{CUSTOMER}/steps/schedule_kickoff")
    await page.fill('[name="meeting_at"]', meeting)
    await submit(page)
    refusal = await page.inner_text("[data-form-error]")
    assert "schedule_kickoff is already done" in refusal, refusal
    await shot(page, "step-refused")


def _sign_in_link(messages: list[EmailMessage], to: str) -> str | None:
    for m in messages:
        if m["X-TechConnect-Template"] == "sign_in_link" and to in str(m["To"]):
            body = m.get_body(("plain",))
            assert body is not None
            found = re.search(r"http://\S+/login/link/\S+", str(body.get_content()))
            if found:
                return found.group(0)
    return None


@pytest.mark.rule("D10", "A9")
async def test_a_contact_signs_in_sees_the_welcome_document_and_nothing_of_another_customer(site: Site) -> None:
    """Rules D10/A9: the private workspace; the contact was given access when ops started the programme."""
    page = await site.page()
    contact = f"carol@{CUSTOMER}.example"
    await page.goto("/login")
    await page.fill("#link-email", contact)
    await page.click("[data-send-link]")
    await page.wait_for_load_state()
    await shot(page, "link-sent")
    link = None
    for _ in range(50):
        link = _sign_in_link(site.st.sink.messages, contact)
        if link:
            break
        await page.wait_for_timeout(100)
    assert link is not None, "no sign-in link was mailed"
    await page.goto(link)
    await page.click("[data-confirm-link]")
    await page.wait_for_url(f"**/workspace/{CUSTOMER}")
    await eventually_on_page(page, f"/workspace/{CUSTOMER}", '[data-document="welcome"]')
    await page.click('[data-document="welcome"]')
    await page.wait_for_load_state()
    body = page.frame_locator("[data-document-body]")
    assert "Web Co" in await body.locator("body").inner_text()
    await shot(page, "document")
    # The link worked once.
    again = await page.goto(link)
    assert again is not None and again.status == 404

    # A support request from the workspace (A4, C12): a tracking number, the clock started.
    await page.goto(f"/workspace/{CUSTOMER}/requests/new")
    await page.fill('[name="summary"]', "Search returns no results since the weekend")
    await page.select_option('[name="priority"]', "high")
    await page.fill('[name="description"]', "Full-text search finds nothing in the Enterprise workspace.")
    await page.check('[name="customisation"]')
    await submit(page)
    # Rule C13: a customisation needs an agreement, said beside the field.
    assert (await page.inner_text('[data-error-for="agreement_ref"]')).startswith("Rule C13:")
    await page.uncheck('[name="customisation"]')
    await page.click("[data-submit]")
    await page.wait_for_url(re.compile(rf".*/workspace/{CUSTOMER}/requests/TC-WEBCO-\d{{4}}-0001$"))
    tracking = page.url.rsplit("/", 1)[1]
    request_url = page.url
    await eventually_on_page(page, request_url, "[data-history-row]")
    # The desk (C12): a support representative sees the new request at the top of the queue with its
    # clock, responds from its page (the clock stops, the SLA event is stored) and pends it with a question.
    rep = await site.page()
    await sign_in(rep, "desk@techconnect.example")
    assert rep.url.endswith("/desk"), rep.url
    await eventually_on_page(rep, "/desk", f'[data-desk] tbody tr[data-request="{tracking}"]')
    top = rep.locator("[data-desk] tbody tr").first
    assert await top.get_attribute("data-request") == tracking
    assert "min left" in await top.locator("[data-clock]").inner_text()
    await shot(rep, "desk")
    await top.locator("[data-open-request]").click()
    await rep.wait_for_url(request_url)
    await rep.fill("#s-respond", "We are looking at the search index now.")
    await rep.click('[data-step="respond"]')
    await rep.wait_for_url(request_url)
    async with site.st.sessions() as session:
        events = await repo.list_sla_events(session, tracking_number=tracking)
    assert [e.kind for e in events] == ["started", "met"], [e.kind for e in events]
    await rep.fill("#s-pend", "Which index did the weekend job rebuild?")
    await rep.click('[data-step="pend"]')
    await rep.wait_for_url(request_url)
    # OT asks for an on-site visit at extra cost (A4): the contact approves it from the request page.
    handle = site.st.client.get_workflow_handle(f"request-{tracking}")
    await handle.execute_update("request_dispatch", RequestDispatch(
        by=TL_ID, reason="Replace the failed search disk controller on site",
        estimated_cost=Money(amount=Decimal("1800.00")), agreement_ref="AGR-ONSITE-7"))
    await eventually_on_page(page, request_url, "[data-approve-dispatch]")
    await page.click("[data-approve-dispatch]")
    await page.wait_for_url(request_url)
    assert "approved (customer)" in await page.inner_text("[data-flash]")
    status = await handle.query("get_status", result_type=RequestStatus)
    assert status.dispatches[0].customer_approved_by == contact
    # The conversation (A4): the contact's answer in the portal goes into the thread, resumes the
    # request and mails the TL and the desk.
    status = await handle.query("get_status", result_type=RequestStatus)
    assert status.state.value == "pending"
    await page.goto(request_url)
    await page.fill("#message", "The Enterprise index; the job log is on the share.")
    await page.click("[data-send-message]")
    await page.wait_for_url(request_url)
    assert "Your message is in the conversation" in await page.inner_text("[data-flash]")
    status = await handle.query("get_status", result_type=RequestStatus)
    assert status.state.value == "open" and [m.by for m in status.messages][-1] == contact
    await site.st.sink.wait_for(lambda m: tracking in str(m["Subject"]) and f"from {contact}" in str(m["Subject"]))
    # The TL proposes measures from the same page; the contact rejects them with a reason: open again,
    # no proposal left, and the TL is mailed the reason.
    tl = await site.page()
    await sign_in(tl, "wendy@support.example")
    await tl.goto(request_url)
    await tl.fill("#s-propose", "Restart the indexer.")
    await tl.click('[data-step="propose_resolution"]')
    await tl.wait_for_url(request_url)
    await eventually_on_page(page, request_url, "[data-reject]")
    await page.fill("#reject-reason", "Restarting did not help last time.")
    await page.click("[data-reject]")
    await page.wait_for_url(request_url)
    assert "rejected the proposed measures" in await page.inner_text("[data-flash]")
    status = await handle.query("get_status", result_type=RequestStatus)
    assert status.state.value == "open" and status.proposal is None
    tl_mail = (await site.st.status(CUSTOMER)).technical_lead.email
    await site.st.sink.wait_for(lambda m: tl_mail in str(m["To"]) and "Restarting did not help" in str(m.get_body(
        ("plain",)).get_content()))  # type: ignore[union-attr]
    # A blank message is refused on the page, nothing stored.
    await page.fill("#message", " ")
    await page.evaluate("document.querySelector('#message').removeAttribute('required')")
    await page.click("[data-send-message]")
    assert "message" in await page.inner_text("[data-form-error]")
    # The TL proposes again; the request closes when the customer accepts them (A4).
    await tl.goto(request_url)
    await tl.fill("#s-propose", "Rebuilt the full-text index and raised the indexer's memory to 8 GB.")
    await tl.click('[data-step="propose_resolution"]')
    await tl.wait_for_url(request_url)
    await eventually_on_page(page, request_url, "[data-accept]")
    await shot(page, "request")
    await page.click("[data-accept]")
    await page.wait_for_url(request_url)
    assert "the request is closed" in await page.inner_text("[data-flash]")
    status = await handle.query("get_status", result_type=RequestStatus)
    assert status.state.value == "closed"
    # Every message of the conversation on the request page, in order, with who wrote it.
    texts = await page.locator("[data-message-text]").all_inner_texts()
    assert texts == [
        "We are looking at the search index now.", "Which index did the weekend job rebuild?",
        "The Enterprise index; the job log is on the share.", "Proposed measures: Restart the indexer.",
        "Rejected the proposed measures: Restarting did not help last time.",
        "Proposed measures: Rebuilt the full-text index and raised the indexer's memory to 8 GB."], texts
    roles = [await li.get_attribute("data-role") for li in await page.locator("[data-message]").all()]
    assert roles == ["staff", "staff", "customer", "technical_lead", "customer", "technical_lead"], roles
    await eventually_on_page(page, f"/workspace/{CUSTOMER}", f'a[href$="/requests/{tracking}"]')
    await shot(page, "workspace")

    # Another customer's workspace by URL...
    response = await page.goto(f"/workspace/{OTHER}")
    assert response is not None and response.status == 404, \
        f"another customer's workspace by URL answered {response.status if response else None}"
    assert "secret" not in await page.content()
    await shot(page, "not-found")
    theirs = await document_of(site, OTHER)
    for url in (f"/workspace/{OTHER}/documents/{theirs}", f"/workspace/{CUSTOMER}/documents/{theirs}"):
        response = await page.goto(url)
        assert response is not None and response.status == 404, url
    # ... and by API, with the browser's own session (fetch sends the cookie).
    statuses = await page.evaluate("""async (other) => {
        const mine = await fetch('/api/customers/webco/documents');
        const theirs = await fetch('/api/customers/' + other + '/documents');
        return [mine.status, theirs.status, (await theirs.json()).detail];
    }""", OTHER)
    assert statuses[:2] == [200, 404], statuses
    assert "otherco" not in str(statuses[2])


async def document_of(site: Site, customer_id: str) -> int:
    async with site.st.sessions() as s:
        docs = await repo.list_documents(s, customer_id)
    assert docs
    return docs[0].id


async def test_operations_record_a_billable_extra_and_follow_the_notices(site: Site) -> None:
    page = await site.page()
    await sign_in(page, "ops@techconnect.example")
    await page.goto("/ops/extras")
    await page.select_option('[name="customer_id"]', CUSTOMER)
    await page.select_option('[name="kind"]', "additional_system")
    await page.fill('[name="description"]', "Second production system: the DR site")
    await submit(page)
    # Rule C3: every extra needs its agreement, said beside the field.
    assert await page.inner_text('[data-error-for="agreement_ref"]') == "This field is required."
    await page.fill('[name="agreement_ref"]', "AGR-2027-014")
    # Rule C3: the price comes from OT's list; an amount typed over it needs its reason.
    await page.fill('[name="amount.amount"]', "6500.00")
    await submit(page)
    assert "needs its reason" in await page.inner_text('[data-error-for="override_reason"]')
    await page.fill('[name="override_reason"]', "price agreed in AGR-2027-014")
    await page.click("[data-submit]")
    await page.wait_for_url("**/ops/extras")
    await eventually_on_page(page, "/ops/extras", "text=AGR-2027-014")
    await shot(page, "extras")
    await page.goto("/ops/notices")
    await shot(page, "notices")
    # An API token from the account page: shown once, then usable as a bearer token.
    await page.goto("/account")
    await page.fill("#token-name", "monthly invoicing script")
    await page.click("[data-create-token]")
    await page.wait_for_load_state()
    token = (await page.inner_text("[data-new-token] .token")).strip()
    assert token.startswith("tc_")
    await shot(page, "account")
    response = await page.request.get("/api/programmes", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200 and CUSTOMER in {p["customer_id"] for p in await response.json()}


async def test_the_tl_records_an_extra_call_from_the_programme_page(site: Site) -> None:
    """Rule C10: a second call in the month, recorded on the running cycle as a billable extra (C3: agreement)."""
    page = await site.page()
    await sign_in(page, "wendy@support.example")
    link = "[data-extra-call]"
    await eventually_on_page(page, f"/programmes/{CUSTOMER}", link)
    await page.click(link)
    await page.wait_for_url(f"**/programmes/{CUSTOMER}/steps/record_extra_call?month=*")
    await page.fill('[name="held_on"]', today_in().isoformat())
    await page.fill('[name="notes"]', "Second call: the upgrade rehearsal")
    await submit(page)
    assert await page.inner_text('[data-error-for="agreement_ref"]') == "This field is required."
    await page.fill('[name="agreement_ref"]', "AGR-CALL-2027-3")
    await submit(page)
    # Not before the month's included call: the cycle's validator says so, nothing is recorded.
    refusal = await page.inner_text("[data-form-error]")
    assert "rule C10: the month's included call has not been held yet" in refusal, refusal
    month = int(page.url.rsplit("month=", 1)[1])
    from starter.programs import execute_step

    now = datetime.now(UTC)
    await execute_step(site.st.client, CUSTOMER, "schedule_call", TL_ID,
                       {"call_at": (now + timedelta(hours=1)).isoformat()}, month, via="portal")
    await execute_step(site.st.client, CUSTOMER, "hold_call", TL_ID,
                       {"held_on": today_in().isoformat(), "attendees": ["Wendy"], "notes": "Monthly call"},
                       month, via="portal")
    await page.click("[data-submit]")
    await page.wait_for_url("**/inbox")
    assert "Record an extra call this month: done" in await page.inner_text("[data-flash]")
    async with site.st.sessions() as s:
        extras = await repo.list_billable_extras(s, CUSTOMER)
    assert [(e.kind, e.rule, e.agreement_ref) for e in extras if e.kind == "extra_call"] == [
        ("extra_call", "C10", "AGR-CALL-2027-3")]


async def test_a_late_non_renewal_notice_is_refused_with_the_deadline_date(site: Site) -> None:
    """Rule C16: up to and including the deadline day (period end - 90 days); after it, refused as late."""
    from starter.programs import start_program
    from tests.harness import enrolment

    customer, today = "lateco", today_in()
    await add_subscription(site.st.sessions, customer, today - timedelta(days=400), today + timedelta(days=400))
    start = today - timedelta(days=300)  # the deadline was about 25 days ago
    settings = site.st.settings.model_copy(update={"task_queue": site.st.task_queue})
    await start_program(site.st.client, settings, enrolment(customer, start))
    status = await site.st.wait_enrolled(customer)
    assert status.renewal is not None
    deadline = status.renewal.non_renewal_deadline
    async with site.st.sessions() as s, s.begin():
        await users_repo.add_user(s, email=f"carol@{customer}.example", name="Carol Late", role=Role.contact,
                                  customer_id=customer, password_hash=password_hash())
    page = await site.page()
    await sign_in(page, f"carol@{customer}.example")
    await eventually_on_page(page, f"/workspace/{customer}", "[data-give-notice]")
    page.on("dialog", lambda dialog: dialog.accept())
    await page.check('[name="confirm"]')
    await page.click("[data-give-notice]")
    await page.wait_for_load_state()
    refusal = await page.inner_text("[data-form-error]")
    assert "rule C16" in refusal and "is late" in refusal and f"the deadline was {deadline}" in refusal, refusal
    await shot(page, "notice-late")
    status = await site.st.status(customer)
    assert status.renewal is not None and status.renewal.non_renewal is None
