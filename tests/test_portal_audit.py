"""The audit log (issue 5): people's actions on programmes and support requests are recorded by the
workflows with the interface they came from, and operations and admins read them in the portal.

1. Time-skipping server, the real worker: programme steps sent by the command line's function,
   by the portal's, by a raw Update and by the `complete_step` signal; a support request opened
   from the portal and answered by raw Updates, the CLI's payload and the portal: every action is
   in `audit_log` once, with its actor and interface (cli, portal, temporal, signal), and the
   request's fresh history replays against today's code.
2. The portal over HTTP (no Temporal): `/ops/audit` and `GET /api/audit` with their filters,
   for operations and admins only; 401 without credentials, 404 for an unknown or out-of-reach
   customer filter (before the role check, as on every route), 403 for other roles.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.worker import Replayer

from config.settings import Settings
from domain.activities import AuditEntry
from domain.naming import program_workflow_id
from domain.request import AcceptResolution, ProposeResolution, Respond
from portal import actions as portal_actions
from portal.app import create_app
from starter.programs import execute_step
from storage import repositories as repo
from storage import users as users_repo
from storage.credentials import digest, new_api_token
from storage.db import SessionFactory
from storage.tables import AuditLogRow
from storage.users import Role
from testing.databases import migrated_sessions
from tests.harness import Stack
from tests.portal_fixtures import NOW, InProcess, Tenant, UnreachableTemporal, add_staff, seed_tenant, sign_in
from tests.request_fixtures import file, live_programme
from worker import WORKFLOWS, workflow_runner


async def audit_rows(sessions: SessionFactory, customer_id: str) -> list[AuditLogRow]:
    async with sessions() as session:
        return list(reversed(await repo.list_audit(session, customer_id)))  # oldest first


async def settled(st: Stack, customer_id: str, expected: int) -> list[AuditLogRow]:
    """The audit rows once `expected` of them are there (the last save may run after the Update returns)."""
    for _ in range(100):
        rows = await audit_rows(st.sessions, customer_id)
        if len(rows) >= expected:
            return rows
        await asyncio.sleep(0.05)
    return await audit_rows(st.sessions, customer_id)


# ------------------------------------------------------------------- 1. written by the workflows
async def test_programme_and_request_actions_are_audited_once_with_their_interface(st: Stack) -> None:
    prog = await live_programme(st, out_of_hours="OOH-1")
    today = (await st.now()).date()
    client = st.client

    # Programme steps: the CLI's function (via "cli"), the portal's (via "portal"), a raw Update
    # from any Temporal client (via "temporal"), the signal route (via "signal").
    await execute_step(client, "acme", "schedule_kickoff", "tl-alice",
                       {"meeting_at": f"{today + timedelta(days=2)}T10:00:00+01:00"})
    await portal_actions.complete_step(client, "acme", "complete_kickoff", "tl-alice", {
        "held_on": str(today), "attendees": ["Alice Martin", "Carol Diaz"], "minutes": "Planned the year.",
        "agreed_dates": {"communication_plan": str(today + timedelta(days=20)),
                         "site_inventory": str(today + timedelta(days=40)),
                         "configuration_analysis": str(today + timedelta(days=60))}})
    handle = client.get_workflow_handle(program_workflow_id("acme"))
    plan = {"communication_policies": "English", "escalation_process": "TL, then manager",
            "reporting_process": "Monthly report", "procedures": "Portal"}
    await handle.signal("complete_step", {"step": "deliver_communication_plan", "by": "tl-alice", "payload": plan})
    await handle.execute_update("add_contact", {"by": "ops-olga", "contact": {
        "name": "Dan Ray", "email": "dan@acme.example", "role": "DBA"}})

    # A request: opened from the portal, answered by a raw Update, measures proposed with the
    # CLI's payload, accepted by the customer through the portal's function.
    number, rh = await file(st, channel="portal", filed_by="carol@acme.example")
    await rh.execute_update("respond", Respond(by="rep-sam", message="On it"))
    await rh.execute_update("propose_resolution", ProposeResolution(by="rep-sam", measures="Rebuild the index",
                                                                    via="cli"))
    closed = await portal_actions.request_update(client, number, "accept_resolution",
                                                 AcceptResolution(by="carol@acme.example"))
    assert closed.state.value == "closed"

    rows = await settled(st, "acme", 10)
    seen = [(r.action, r.actor, r.interface) for r in rows]
    expected = [
        ("programme_started", "ops", "temporal"),
        ("schedule_kickoff", "tl-alice", "cli"),
        ("complete_kickoff", "tl-alice", "portal"),
        ("deliver_communication_plan", "tl-alice", "signal"),
        ("add_contact", "ops-olga", "temporal"),
        ("open_request", "carol@acme.example", "portal"),
        ("respond", "rep-sam", "temporal"),
        ("propose_resolution", "rep-sam", "cli"),
        ("accept_resolution", "carol@acme.example", "portal"),
    ]
    for item in expected:
        assert seen.count(item) == 1, (item, seen)
    request_rows = [r for r in rows if r.detail.get("tracking_number") == number]
    assert [r.action for r in request_rows] == ["open_request", "respond", "propose_resolution",
                                                "accept_resolution"]
    assert request_rows[0].detail["channel"] == "portal" and request_rows[2].detail["measures"] == "Rebuild the index"
    # Written once: a key per entry, no key twice.
    keys = Counter(r.idempotency_key for r in rows)
    assert None not in keys and max(keys.values()) == 1
    assert prog.customer_id == "acme"

    # The new audit entries add no command: the request's own history replays against this code.
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=workflow_runner(),
                        data_converter=client.data_converter)
    await replayer.replay_workflow(await rh.fetch_history())


# ------------------------------------------------------------------------ 2. read in the portal
async def _token(sessions: SessionFactory, email: str) -> str:
    async with sessions() as s, s.begin():
        user = await users_repo.get_user_by_email(s, email)
        assert user is not None
        token, prefix = new_api_token()
        await users_repo.create_api_token(s, user_id=user.id, name="audit-test", token_hash=digest(token),
                                          prefix=prefix)
    return token


class AuditPortal(InProcess):
    def __init__(self, app: Any, sessions: SessionFactory, mine: Tenant, other: Tenant, tokens: dict[str, str]):
        self.app, self.sessions, self.mine, self.other, self.tokens = app, sessions, mine, other, tokens

    def auth(self, email: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[email]}"}


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[AuditPortal]:
    async with migrated_sessions(sqlite_url) as sessions:
        mine = await seed_tenant(sessions, "acme", "tl-alice")
        other = await seed_tenant(sessions, "globex", "tl-bob")
        tokens = {**mine.tokens, **other.tokens}
        for email, role in (("ops@techconnect.example", Role.ops), ("admin@techconnect.example", Role.admin),
                            ("manager@techconnect.example", Role.support_manager)):
            await add_staff(sessions, email, role)
            tokens[email] = await _token(sessions, email)
        async with sessions() as s, s.begin():
            for n, (customer, actor, action, interface) in enumerate([
                ("acme", "tl-alice", "schedule_kickoff", "cli"),
                ("acme", "carol@acme.example", "accept_resolution", "portal"),
                ("acme", "rep-sam", "respond", "temporal"),
                ("globex", "tl-bob", "schedule_kickoff", "portal"),
                ("globex", "Carol@Globex.example", "open_request", "portal"),
            ]):
                await repo.append_audit(s, AuditEntry(at=NOW + timedelta(minutes=n), actor=actor, action=action,
                                                      customer_id=customer, interface=interface,
                                                      detail={"n": n}), idempotency_key=f"seed-{n}")
        app = create_app(Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="audit-" + "x" * 24),
                         sessions=sessions, client=UnreachableTemporal())  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            yield AuditPortal(app, sessions, mine, other, tokens)


async def test_operations_and_admins_read_the_audit_log_with_filters(portal: AuditPortal) -> None:
    async with portal.client() as http:
        for who in ("ops@techconnect.example", "admin@techconnect.example"):
            page = (await http.get("/api/audit", headers=portal.auth(who))).json()
            assert page["total"] == 5 and [e["detail"]["n"] for e in page["entries"]] == [4, 3, 2, 1, 0], who

        async def ns(**params: Any) -> list[int]:
            r = await http.get("/api/audit", params=params, headers=portal.auth("ops@techconnect.example"))
            assert r.status_code == 200, r.text
            return [e["detail"]["n"] for e in r.json()["entries"]]

        assert await ns(customer_id="acme") == [2, 1, 0]
        assert await ns(actor="CAROL") == [4, 1]  # part of the actor, any case
        assert await ns(actor="%") == []  # LIKE wildcards are literal
        assert await ns(action="schedule_kickoff") == [3, 0]
        assert await ns(interface="portal", customer_id="globex") == [4, 3]
        assert await ns(limit=2, offset=1) == [3, 2]

        # The page: a table with the filters, and the nav link, for operations.
        csrf = await sign_in(http, "ops@techconnect.example")
        assert csrf
        html = (await http.get("/ops/audit", params={"customer": "acme", "actor": "carol"})).text
        assert html.count("data-audit-row") == 1 and "accept_resolution" in html and 'href="/ops/audit"' in html
        assert 'data-interface="portal"' in html
        everything = (await http.get("/ops/audit")).text
        assert everything.count("data-audit-row") == 5 and "5 entries" in everything


async def test_audit_log_access_follows_the_portal_rules(portal: AuditPortal) -> None:
    mine, other = portal.mine, portal.other
    async with portal.client() as http:
        # No credentials: 401 on the API, the sign-in form for the page.
        assert (await http.get("/api/audit")).status_code == 401
        page = await http.get("/ops/audit")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
        # Another customer's ID, or one that does not exist: 404 whoever asks (never a hint it exists) ...
        for email in (mine.contact_email, mine.tl_email):
            r = await http.get("/api/audit", params={"customer_id": other.customer_id}, headers=portal.auth(email))
            assert r.status_code == 404, (email, r.text)
            assert other.customer_id not in r.text
        r = await http.get("/api/audit", params={"customer_id": "nobody"},
                           headers=portal.auth("ops@techconnect.example"))
        assert r.status_code == 404
        # ... and a role other than operations or admin gets 403, also for its own customer.
        for email in (mine.contact_email, mine.tl_email, "manager@techconnect.example"):
            for params in ({}, {"customer_id": mine.customer_id}):
                r = await http.get("/api/audit", params=params, headers=portal.auth(email))
                assert r.status_code == 403, (email, params, r.status_code)
        # Bad filters are refused by validation, not by a crash.
        r = await http.get("/api/audit", params={"limit": 0}, headers=portal.auth("ops@techconnect.example"))
        assert r.status_code == 422
    async with portal.client() as http:
        await sign_in(http, mine.contact_email)
        assert (await http.get("/ops/audit")).status_code == 403
        assert (await http.get("/ops/audit", params={"customer": other.customer_id})).status_code == 404
        assert 'href="/ops/audit"' not in (await http.get("/account")).text

