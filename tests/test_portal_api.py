"""The portal's security over HTTP (httpx on the ASGI app, SQLite, no Temporal): authentication,
tenant isolation on every route that takes an ID, CSRF on every form, password hashing and
sign-in throttling (issue 4). Routes are enumerated from the app, so a new one cannot escape.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from typer.testing import CliRunner

from config.settings import Settings
from portal.app import create_app, http_routes
from storage import users as users_repo
from storage.credentials import verify_password
from storage.db import SessionFactory
from storage.tables import UserRow
from storage.users import Role
from testing.databases import migrated_sessions
from tests.portal_fixtures import (
    PASSWORD,
    InProcess,
    Tenant,
    UnreachableTemporal,
    add_staff,
    csrf_of,
    seed_tenant,
    sign_in,
)

PARAM = re.compile(r"{(\w+)}")
# Every path parameter the portal knows. A route with a new one fails these tests until
# the new parameter gets another customer's value here.
KNOWN_PARAMS = {"customer_id", "document_id", "tracking_number", "attachment_id", "step", "token_id", "token"}
PUBLIC = {"/", "/login", "/login/link", "/login/link/{token}", "/healthz", "/logout"}


@dataclass
class Portal(InProcess):
    app: Any
    sessions: SessionFactory
    mine: Tenant  # acme: the tenant whose users ask
    other: Tenant  # globex: the tenant whose IDs they try
    temporal: UnreachableTemporal


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    async with migrated_sessions(sqlite_url) as sessions:
        mine = await seed_tenant(sessions, "acme", "tl-alice")
        other = await seed_tenant(sessions, "globex", "tl-bob")
        await add_staff(sessions, "ops@techconnect.example", Role.ops)
        temporal = UnreachableTemporal()
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=temporal)  # type: ignore[arg-type]
        async with app.router.lifespan_context(app):
            yield Portal(app, sessions, mine, other, temporal)


def routes(app: Any, *, api: bool | None = None) -> list[tuple[str, str]]:
    out = []
    for path, methods, _route in http_routes(app):
        if api is not None and path.startswith("/api/") != api:
            continue
        out += [(method, path) for method in sorted(methods - {"HEAD"})]
    assert out
    return out


def fill(path: str, values: dict[str, Any]) -> str:
    names = set(PARAM.findall(path))
    assert names <= KNOWN_PARAMS, f"{path}: give {names - KNOWN_PARAMS} a value in this test"
    return PARAM.sub(lambda m: str(values[m.group(1)]), path)


def ids_of(t: Tenant, email: str) -> dict[str, Any]:
    return {"customer_id": t.customer_id, "document_id": t.document_id, "tracking_number": t.tracking_number,
            "attachment_id": t.attachment_id,
            "step": "schedule_kickoff", "token_id": t.token_ids[email], "token": secrets.token_urlsafe(16)}


# Valid bodies, so that a 422 never hides the answer the test is about.
JSON_BODIES = {
    "/api/customers/{customer_id}/requests": {"kind": "support", "priority": "high", "summary": "x"},
    "/api/customers/{customer_id}/non-renewal-notice": {},
    "/api/customers/{customer_id}/requests/{tracking_number}/approve-dispatch": {},
    "/api/programmes/{customer_id}/steps/{step}": {"meeting_at": "2027-01-12T10:00:00+01:00"},
}


async def call(http: httpx.AsyncClient, method: str, path: str, url: str, *, csrf: str | None = None,
               token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "GET":
        return await http.get(url, headers=headers)
    if path.startswith("/api/"):
        return await http.request(method, url, json=JSON_BODIES.get(path, {}), headers=headers)
    return await http.request(method, url, data={"csrf_token": csrf or ""}, headers=headers)


# ---------------------------------------------------------------------------------------------------------


async def test_no_credentials_gives_401_on_every_api_route(portal: Portal) -> None:
    async with portal.client() as http:
        for method, path in routes(portal.app, api=True):
            url = fill(path, ids_of(portal.mine, portal.mine.contact_email))
            response = await call(http, method, path, url)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers.get("www-authenticate") == "Bearer"
            wrong = await call(http, method, path, url, token="tc_not-a-token")
            assert wrong.status_code == 401, (method, path, "with a wrong token")
        # Pages send people to the sign-in form instead.
        for method, path in routes(portal.app, api=False):
            if path in PUBLIC or path.startswith("/static") or method != "GET":
                continue
            response = await http.get(fill(path, ids_of(portal.mine, portal.mine.contact_email)))
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    assert portal.temporal.calls == []


@pytest.mark.rule("D10", "A9")
@pytest.mark.parametrize("who", ["contact", "tl"])
async def test_another_tenants_ids_give_404_on_every_route_that_takes_one(portal: Portal, who: str) -> None:
    """Rule D10/A9: a private workspace. 404 (never 403) whatever the route, the method or the way in."""
    mine, other = portal.mine, portal.other
    email = mine.contact_email if who == "contact" else mine.tl_email
    async with portal.client() as http:
        csrf = await sign_in(http, email)
        token = mine.tokens[email]
        checked = 0
        controls: list[tuple[str, str]] = []
        for method, path in routes(portal.app):
            if not PARAM.search(path):
                continue
            theirs = ids_of(other, other.contact_email)
            variants = [theirs]
            # My customer, their document / request / token: still theirs.
            for key in ("document_id", "tracking_number", "attachment_id", "token_id"):
                if "{" + key + "}" in path:
                    variants.append({**ids_of(mine, email), key: theirs[key]})
            for values in variants:
                url = fill(path, values)
                for how in ("session", "token") if path.startswith("/api/") else ("session",):
                    response = await call(http, method, path, url, csrf=csrf,
                                          token=token if how == "token" else None)
                    if how == "session" and path.startswith("/api/") and method != "GET":
                        # Cookie-authenticated API writes need the CSRF header: send it.
                        response = await http.request(method, url, json=JSON_BODIES.get(path, {}),
                                                      headers={"X-CSRF-Token": csrf})
                    assert response.status_code == 404, (who, how, method, url, response.status_code)
                    assert other.customer_id not in response.text.replace(url, ""), (method, url)
                    checked += 1
            if path != "/login/link/{token}":
                controls.append((method, path))
        assert checked > 30
        # The control: with my own IDs each route is there (not 404), so the 404s above mean "not yours".
        # (Revoking my own token last: the token calls above needed it.)
        for method, path in sorted(controls, key=lambda c: "revoke" in c[1]):
            mine_url = fill(path, ids_of(mine, email))
            response = await call(http, method, path, mine_url, csrf=csrf, token=token if
                                  path.startswith("/api/") else None)
            assert response.status_code != 404, (who, method, mine_url, response.text[:300])
    # Nothing about the other tenant ever reached Temporal.
    assert not [c for c in portal.temporal.calls if other.customer_id in c.lower()], portal.temporal.calls


async def test_every_form_is_refused_without_its_csrf_token(portal: Portal) -> None:
    async with portal.client() as http:
        # Before signing in: the login form itself (double-submit cookie).
        page = await http.get("/login")
        refused = await http.post("/login", data={"email": portal.mine.contact_email, "password": PASSWORD})
        assert refused.status_code == 403
        ok = await http.post("/login", data={"email": portal.mine.contact_email, "password": PASSWORD,
                                             "csrf_token": csrf_of(page.text)})
        assert ok.status_code == 303
    async with portal.client() as http:
        csrf = await sign_in(http, "ops@techconnect.example")
        posted = 0
        for method, path in routes(portal.app, api=False):
            if method != "POST":
                continue
            url = fill(path, ids_of(portal.mine, portal.mine.contact_email))
            for data in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf + "x"}):
                response = await http.post(url, data={**data, "summary": "x", "customer_id": "acme"})
                assert response.status_code == 403, (path, data, response.status_code)
                assert "security token" in response.text
            posted += 1
        assert posted >= 10
        # The API with the session cookie: the header is required for writes.
        url, body = "/api/customers/acme/requests", {"kind": "support", "priority": "low", "summary": "x"}
        refused = await http.post(url, json=body)
        assert refused.status_code == 403 and "security token" in refused.text
        passed = await http.post(url, json=body, headers={"X-CSRF-Token": csrf})
        assert passed.status_code == 503  # past the CSRF check, on to Temporal (absent from this test)
        # Still signed in: the refusals changed nothing.
        assert (await http.get("/account")).status_code == 200


async def test_passwords_are_stored_as_argon2_hashes(portal: Portal) -> None:
    async with portal.sessions() as s:
        users = list((await s.execute(select(UserRow))).scalars())
    assert len(users) == 5
    for user in users:
        assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    assert verify_password(users[0].password_hash, PASSWORD)
    assert not verify_password(users[0].password_hash, PASSWORD + "!")


def test_user_add_command_hashes_the_password(tmp_path: Path) -> None:
    from cli.app import app

    env = {"TECHCONNECT_DATA_DIR": str(tmp_path), "TECHCONNECT_DATABASE_URL": ""}
    runner = CliRunner()
    added = runner.invoke(app, ["user", "add", "dora@support.example", "--name", "Dora", "--role", "tl",
                                "--tl-id", "tl-dora", "--password", "a long enough secret", "--json"], env=env)
    assert added.exit_code == 0, added.output
    again = runner.invoke(app, ["user", "add", "DORA@support.example", "--name", "Dora", "--role", "ops",
                                "--password", "a long enough secret"], env=env)
    assert again.exit_code == 2 and "exists already" in again.output
    weak = runner.invoke(app, ["user", "add", "eve@support.example", "--name", "Eve", "--role", "ops",
                               "--password", "short"], env=env)
    assert weak.exit_code == 2 and "at least" in weak.output
    no_customer = runner.invoke(app, ["user", "add", "c@x.example", "--name", "C", "--role", "contact"], env=env)
    assert no_customer.exit_code == 2 and "customer" in no_customer.output
    token = runner.invoke(app, ["user", "token", "dora@support.example", "--json"], env=env)
    assert token.exit_code == 0 and '"token": "tc_' in token.output
    listed = runner.invoke(app, ["user", "list", "--json"], env=env)
    assert "tl-dora" in listed.output and "a long enough secret" not in listed.output
    db = (tmp_path / "techconnect.db").read_bytes()
    assert b"a long enough secret" not in db and b"$argon2id$" in db


async def test_the_tenth_rapid_wrong_password_is_throttled(portal: Portal) -> None:
    async with portal.client() as http:
        csrf = csrf_of((await http.get("/login")).text)
        for attempt in range(1, 10):
            response = await http.post("/login", data={"email": portal.mine.contact_email,
                                                        "password": f"guess {attempt}", "csrf_token": csrf})
            assert response.status_code == 401, attempt
            assert "Wrong e-mail address or password" in response.text
        tenth = await http.post("/login", data={"email": portal.mine.contact_email, "password": "guess 10",
                                                "csrf_token": csrf})
        assert tenth.status_code == 429
        assert int(tenth.headers["retry-after"]) > 0
        # Refused before the password is even checked: the right one does not get in either.
        right = await http.post("/login", data={"email": portal.mine.contact_email, "password": PASSWORD,
                                                "csrf_token": csrf})
        assert right.status_code == 429
        # Another account is not locked by someone guessing this one's password.
        other = await http.post("/login", data={"email": portal.other.contact_email, "password": PASSWORD,
                                                "csrf_token": csrf})
        assert other.status_code == 303


async def test_changing_ones_password_checks_the_current_one_and_ends_the_other_sessions(portal: Portal) -> None:
    email, new = portal.mine.contact_email, "a brand new passphrase"
    async with portal.client() as elsewhere, portal.client() as http:
        await sign_in(elsewhere, email)  # the same user on another device
        csrf = await sign_in(http, email)
        page = (await http.get("/account")).text
        assert "data-change-password" in page and 'name="current_password"' in page

        async def change(current: str, new_password: str, again: str) -> httpx.Response:
            return await http.post("/account/password", data={
                "csrf_token": csrf, "current_password": current, "new_password": new_password,
                "confirm_password": again})

        wrong = await change("not it at all", new, new)
        assert wrong.status_code == 401 and "not your current password" in wrong.text
        weak = await change(PASSWORD, "short", "short")
        assert weak.status_code == 422 and "at least 10 characters" in weak.text
        differ = await change(PASSWORD, new, new + "!")
        assert differ.status_code == 422 and "differ" in differ.text
        same_again = await change(PASSWORD, PASSWORD, PASSWORD)
        assert same_again.status_code == 422 and "other than the current one" in same_again.text
        async with portal.sessions() as s:
            unchanged = (await s.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        assert verify_password(unchanged.password_hash, PASSWORD)  # nothing changed by the refusals

        done = await change(PASSWORD, new, new)
        assert done.status_code == 303 and done.headers["location"] == "/account"
        assert (await http.get("/account")).status_code == 200  # this session goes on
        assert (await elsewhere.get("/account")).status_code in (303, 401)  # the other one ended
    async with portal.sessions() as s:
        changed = (await s.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
    assert verify_password(changed.password_hash, new) and not verify_password(changed.password_hash, PASSWORD)
    async with portal.client() as http:
        csrf = csrf_of((await http.get("/login")).text)
        old = await http.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf})
        assert old.status_code == 401
        await sign_in(http, email, new)


async def test_a_password_is_changed_only_in_a_session_by_someone_who_has_one_and_guesses_are_throttled(
        portal: Portal) -> None:
    email = portal.mine.contact_email
    token = portal.mine.tokens[email]
    async with portal.client() as http:
        csrf = await sign_in(http, email)
        # An API token is not a sign-in (and skips the CSRF check): refused.
        by_token = await http.post("/account/password", headers={"Authorization": f"Bearer {token}"},
                                   data={"current_password": PASSWORD, "new_password": "x" * 12,
                                         "confirm_password": "x" * 12})
        assert by_token.status_code == 403
        for guess in range(9):
            wrong = await http.post("/account/password", data={
                "csrf_token": csrf, "current_password": f"guess {guess}", "new_password": "a new passphrase!",
                "confirm_password": "a new passphrase!"})
            assert wrong.status_code == 401, guess
        tenth = await http.post("/account/password", data={
            "csrf_token": csrf, "current_password": PASSWORD, "new_password": "a new passphrase!",
            "confirm_password": "a new passphrase!"})
        assert tenth.status_code == 429 and int(tenth.headers["retry-after"]) > 0  # even the right one, now
    async with portal.sessions() as s:
        user = (await s.execute(select(UserRow).where(UserRow.email == email))).scalar_one()
        assert verify_password(user.password_hash, PASSWORD)
        # A contact who signs in by link has no password to change: none can be set from a session.
        other = (await s.execute(select(UserRow).where(UserRow.email == portal.other.contact_email))).scalar_one()
    async with portal.client() as http:
        csrf = await sign_in(http, portal.other.contact_email)
        async with portal.sessions() as s, s.begin():
            await users_repo.set_password_hash(s, other.id, None)
        assert "data-no-password" in (await http.get("/account")).text
        refused = await http.post("/account/password", data={
            "csrf_token": csrf, "new_password": "a new passphrase!", "confirm_password": "a new passphrase!"})
        assert refused.status_code == 403
    async with portal.sessions() as s:
        assert (await s.get(UserRow, other.id)).password_hash is None  # type: ignore[union-attr]


async def test_bearer_tokens_see_only_their_own_customer(portal: Portal) -> None:
    mine = portal.mine
    async with portal.client() as http:
        auth = {"Authorization": f"Bearer {mine.tokens[mine.contact_email]}"}
        me = await http.get("/api/me", headers=auth)
        assert me.status_code == 200 and me.json()["customer_id"] == "acme" and me.json()["role"] == "contact"
        assert [c["id"] for c in (await http.get("/api/customers", headers=auth)).json()] == ["acme"]
        docs = (await http.get("/api/customers/acme/documents", headers=auth)).json()
        assert [d["id"] for d in docs] == [mine.document_id]
        detail = await http.get(f"/api/customers/acme/requests/{mine.tracking_number}", headers=auth)
        assert detail.status_code == 200 and detail.json()["sla"] == "breached", detail.text  # opened in 2025
        # A contact is no operator: 403 on what is not about a customer.
        assert (await http.get("/api/programmes", headers=auth)).status_code == 403
        # The TL of acme sees acme's programme, not globex's.
        tl = {"Authorization": f"Bearer {mine.tokens[mine.tl_email]}"}
        listed = await http.get("/api/programmes", headers=tl)
        assert [p["customer_id"] for p in listed.json()] == ["acme"] and listed.headers["X-Total-Count"] == "1"
        # The desk queue (issue 16): a contact has none; the TL's holds acme's open request, with its clock.
        assert (await http.get("/api/desk", headers=auth)).status_code == 403
        desk = await http.get("/api/desk", headers=tl)
        assert desk.status_code == 200 and desk.headers["X-Total-Count"] == str(len(desk.json())), desk.text
        assert {d["customer_id"] for d in desk.json()} <= {"acme"}
        assert [(d["tracking_number"], d["late"]) for d in desk.json()
                if d["tracking_number"] == mine.tracking_number] == [(mine.tracking_number, True)], desk.text
        spec = (await http.get("/api/openapi.json")).json()
        assert "/api/customers/{customer_id}/documents" in spec["paths"]
        assert any(s.get("scheme") == "bearer" for s in spec["components"]["securitySchemes"].values())


async def test_a_revoked_token_and_a_signed_out_session_no_longer_get_in(portal: Portal) -> None:
    """Revoking one's own token and signing out end them on the server. (Disabling a user:
    tests/test_portal_disabled_user.py.)"""
    mine = portal.mine
    auth = {"Authorization": f"Bearer {mine.tokens[mine.contact_email]}"}
    tl_auth = {"Authorization": f"Bearer {mine.tokens[mine.tl_email]}"}
    async with portal.client() as http:
        csrf = await sign_in(http, mine.contact_email)
        before = await http.get("/api/me", headers=auth)
        assert before.status_code == 200 and before.json()["email"] == mine.contact_email, before.text
        revoke = await http.post(f"/account/tokens/{mine.token_ids[mine.contact_email]}/revoke",
                                 data={"csrf_token": csrf})
        assert revoke.status_code == 303, revoke.text[:300]
        after = await http.get("/api/me", headers=auth)
        assert (after.status_code, after.json()) == (401, {"detail": "sign in first"}), \
            f"the revoked token still works: {after.status_code} {after.text}"
        assert after.headers["www-authenticate"] == "Bearer"
        # Only that token: the TL's still works, and so does the session that revoked it.
        assert (await http.get("/api/me", headers=tl_auth)).status_code == 200
        assert (await http.get("/account")).status_code == 200
        # Signing out ends the session on the server, not only in the browser.
        cookie = http.cookies.get("tc_session")
        assert cookie
        assert (await http.post("/logout", data={"csrf_token": csrf})).status_code == 303
    async with portal.client() as http:
        http.cookies.set("tc_session", cookie)
        page = await http.get("/account")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/account", \
            f"the signed-out session still gets /account: {page.status_code}"
        api = await http.get("/api/me")
        assert (api.status_code, api.json()) == (401, {"detail": "sign in first"}), \
            f"the signed-out session still gets /api/me: {api.status_code} {api.text}"


async def test_step_forms_render_and_put_each_error_beside_its_field(portal: Portal) -> None:
    """The TL's forms (D4-D9, D6, D7): pydantic errors come back beside the field they are about."""
    from portal.forms import STEP_FORMS

    async with portal.client() as http:
        csrf = await sign_in(http, portal.mine.tl_email)
        for step in STEP_FORMS:
            page = await http.get(f"/programmes/acme/steps/{step}")
            assert page.status_code == 200, step
            assert 'name="csrf_token"' in page.text
        bad = await http.post("/programmes/acme/steps/complete_kickoff", data={
            "csrf_token": csrf, "held_on": "2027-13-45", "minutes": "",
            "agreed_dates.site_inventory": "next week"})
        assert bad.status_code == 422
        errors = dict(re.findall(r'data-error-for="([^"]+)">([^<]+)<', bad.text))
        assert errors == {"held_on": "Enter a date as YYYY-MM-DD.", "attendees": "Enter at least one line.",
                          "minutes": "This field is required.",
                          "agreed_dates.site_inventory": "Enter a date as YYYY-MM-DD."}, errors
        assert 'value="next week"' in bad.text  # what was typed comes back
        inventory = await http.post("/programmes/acme/steps/submit_site_inventory", data={
            "csrf_token": csrf, "inventory.database_servers": "SQL Server; 2019; db-01; 2027-01-01\nOracle",
            "inventory.security.admin_password_rotation_days": "often"})
        errors = dict(re.findall(r'data-error-for="([^"]+)">([^<]+)<', inventory.text))
        assert errors["inventory.database_servers"] == "line 2, version: This field is required.", errors
        assert "inventory.security.admin_password_rotation_days" in errors
        # A step that is no step: 404; a step for someone else's role: 403 (the customer is in reach).
        assert (await http.get("/programmes/acme/steps/no_such_step")).status_code == 404
    async with portal.client() as http:
        await sign_in(http, portal.mine.contact_email)
        assert (await http.get("/programmes/acme/steps/schedule_kickoff")).status_code == 403
    assert portal.temporal.calls == []  # invalid forms never reach Temporal
