"""Who is asking: session cookies (pages), bearer tokens (API), CSRF and sign-in throttling.

- Session cookie `tc_session`: a random session ID signed with itsdangerous
  (HttpOnly, SameSite=Lax, Secure over HTTPS). The database keeps only its SHA-256,
  with the session's CSRF token, expiry and revocation, so signing out (or disabling
  a user) ends the session at once.
- CSRF: every form carries `csrf_token`. Signed in, it must equal the session's token
  (session-bound); before signing in, it must equal the signed `tc_csrf` cookie
  (double submit). API calls authenticated by a session cookie send it as the
  `X-CSRF-Token` header; bearer-token calls need none (a token is never sent by a
  browser on its own).
- Throttling: after 9 failed passwords for one e-mail within 15 minutes (or 50 from
  one address) the next attempt is refused with 429 before the password is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fastapi import HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.state import get_state
from storage import users as users_repo
from storage.credentials import digest, random_token, same
from storage.repositories import ClosedWorkspace, closed_workspace, deactivate_contacts, utcnow
from storage.tables import ContactRow, UserRow
from storage.users import Role

SESSION_COOKIE = "tc_session"
PRE_CSRF_COOKIE = "tc_csrf"
FLASH_COOKIE = "tc_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = timedelta(hours=12)
LINK_TTL = timedelta(minutes=15)
THROTTLE_WINDOW = timedelta(minutes=15)
MAX_FAILED_PER_EMAIL = 9  # the 10th rapid attempt is refused (429)
MAX_FAILED_PER_ADDRESS = 50
MAX_LINKS_PER_EMAIL = 5
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
STAFF_ROLES = frozenset({Role.gts, Role.support_rep, Role.support_manager, Role.ops, Role.admin})


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    name: str
    role: Role
    customer_id: str | None
    technical_lead_id: str | None
    via: str  # "session" | "token"
    csrf_token: str | None = None
    session_hash: str | None = None
    # A contact of a closed programme (D10): reads the workspace until closed.access_ends_at, writes nothing.
    closed: ClosedWorkspace | None = None

    @property
    def actor(self) -> str:
        """The `by` of Updates: a TL's programme ID, anyone else's e-mail."""
        return self.technical_lead_id or self.email

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def role_label(self) -> str:
        return users_repo.ROLE_LABELS[self.role]


def principal_of(user: UserRow, via: str, *, csrf_token: str | None = None,
                 session_hash: str | None = None, closed: ClosedWorkspace | None = None) -> Principal:
    return Principal(user_id=user.id, email=user.email, name=user.name, role=Role(user.role),
                     customer_id=user.customer_id, technical_lead_id=user.technical_lead_id, via=via,
                     csrf_token=csrf_token, session_hash=session_hash, closed=closed)


def serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_state(request).secret, salt=salt)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class ContactAccess:
    revoked: bool
    closed: ClosedWorkspace | None = None  # not revoked: read-only until closed.access_ends_at


async def contact_access(session: AsyncSession, user: UserRow, now: datetime | None = None) -> ContactAccess:
    """Rule D10 for a customer contact: revoked (their contact row is), read-only (their programme closed,
    its workspace is readable until `access_ends_at`), or full. Once `now` reaches `access_ends_at` the
    customer's contacts are revoked for good, in the caller's transaction: nothing gives it back but a
    new enrolment. Anyone else is never revoked here."""
    if user.role != Role.contact or not user.customer_id:
        return ContactAccess(revoked=False)
    row = (await session.execute(select(ContactRow.active).where(
        ContactRow.customer_id == user.customer_id, ContactRow.email == user.email))).first()
    if row is not None and not row[0]:
        return ContactAccess(revoked=True)
    closed = await closed_workspace(session, user.customer_id)
    if closed is None:
        return ContactAccess(revoked=False)
    if not closed.readable_at(now or utcnow()):
        await deactivate_contacts(session, user.customer_id)
        return ContactAccess(revoked=True)
    return ContactAccess(revoked=False, closed=closed)


async def contact_revoked(session: AsyncSession, user: UserRow, now: datetime | None = None) -> bool:
    """A contact whose access ended (programme closed, its readable days over) no longer gets in."""
    return (await contact_access(session, user, now)).revoked


# ---- who is asking -----------------------------------------------------------------------


async def _from_token(request: Request, token: str) -> Principal | None:
    state = get_state(request)
    async with state.sessions() as session, session.begin():
        found = await users_repo.find_api_token(session, digest(token))
        if found is None:
            return None
        contact = await contact_access(session, found[1], state.clock())
        if contact.revoked:
            return None
        await users_repo.touch_api_token(session, found[0].id)
        return principal_of(found[1], "token", closed=contact.closed)


async def _from_cookie(request: Request) -> Principal | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        session_id = serializer(request, "tc-session").loads(raw, max_age=int(SESSION_TTL.total_seconds()))
    except BadSignature:
        return None
    if not isinstance(session_id, str):
        return None
    state = get_state(request)
    async with state.sessions() as session, session.begin():  # committed: an access that ended is revoked
        found = await users_repo.get_live_session(session, digest(session_id))
        if found is None:
            return None
        contact = await contact_access(session, found[1], state.clock())
        if contact.revoked:
            return None
        return principal_of(found[1], "session", csrf_token=found[0].csrf_token, session_hash=found[0].id_hash,
                            closed=contact.closed)


async def current_principal(request: Request) -> Principal | None:
    """Bearer token first (API clients), then the session cookie; cached on the request."""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    principal: Principal | None = None
    auth = request.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        principal = await _from_token(request, credentials.strip())
    elif not auth:
        principal = await _from_cookie(request)
    request.state.principal = principal
    return principal


class SignInRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})


async def require_user(request: Request) -> Principal:
    principal = await current_principal(request)
    if principal is None:
        raise SignInRequired()
    return principal


# ---- CSRF ----------------------------------------------------------------------------------


def pre_csrf_token(request: Request) -> str:
    """The anonymous double-submit token: the one in the cookie, or a new one set on the response."""
    existing = request.cookies.get(PRE_CSRF_COOKIE)
    if existing:
        try:
            token = serializer(request, "tc-csrf").loads(existing)
            if isinstance(token, str):
                request.state.pre_csrf = (token, None)
                return token
        except BadSignature:
            pass
    token = random_token(24)
    request.state.pre_csrf = (token, serializer(request, "tc-csrf").dumps(token))
    return token


def set_pre_csrf_cookie(request: Request, response: Response) -> None:
    pending = getattr(request.state, "pre_csrf", None)
    if pending and pending[1]:
        response.set_cookie(PRE_CSRF_COOKIE, pending[1], httponly=True, samesite="lax",
                            secure=request.url.scheme == "https", path="/")


async def check_csrf(request: Request) -> None:
    """Refuse (403) an unsafe request whose CSRF token is missing or wrong."""
    if request.method in SAFE_METHODS:
        return
    principal = await current_principal(request)
    if principal is not None and principal.via == "token":
        return
    if principal is None and request.url.path.startswith("/api/"):
        return  # nobody anonymous writes through the API: the route answers 401
    sent = request.headers.get(CSRF_HEADER)
    if not sent and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if principal is not None:
        expected = principal.csrf_token
    else:
        raw = request.cookies.get(PRE_CSRF_COOKIE, "")
        try:
            loaded = serializer(request, "tc-csrf").loads(raw) if raw else None
        except BadSignature:
            loaded = None
        expected = loaded if isinstance(loaded, str) else None
    if not sent or not expected or not same(sent, expected):
        raise HTTPException(403, "the form's security token is missing or out of date; reload the page and try again")


# ---- signing in and out ------------------------------------------------------------------


async def start_session(request: Request, response: Response, user: UserRow, session: AsyncSession) -> None:
    session_id = random_token(32)
    now = utcnow()
    await users_repo.create_session(session, user_id=user.id, id_hash=digest(session_id), csrf_token=random_token(24),
                                    expires_at=now + SESSION_TTL, now=now)
    await users_repo.record_sign_in(session, user.id, now=now)
    response.set_cookie(SESSION_COOKIE, serializer(request, "tc-session").dumps(session_id),
                        max_age=int(SESSION_TTL.total_seconds()), httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/")


async def end_session(request: Request, response: Response) -> None:
    principal = await current_principal(request)
    if principal is not None and principal.session_hash:
        async with get_state(request).sessions() as session, session.begin():
            await users_repo.revoke_session(session, principal.session_hash)
    response.delete_cookie(SESSION_COOKIE, path="/")


@dataclass(frozen=True)
class Throttle:
    refused: bool
    retry_after_s: int = 0


async def password_throttle(session: AsyncSession, email: str, address: str, now: datetime) -> Throttle:
    since = now - THROTTLE_WINDOW
    by_email = await users_repo.count_attempts(session, f"email:{email}", since=since)
    by_address = await users_repo.count_attempts(session, f"ip:{address}", since=since)
    if by_email >= MAX_FAILED_PER_EMAIL or by_address >= MAX_FAILED_PER_ADDRESS:
        return Throttle(True, int(THROTTLE_WINDOW.total_seconds()))
    return Throttle(False)


__all__ = [
    "CSRF_FIELD", "LINK_TTL", "MAX_FAILED_PER_EMAIL", "MAX_LINKS_PER_EMAIL", "SESSION_COOKIE", "STAFF_ROLES",
    "THROTTLE_WINDOW", "ContactAccess", "Principal", "SignInRequired", "check_csrf", "client_address",
    "contact_access", "contact_revoked",
    "current_principal", "end_session", "password_throttle", "pre_csrf_token", "principal_of", "require_user",
    "set_pre_csrf_cookie", "start_session",
]
