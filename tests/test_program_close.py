"""The close of a programme (rules A9, D10; issue 14, item 7), on the time-skipping server with the real worker,
a real SMTP server on loopback and the portal in process.

A programme given a non-renewal notice closes at its period end. The closing mail carries the final report
(the filed document, as received over SMTP); the archived workspace stays readable to the contacts for the
policy's days (7 here), writing nothing; once those days are over their access ends for good.

The portal judges the contacts' access at its clock (`PortalState.clock`): the test sets it to an instant
inside the readable days, then one after them, against the `access_ends_at` the close stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle

from domain.policy import ProgramPolicy
from domain.program import ProgramResult, ProgramStatus
from domain.request import AuthorRole
from inbound.replies import Quarantined, ReplyPoster
from portal.app import create_app
from portal.state import PortalState
from storage import repositories as repo
from storage import users as users_repo
from storage.credentials import digest, new_api_token
from storage.users import Role
from tests.harness import Stack, until_passes
from tests.portal_fixtures import csrf_of, password_hash, sign_in
from tests.test_patching import replay
from tests.test_program_lifecycle import PARIS, started_today
from workflows.program import PATCH_CLOSE_KEEPS_WORKSPACE_READABLE

READABLE_DAYS = 7
CUSTOMER = "globex"
CONTACT = f"carol@{CUSTOMER}.example"  # the enrolment's primary contact (testing/enrolment.py)


@pytest.fixture
def stack_policy() -> ProgramPolicy:
    return ProgramPolicy(workspace_readable_days_after_close=READABLE_DAYS)


@asynccontextmanager
async def portal(st: Stack) -> AsyncIterator[tuple[PortalState, httpx.AsyncClient]]:
    """The portal on this stack (its database, Temporal and task queue), its state and an HTTP client."""
    settings = st.settings.model_copy(update={"task_queue": st.task_queue, "portal_secret": "close-" + "x" * 30})
    app = create_app(settings, sessions=st.sessions, client=st.client)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://portal.test") as http:
        yield app.state.portal, http


async def contact_with_token(st: Stack) -> str:
    """The contact as a portal user with a password and an API token; returns the token."""
    token, prefix = new_api_token()
    async with st.sessions() as session, session.begin():
        user = await users_repo.add_user(session, email=CONTACT, name="Carol Diaz", role=Role.contact,
                                          customer_id=CUSTOMER, password_hash=password_hash())
        await users_repo.create_api_token(session, user_id=user.row.id, name="test", token_hash=digest(token),
                                          prefix=prefix)
    return token


async def close_by_non_renewal(st: Stack, handle: WorkflowHandle[Any, Any], s: ProgramStatus) -> ProgramResult:
    assert s.renewal is not None and s.plan is not None
    deadline = s.renewal.non_renewal_deadline
    await st.sleep_until(datetime.combine(deadline, datetime.min.time(), PARIS).replace(hour=11))
    await handle.execute_update("give_non_renewal_notice", {
        "by": "ops-olga", "party": "customer", "received_on": deadline.isoformat(), "reference": "LTR-14"},
        result_type=ProgramStatus)
    await st.sleep_until(s.plan.period_end_at + timedelta(hours=1))
    return ProgramResult.model_validate(await handle.result())


def html_attachments(mail: EmailMessage) -> list[tuple[str, str]]:
    out = []
    for part in mail.iter_attachments():
        if isinstance(part, EmailMessage) and part.get_content_type() == "text/html":
            out.append((part.get_filename() or "", str(part.get_content())))
    return out


@pytest.mark.rule("A9", "D10")
async def test_the_final_report_is_mailed_and_stays_readable_for_the_set_days_then_access_ends(st: Stack) -> None:
    handle, s = await started_today(st, CUSTOMER)
    token = await contact_with_token(st)
    bearer = {"Authorization": f"Bearer {token}"}
    async with portal(st) as (state, http):
        # A request opened while the programme is live: a comment on it is tried once it has closed.
        opened = await http.post(f"/api/customers/{CUSTOMER}/requests", headers=bearer, json={
            "kind": "support", "priority": "medium", "summary": "Indexer stops at night"})
        assert opened.status_code == 201, opened.text
        tracking = opened.json()["tracking_number"]
        # The mail side of the conversation (inbound/replies.py) takes the contact's reply while it is live.
        replies = ReplyPoster(st.settings, st.sessions, st.client, mail=None)  # type: ignore[arg-type]

        async def posted_as_the_customer() -> None:  # once the request's workflow has recorded it
            try:
                assert (await replies._author(tracking, CONTACT)).role == AuthorRole.customer
            except Quarantined as exc:
                raise AssertionError(str(exc)) from exc
        await until_passes(posted_as_the_customer, timeout=30, interval=0.2)

        result = await close_by_non_renewal(st, handle, s)
        assert result.outcome.startswith("closed: non-renewal notice")

        # The closing mail carries the final report: the document filed in the workspace, byte for byte.
        async with st.sessions() as session:
            (report,) = await repo.list_documents(session, CUSTOMER, kind="final_report")
            workspace = await repo.get_workspace(session, CUSTOMER)
            contacts = await repo.list_contacts(session, CUSTOMER)
        (closing,) = await st.sink.wait_for(lambda m: "has ended" in str(m["Subject"]), timeout=10)
        assert CONTACT in str(closing["To"])
        assert [html for _, html in html_attachments(closing)] == [report.body_html]
        assert html_attachments(closing)[0][0].endswith(".html")
        text = closing.get_body(("plain",))
        assert text is not None and "final report is attached" in str(text.get_content())

        # The close is stored with the end of the contacts' access, the policy's days later; they keep it.
        assert workspace is not None and workspace.status == "archived"
        assert workspace.archived_at is not None and workspace.access_ends_at is not None
        closed_at, ends_at = repo.as_utc(workspace.archived_at), repo.as_utc(workspace.access_ends_at)
        assert ends_at - closed_at == timedelta(days=READABLE_DAYS)
        assert contacts and all(c.active for c in contacts)

        # ---- within the readable days: the contact signs in and reads, and writes nothing
        state.clock = lambda: ends_at - timedelta(days=1)
        csrf = await sign_in(http, CONTACT)
        page = await http.get(f"/workspace/{CUSTOMER}")
        assert page.status_code == 200
        assert "data-closed-workspace" in page.text and "This programme closed on" in page.text
        assert f'/workspace/{CUSTOMER}/documents/{report.id}"' in page.text
        assert "data-open-request" not in page.text  # nothing to write with on the page
        shown = await http.get(f"/workspace/{CUSTOMER}/documents/{report.id}")
        assert shown.status_code == 200 and report.title in shown.text
        got = await http.get(f"/api/customers/{CUSTOMER}/documents/{report.id}", headers=bearer)
        assert got.status_code == 200 and got.json()["body_html"] == report.body_html
        assert (await http.get(f"/workspace/{CUSTOMER}/requests/{tracking}")).status_code == 200

        async with st.sessions() as session:
            thread = len(await repo.list_messages(session, tracking))
        writes = {
            "new request (page)": await http.post(f"/workspace/{CUSTOMER}/requests/new", data={
                "csrf_token": csrf, "kind": "support", "priority": "medium", "summary": "After the close"}),
            "comment (page)": await http.post(f"/workspace/{CUSTOMER}/requests/{tracking}/comment", data={
                "csrf_token": csrf, "message": "One more thing"}),
            "non-renewal notice (page)": await http.post(f"/workspace/{CUSTOMER}/non-renewal", data={
                "csrf_token": csrf, "confirm": "on"}),
            "new request (API)": await http.post(f"/api/customers/{CUSTOMER}/requests", headers=bearer, json={
                "kind": "support", "priority": "medium", "summary": "After the close"}),
            "accept resolution (API)": await http.post(
                f"/api/customers/{CUSTOMER}/requests/{tracking}/accept-resolution", headers=bearer),
        }
        assert {what: r.status_code for what, r in writes.items()} == dict.fromkeys(writes, 403)
        assert "read-only" in writes["new request (API)"].json()["detail"]
        async with st.sessions() as session:
            assert [r.tracking_number for r in await repo.list_requests(session, customer_id=CUSTOMER)] == [tracking]
            assert len(await repo.list_messages(session, tracking)) == thread
        with pytest.raises(Quarantined, match="is closed"):  # nor is a reply by mail posted
            await replies._author(tracking, CONTACT)

        # ---- after them: every way in is refused, and the contacts are revoked for good
        state.clock = lambda: ends_at + timedelta(seconds=1)
        after = await http.get(f"/workspace/{CUSTOMER}/documents/{report.id}")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
        assert (await http.get(f"/api/customers/{CUSTOMER}/documents/{report.id}", headers=bearer)).status_code == 401
        async with st.sessions() as session:
            assert not any(c.active for c in await repo.list_contacts(session, CUSTOMER))
        state.clock = lambda: ends_at - timedelta(days=1)  # back inside the days: it does not come back
        assert (await http.get(f"/workspace/{CUSTOMER}")).status_code == 303
        assert (await http.get(f"/api/customers/{CUSTOMER}/documents", headers=bearer)).status_code == 401
        login = await http.get("/login")
        refused = await http.post("/login", data={"email": CONTACT, "password": "correct horse battery",
                                                  "csrf_token": csrf_of(login.text)})
        assert refused.status_code == 401

    # A close recorded with the patch (a new run) replays on today's code.
    history = await handle.fetch_history()
    assert any(e.HasField("marker_recorded_event_attributes") and PATCH_CLOSE_KEEPS_WORKSPACE_READABLE.encode()
               in e.marker_recorded_event_attributes.SerializeToString() for e in history.events)
    await replay(history)
