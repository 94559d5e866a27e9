"""A person's own account: signing in (password, or a one-time link mailed to a customer contact) and out,
the password, and API tokens."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from domain.activities import MailRequest
from portal import access, auth, forms
from portal.access import NotFound
from portal.auth import (
    LINK_TTL,
    MAX_LINKS_PER_EMAIL,
    THROTTLE_WINDOW,
    Principal,
    check_csrf,
    client_address,
    require_user,
)
from portal.rendering import redirect, render
from portal.state import get_state
from storage import repositories as repo
from storage import users as users_repo
from storage.credentials import (
    WeakPassword,
    check_password_strength,
    digest,
    hash_password,
    needs_rehash,
    new_api_token,
    random_token,
    verify_password,
)
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
    if principal.role == Role.support_rep:
        return "/desk"
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
        if not ok or user is None or not user.active or await auth.contact_revoked(session, user, state.clock()):
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
                and not await auth.contact_revoked(session, user, state.clock())):
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


def _dead_link(request: Request) -> HTMLResponse:
    return render(request, "error.html.j2", {
        "status": 404, "heading": "This sign-in link does not work",
        "message": "It was used already or it has expired. Ask for a new one on the sign-in page."},
        status=404, title="Sign-in link")


@router.get("/login/link/{token}")
async def link_landing(request: Request, token: str) -> Response:
    """A page with a button, not an instant sign-in: mail scanners that open links must not use them up."""
    async with get_state(request).sessions() as session:
        found = await users_repo.live_sign_in_link(session, digest(token))
    if found is None:
        return _dead_link(request)
    return render(request, "link_confirm.html.j2", {"token": token, "email": found[1].email}, title="Sign in")


@router.post("/login/link/{token}")
async def link_sign_in(request: Request, token: str) -> Response:
    state = get_state(request)
    async with state.sessions() as session, session.begin():
        user = await users_repo.consume_sign_in_link(session, digest(token))
        if user is None or await auth.contact_revoked(session, user, state.clock()):
            return _dead_link(request)
        response = RedirectResponse(home_of(auth.principal_of(user, "session")), status_code=303)
        await auth.start_session(request, response, user, session)
    log.info("signed in %s with a mailed link", user.email)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = redirect(request, "/login", "You are signed out.")
    await auth.end_session(request, response)
    return response


# ---- the account page: password and API tokens ---------------------------------------------------------


async def _account_page(request: Request, principal: Principal, new_token: str | None = None,
                        password_errors: forms.FormErrors | None = None, status: int = 200) -> Response:
    async with get_state(request).sessions() as session:
        tokens = await users_repo.list_api_tokens(session, principal.user_id)
        user = await users_repo.get_user(session, principal.user_id)
    return render(request, "account.html.j2", {
        "tokens": tokens, "new_token": new_token, "password_errors": password_errors,
        "has_password": bool(user and user.password_hash)}, status=status, title="Account")


@router.post("/account/password")
async def change_password(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """Change one's own password: the current one first (throttled like the sign-in), then the new one twice.

    Only in a signed-in browser session (an API token is not a sign-in), and only for someone who has a
    password: a contact who signs in by mailed link is given one by operations (`techconnect user
    password`), so a session taken over cannot set a password its owner does not know. Every other session
    of the user ends; this one stays.
    """
    if principal.via != "session":
        raise access.Forbidden("change the password from a signed-in browser session, not with an API token")
    form = await request.form()
    current = str(form.get("current_password") or "")
    new = str(form.get("new_password") or "")
    again = str(form.get("confirm_password") or "")
    errors = forms.FormErrors()
    state = get_state(request)
    now = repo.utcnow()
    address = auth.client_address(request)
    keys = (f"email:{principal.email}", f"ip:{address}")
    async with state.sessions() as session, session.begin():
        user = await users_repo.get_user(session, principal.user_id)
        if user is None:
            raise NotFound("user")
        if not user.password_hash:
            raise access.Forbidden("you sign in with a link mailed to you; operations can give you a password")
        throttle = await auth.password_throttle(session, principal.email, address, now)
        if throttle.refused:
            errors.top.append("Too many wrong passwords for this account: wait a few minutes and try again.")
            response = await _account_page(request, principal, password_errors=errors, status=429)
            response.headers["Retry-After"] = str(throttle.retry_after_s)
            return response
        # argon2 takes a few hundred milliseconds on purpose: off the event loop.
        if not await asyncio.to_thread(verify_password, user.password_hash, current):
            for key in keys:  # committed with the transaction: the throttle (and the sign-in's) sees it
                await users_repo.record_attempt(session, key, succeeded=False, now=now)
            errors.top.append("current_password: this is not your current password.")
        if new != again:
            errors.top.append("confirm_password: the two new passwords differ.")
        try:
            check_password_strength(new)
        except WeakPassword as exc:
            errors.top.append(f"new_password: {exc}.")
        if not errors and new == current:
            errors.top.append("new_password: choose a password other than the current one.")
        if errors:
            status = 401 if any(e.startswith("current_password") for e in errors.top) else 422
        else:
            await users_repo.set_password_hash(session, user.id, await asyncio.to_thread(hash_password, new))
            await users_repo.clear_failures(session, keys[0])
            ended = await users_repo.revoke_other_sessions(session, user.id, keep_id_hash=principal.session_hash)
    if errors:
        return await _account_page(request, principal, password_errors=errors, status=status)
    log.info("password changed by %s (%s); %d other session(s) ended", principal.email, principal.role, ended)
    return redirect(request, "/account", "Password changed. Your other sessions are signed out.")


@router.get("/account")
async def account(request: Request, principal: Principal = Depends(require_user)) -> Response:
    return await _account_page(request, principal)


@router.post("/account/tokens")
async def create_token(request: Request, principal: Principal = Depends(require_user)) -> Response:
    name = str((await request.form()).get("name") or "").strip()[:255] or "api"
    token, prefix = new_api_token()
    async with get_state(request).sessions() as session, session.begin():
        await users_repo.create_api_token(session, user_id=principal.user_id, name=name, token_hash=digest(token),
                                          prefix=prefix)
    return await _account_page(request, principal, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                       principal: Principal = Depends(require_user)) -> Response:
    async with get_state(request).sessions() as session, session.begin():
        if not await users_repo.revoke_api_token(session, token_id, user_id=principal.user_id):
            raise NotFound("token")
    return redirect(request, "/account", "Token revoked.")
