"""Disabling a portal user (`techconnect user disable EMAIL`, storage/users.set_active) takes away
every way in at once: password sign-in, the sessions already open, API bearer tokens and the
sign-in links mailed before (issue 11). Each is shown working just before, refused just after,
with its status code and message; the same customer's other user keeps getting in.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from typer.testing import CliRunner, Result

from activities.mailer import SmtpMailer
from config.settings import Settings
from portal.app import create_app
from storage import users as users_repo
from storage.db import SessionFactory
from testing.databases import migrated_sessions
from tests.portal_fixtures import PASSWORD, InProcess, Tenant, UnreachableTemporal, csrf_of, seed_tenant, sign_in

LINK_DEAD = "This sign-in link does not work"


class CapturingMailer(SmtpMailer):
    """The portal's mail goes through the real outbox path; only the SMTP hop is replaced."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 9)
        self.sent: list[EmailMessage] = []

    async def send(self, message: Message) -> None:
        # Read back as the relay would receive it.
        parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.sent.append(parsed)


@dataclass
class Portal(InProcess):
    app: Any
    sessions: SessionFactory
    tenant: Tenant
    env: dict[str, str]
    mailer: CapturingMailer
    temporal: UnreachableTemporal


@pytest_asyncio.fixture
async def portal(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Portal]:
    async with migrated_sessions(sqlite_url) as sessions:
        tenant = await seed_tenant(sessions, "acme", "tl-alice")
        mailer = CapturingMailer()
        temporal = UnreachableTemporal()
        settings = Settings(data_dir=tmp_path, database_url=sqlite_url, portal_secret="test-secret-" + "x" * 20)
        app = create_app(settings, sessions=sessions, client=temporal, mailer=mailer)  # type: ignore[arg-type]
        # What `techconnect` reads to find the same database.
        env = {"TECHCONNECT_DATA_DIR": str(tmp_path), "TECHCONNECT_DATABASE_URL": sqlite_url}
        async with app.router.lifespan_context(app):
            yield Portal(app, sessions, tenant, env, mailer, temporal)


async def password_sign_in(portal: Portal, email: str) -> httpx.Response:
    async with portal.client() as http:
        page = await http.get("/login")
        return await http.post("/login", data={"email": email, "password": PASSWORD,
                                               "csrf_token": csrf_of(page.text), "next": "/account"})


async def mail_a_sign_in_link(portal: Portal, email: str) -> str | None:
    """Ask for a link on the sign-in page; the token of the link mailed for it, None if none was mailed."""
    before = len(portal.mailer.sent)
    async with portal.client() as http:
        page = await http.get("/login")
        asked = await http.post("/login/link", data={"email": email, "csrf_token": csrf_of(page.text)})
    assert asked.status_code == 200 and "Check your mail" in asked.text, (asked.status_code, asked.text[:300])
    new = portal.mailer.sent[before:]
    if not new:
        return None
    assert len(new) == 1 and new[0]["X-TechConnect-Template"] == "sign_in_link" and email in str(new[0]["To"])
    body = new[0].get_body(("plain",))
    assert body is not None
    found = re.search(r"/login/link/(\S+)", str(body.get_content()))
    assert found, body.get_content()
    return found.group(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def disable_with_the_cli(portal: Portal, email: str) -> Result:
    """`techconnect user disable EMAIL`, as ops run it (in a thread: the command runs its own event loop)."""
    from cli.app import app

    def invoke() -> Result:
        return CliRunner().invoke(app, ["user", "disable", email], env=portal.env)

    return await asyncio.to_thread(invoke)


# ---------------------------------------------------------------------------------------------------------


async def test_a_disabled_user_loses_password_sessions_tokens_and_sign_in_links_at_once(portal: Portal) -> None:
    t = portal.tenant
    email, token, tl_token = t.contact_email, t.tokens[t.contact_email], t.tokens[t.tl_email]

    async with portal.client() as browser:
        # Just before: each way in works.
        await sign_in(browser, email)  # password -> a session (asserts the 303 and the account page)
        assert (await browser.get("/api/me")).json()["email"] == email  # the session on the API too
        me = await browser.get("/api/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["email"] == email, me.text
        used = await mail_a_sign_in_link(portal, email)
        unused = await mail_a_sign_in_link(portal, email)
        assert used and unused, "no sign-in link was mailed to an active contact"
        async with portal.client() as other_browser:
            landing = await other_browser.get(f"/login/link/{used}")
            assert landing.status_code == 200 and email in landing.text, landing.text[:300]
            signed_in = await other_browser.post(f"/login/link/{used}",
                                                 data={"csrf_token": csrf_of(landing.text)})
            assert signed_in.status_code == 303, signed_in.text[:300]
            assert (await other_browser.get("/api/me")).json()["email"] == email
        unused_landing = await browser.get(f"/login/link/{unused}")
        assert unused_landing.status_code == 200 and email in unused_landing.text

        disabled = await disable_with_the_cli(portal, email)
        assert disabled.exit_code == 0 and f"{email} disabled" in disabled.output, disabled.output

        # Just after: each is refused, with no word of why beyond "sign in" (nothing to probe).
        session_page = await browser.get("/account")
        assert session_page.status_code == 303, f"the open session still gets /account: {session_page.status_code}"
        assert session_page.headers["location"] == "/login?next=/account"
        session_api = await browser.get("/api/me")
        assert (session_api.status_code, session_api.json()) == (401, {"detail": "sign in first"}), \
            f"the open session still gets /api/me: {session_api.status_code} {session_api.text}"
        by_token = await browser.get("/api/me", headers=bearer(token))
        assert (by_token.status_code, by_token.json()) == (401, {"detail": "sign in first"}), \
            f"the API token still works: {by_token.status_code} {by_token.text}"
        assert by_token.headers["www-authenticate"] == "Bearer"
    password = await password_sign_in(portal, email)
    assert password.status_code == 401 and "Wrong e-mail address or password." in password.text, \
        f"password sign-in still works: {password.status_code} {password.headers.get('location')}"
    assert "set-cookie" not in password.headers or "tc_session" not in password.headers["set-cookie"]
    async with portal.client() as http:
        landing = await http.get(f"/login/link/{unused}")
        assert landing.status_code == 404 and LINK_DEAD in landing.text, \
            f"the unused sign-in link still opens its page: {landing.status_code}"
        csrf = csrf_of((await http.get("/login")).text)
        clicked = await http.post(f"/login/link/{unused}", data={"csrf_token": csrf})
        assert clicked.status_code == 404 and LINK_DEAD in clicked.text, \
            f"the unused sign-in link still signs in: {clicked.status_code} {clicked.headers.get('location')}"
        assert (await http.get("/api/me")).status_code == 401  # the click opened no session
    assert await mail_a_sign_in_link(portal, email) is None, "a disabled contact was mailed a new sign-in link"

    # Only that user: the customer's TL still gets in with a token and a password.
    async with portal.client() as http:
        tl_me = await http.get("/api/me", headers=bearer(tl_token))
    assert tl_me.status_code == 200 and tl_me.json()["email"] == t.tl_email, tl_me.text
    assert (await password_sign_in(portal, t.tl_email)).status_code == 303
    assert portal.temporal.calls == []


async def test_enabling_a_disabled_user_again_gives_back_the_password_only(portal: Portal) -> None:
    """No command enables a user again today; should one come, it must not revive what was revoked:
    the old session, token and link stay dead, a new password sign-in works."""
    t = portal.tenant
    email, token = t.contact_email, t.tokens[t.contact_email]
    async with portal.client() as browser:
        await sign_in(browser, email)
        link = await mail_a_sign_in_link(portal, email)
        assert link is not None
        assert (await browser.get("/api/me", headers=bearer(token))).status_code == 200
        disabled = await disable_with_the_cli(portal, email)
        assert disabled.exit_code == 0, disabled.output
        async with portal.sessions() as s, s.begin():
            user = await users_repo.get_user_by_email(s, email)
            assert user is not None and not user.active
            await users_repo.set_active(s, user.id, True)

        assert (await password_sign_in(portal, email)).status_code == 303  # the password is theirs again
        old_session = await browser.get("/account")
        assert old_session.status_code == 303 and old_session.headers["location"].startswith("/login"), \
            "the session opened before the user was disabled came back"
        old_token = await browser.get("/api/me", headers=bearer(token))
        assert old_token.status_code == 401, f"the API token of before came back: {old_token.text}"
        old_link = await browser.get(f"/login/link/{link}")
        assert old_link.status_code == 404 and LINK_DEAD in old_link.text, "the sign-in link of before came back"
