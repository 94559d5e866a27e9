"""Signing in (password, or a one-time link mailed to a customer contact) and out."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.activities import MailRequest
from portal import auth
from portal.auth import LINK_TTL, MAX_LINKS_PER_EMAIL, THROTTLE_WINDOW, check_csrf, client_address
from portal.rendering import redirect, render
from portal.security import digest, hash_password, needs_rehash, random_token, verify_password
from portal.state import get_state
from storage import users as users_repo
from storage.repositories import get_customer, utcnow
from storage.users import Role, normalise_email

log = logging.getLogger("techconnect.portal")
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


def safe_next(value: str | None) -> str:
    """Only a path of this site: `next=https://evil.example` must not redirect there."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def home_of(principal: auth.Principal) -> str:
    if principal.role == Role.contact and principal.customer_id:
        return f"/workspace/{principal.customer_id}"
    if principal.role in (Role.tl, Role.gts):
        return "/inbox"
    return "/programmes"


@router.get("/")
async def home(request: Request) -> Response:
    principal = await auth.current_principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_of(principal), status_code=303)


def _login_page(request: Request, *, status: int = 200, **ctx: Any) -> HTMLResponse:
    context: dict[str, Any] = {"next": safe_next(request.query_params.get("next")), "email": "", "error": None,
                               "link_email": ""}
    context.update(ctx)
    return render(request, "login.html.j2", context, status=status, title="Sign in")


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await auth.current_principal(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email = normalise_email(str(form.get("email") or ""))
    password = str(form.get("password") or "")
    next_url = safe_next(str(form.get("next") or ""))
    state = get_state(request)
    address = client_address(request)
    now = utcnow()
    async with state.sessions() as session, session.begin():
        # Housekeeping on the way: what no check reads any more.
        await users_repo.prune_attempts(session, before=now - timedelta(days=1))
        await users_repo.prune_sessions(session, before=now - timedelta(days=1))
        throttle = await auth.password_throttle(session, email, address, now)
        if throttle.refused:
            response = _login_page(
                request, status=429, email=email, next=next_url,
                error=f"Too many failed sign-ins for this account. Wait {THROTTLE_WINDOW.seconds // 60} minutes, "
                      "or ask for a sign-in link.")
            response.headers["Retry-After"] = str(throttle.retry_after_s)
            return response
        user = await users_repo.get_user_by_email(session, email) if email else None
        # argon2 takes a few hundred milliseconds on purpose: off the event loop.
        ok = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
        if not ok or user is None or not user.active or await auth.contact_revoked(session, user):
            await users_repo.record_attempt(session, f"email:{email}", succeeded=False, now=now)
            await users_repo.record_attempt(session, f"ip:{address}", succeeded=False, now=now)
            return _login_page(request, status=401, email=email, next=next_url,
                               error="Wrong e-mail address or password.")
        await users_repo.clear_failures(session, f"email:{email}")
        await users_repo.record_attempt(session, f"email:{email}", succeeded=True, now=now)
        if user.password_hash and needs_rehash(user.password_hash):
            await users_repo.set_password_hash(session, user.id, await asyncio.to_thread(hash_password, password))
        principal = auth.principal_of(user, "session")
        done = RedirectResponse(next_url if next_url != "/" else home_of(principal), status_code=303)
        await auth.start_session(request, done, user, session)
    log.info("signed in %s (%s) with a password", user.email, user.role)
    return done


@router.post("/login/link")
async def request_link(request: Request) -> Response:
    """Mail a one-time sign-in link to a customer contact. The answer is the same whether
    or not the address is known, so the form tells nobody who has an account."""
    form = await request.form()
    email = normalise_email(str(form.get("email") or ""))
    state = get_state(request)
    now = utcnow()
    token: str | None = None
    mail: MailRequest | None = None
    async with state.sessions() as session, session.begin():
        recent = await users_repo.count_attempts(session, f"link:{email}", since=now - THROTTLE_WINDOW,
                                                 succeeded=None)
        await users_repo.record_attempt(session, f"link:{email}", succeeded=True, now=now)
        user = await users_repo.get_user_by_email(session, email) if email else None
        if (user is not None and user.active and user.role == Role.contact and recent < MAX_LINKS_PER_EMAIL
                and not await auth.contact_revoked(session, user)):
            token = random_token(32)
            link = await users_repo.create_sign_in_link(session, user_id=user.id, token_hash=digest(token),
                                                        expires_at=now + LINK_TTL, now=now)
            customer = await get_customer(session, user.customer_id or "")
            portal_url = state.settings.policy.portal_url.rstrip("/")
            mail = MailRequest(
                idempotency_key=f"portal-sign-in-link-{link.id}", to=[user.email], template="sign_in_link",
                customer_id=user.customer_id,
                context={"name": user.name, "customer_name": customer.name if customer else user.customer_id,
                         "customer_id": user.customer_id, "portal_url": portal_url,
                         "link_url": f"{portal_url}/login/link/{quote(token)}",
                         "expires_minutes": int(LINK_TTL.total_seconds() // 60)})
    if mail is not None:
        try:
            # The outbox path every programme mail takes (idempotency key, Message-ID, SMTP).
            await state.mail.send_mail(mail)
        except Exception:  # the outbox row stays pending; the person may ask again
            log.exception("sign-in link for %s could not be mailed", email)
    return render(request, "link_sent.html.j2", {"email": email}, title="Check your mail")


@router.get("/login/link/{token}")
async def link_landing(request: Request, token: str) -> Response:
    """A page with a button, not an instant sign-in: mail scanners that open links must not use them up."""
    async with get_state(request).sessions() as session:
        found = await users_repo.live_sign_in_link(session, digest(token))
    if found is None:
        return render(request, "error.html.j2", {
            "status": 404, "heading": "This sign-in link does not work",
            "message": "It was used already or it has expired. Ask for a new one on the sign-in page."},
            status=404, title="Sign-in link")
    return render(request, "link_confirm.html.j2", {"token": token, "email": found[1].email}, title="Sign in")


@router.post("/login/link/{token}")
async def link_sign_in(request: Request, token: str) -> Response:
    state = get_state(request)
    async with state.sessions() as session, session.begin():
        user = await users_repo.consume_sign_in_link(session, digest(token))
        if user is None or await auth.contact_revoked(session, user):
            return render(request, "error.html.j2", {
                "status": 404, "heading": "This sign-in link does not work",
                "message": "It was used already or it has expired. Ask for a new one on the sign-in page."},
                status=404, title="Sign-in link")
        response = RedirectResponse(home_of(auth.principal_of(user, "session")), status_code=303)
        await auth.start_session(request, response, user, session)
    log.info("signed in %s with a mailed link", user.email)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = redirect(request, "/login", "You are signed out.")
    await auth.end_session(request, response)
    return response
