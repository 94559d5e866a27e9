"""Portal users, sessions, API tokens, sign-in links and sign-in attempts (issue 4).

Like storage/repositories/, functions never commit: the caller owns the
transaction. Secrets (session IDs, API tokens, sign-in links) are stored as SHA-256
digests only, so a copy of the database signs nobody in; passwords are argon2 hashes
made by the caller (portal/passwords.py).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.repositories.clock import as_utc, at_or_now, utcnow
from storage.repositories.common import Inserted, insert_ignore
from storage.tables import ApiTokenRow, Base, PortalSessionRow, SignInAttemptRow, SignInLinkRow, UserRow

CredentialT = TypeVar("CredentialT", bound=Base)


class Role(StrEnum):
    contact = "contact"  # a customer's contact: their own workspace only
    tl = "tl"  # Technical Lead: the programmes they lead
    gts = "gts"  # GTS engineer: configuration findings (A8)
    support_manager = "support_manager"  # approves on-site dispatches (A4)
    support_rep = "support_rep"  # answers the support desk: the queue, first responses (C12)
    ops = "ops"  # operations: start programmes, notices, billable extras
    admin = "admin"


ROLE_LABELS: dict[Role, str] = {
    Role.contact: "Customer contact",
    Role.tl: "Technical Lead",
    Role.gts: "GTS engineer",
    Role.support_manager: "Support manager",
    Role.support_rep: "Support representative",
    Role.ops: "Operations",
    Role.admin: "Administrator",
}


class UserError(ValueError):
    """A user row that cannot be written as asked (duplicate e-mail, missing customer...)."""


def normalise_email(email: str) -> str:
    return email.strip().lower()


def check_user_fields(role: Role, customer_id: str | None, technical_lead_id: str | None) -> None:
    if role == Role.contact and not customer_id:
        raise UserError("a customer contact needs a customer ID (--customer)")
    if role != Role.contact and customer_id:
        raise UserError(f"only customer contacts belong to a customer, not a {ROLE_LABELS[role]}")
    if role == Role.tl and not technical_lead_id:
        raise UserError("a Technical Lead needs the ID programmes use for them (--tl-id, e.g. tl-alice)")
    if role != Role.tl and technical_lead_id:
        raise UserError(f"only Technical Leads carry a TL ID, not a {ROLE_LABELS[role]}")


async def _added(session: AsyncSession, row: CredentialT) -> CredentialT:
    session.add(row)
    await session.flush()
    return row


async def _live_with_user(
    session: AsyncSession, model: type[CredentialT], user_id: InstrumentedAttribute[int], *conditions: Any,
) -> tuple[CredentialT, UserRow] | None:
    """The credential row matching `conditions` and its user (joined on `user_id`), unless the user was deactivated."""
    stmt = (select(model, UserRow).join(UserRow, UserRow.id == user_id)
            .where(*conditions, UserRow.active.is_(True))
            .execution_options(populate_existing=True))
    found = (await session.execute(stmt)).first()
    return (found[0], found[1]) if found else None


# ---- users -----------------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: int) -> UserRow | None:
    return await session.get(UserRow, user_id, populate_existing=True)


async def get_user_by_email(session: AsyncSession, email: str) -> UserRow | None:
    stmt = select(UserRow).where(UserRow.email == normalise_email(email)).execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_users(
    session: AsyncSession, *, role: Role | str | None = None, customer_id: str | None = None,
) -> list[UserRow]:
    stmt = select(UserRow).order_by(UserRow.role, UserRow.email).execution_options(populate_existing=True)
    if role is not None:
        stmt = stmt.where(UserRow.role == str(role))
    if customer_id is not None:
        stmt = stmt.where(UserRow.customer_id == customer_id)
    return list((await session.execute(stmt)).scalars())


async def add_user(
    session: AsyncSession, *, email: str, name: str, role: Role, customer_id: str | None = None,
    technical_lead_id: str | None = None, password_hash: str | None = None, active: bool = True,
    now: datetime | None = None, exist_ok: bool = False,
) -> Inserted[UserRow]:
    """Insert a user; an existing e-mail raises UserError, or with `exist_ok` returns the stored row untouched."""
    check_user_fields(role, customer_id, technical_lead_id)
    created = await insert_ignore(session, UserRow, {
        "email": normalise_email(email), "name": name.strip(), "role": role.value, "customer_id": customer_id,
        "technical_lead_id": technical_lead_id, "password_hash": password_hash, "active": active,
        "created_at": at_or_now(now), "last_sign_in_at": None,
    }, ["email"])
    row = await get_user_by_email(session, email)
    assert row is not None
    if not created and not exist_ok:
        raise UserError(f"a user with e-mail {row.email} exists already ({row.role})")
    return Inserted(row, created)


async def set_password_hash(session: AsyncSession, user_id: int, password_hash: str | None) -> None:
    await session.execute(update(UserRow).where(UserRow.id == user_id).values(password_hash=password_hash))


async def set_active(session: AsyncSession, user_id: int, active: bool) -> None:
    """Disabling a user ends everything they could get in with, at once and for good: their sessions and
    API tokens are revoked and their unused sign-in links expire, so enabling them again later gives back
    only the password (the lookups also refuse an inactive user's credentials while it is disabled)."""
    await session.execute(update(UserRow).where(UserRow.id == user_id).values(active=active))
    if not active:
        now = utcnow()
        await session.execute(update(PortalSessionRow).where(PortalSessionRow.user_id == user_id,
                                                             PortalSessionRow.revoked_at.is_(None))
                              .values(revoked_at=now))
        await session.execute(update(ApiTokenRow).where(ApiTokenRow.user_id == user_id,
                                                        ApiTokenRow.revoked_at.is_(None))
                              .values(revoked_at=now))
        await session.execute(update(SignInLinkRow).where(SignInLinkRow.user_id == user_id,
                                                          SignInLinkRow.used_at.is_(None),
                                                          SignInLinkRow.expires_at > now)
                              .values(expires_at=now))


async def record_sign_in(session: AsyncSession, user_id: int, *, now: datetime | None = None) -> None:
    await session.execute(update(UserRow).where(UserRow.id == user_id).values(last_sign_in_at=at_or_now(now)))


# ---- browser sessions ----------------------------------------------------------------------


async def create_session(
    session: AsyncSession, *, user_id: int, id_hash: str, csrf_token: str, expires_at: datetime,
    now: datetime | None = None,
) -> PortalSessionRow:
    return await _added(session, PortalSessionRow(id_hash=id_hash, user_id=user_id, csrf_token=csrf_token,
                                                  created_at=at_or_now(now), expires_at=as_utc(expires_at),
                                                  revoked_at=None))


async def get_live_session(
    session: AsyncSession, id_hash: str, *, now: datetime | None = None,
) -> tuple[PortalSessionRow, UserRow] | None:
    """The session and its user, unless it expired, was revoked, or the user was deactivated."""
    return await _live_with_user(session, PortalSessionRow, PortalSessionRow.user_id,
                                 PortalSessionRow.id_hash == id_hash, PortalSessionRow.revoked_at.is_(None),
                                 PortalSessionRow.expires_at > at_or_now(now))


async def revoke_session(session: AsyncSession, id_hash: str, *, now: datetime | None = None) -> None:
    await session.execute(update(PortalSessionRow).where(PortalSessionRow.id_hash == id_hash,
                                                         PortalSessionRow.revoked_at.is_(None))
                          .values(revoked_at=at_or_now(now)))


async def revoke_other_sessions(session: AsyncSession, user_id: int, *, keep_id_hash: str | None,
                                now: datetime | None = None) -> int:
    """After a password change: every other live session of the user ends (a stolen cookie with it)."""
    stmt = update(PortalSessionRow).where(PortalSessionRow.user_id == user_id, PortalSessionRow.revoked_at.is_(None))
    if keep_id_hash is not None:
        stmt = stmt.where(PortalSessionRow.id_hash != keep_id_hash)
    result = await session.execute(stmt.values(revoked_at=at_or_now(now)))
    return int(getattr(result, "rowcount", 0) or 0)


# ---- API tokens ------------------------------------------------------------------------------


async def create_api_token(
    session: AsyncSession, *, user_id: int, name: str, token_hash: str, prefix: str, now: datetime | None = None,
) -> ApiTokenRow:
    return await _added(session, ApiTokenRow(user_id=user_id, name=name, token_hash=token_hash, prefix=prefix,
                                             created_at=at_or_now(now), last_used_at=None, revoked_at=None))


async def find_api_token(session: AsyncSession, token_hash: str) -> tuple[ApiTokenRow, UserRow] | None:
    """A live token and its (active) user."""
    return await _live_with_user(session, ApiTokenRow, ApiTokenRow.user_id, ApiTokenRow.token_hash == token_hash,
                                 ApiTokenRow.revoked_at.is_(None))


async def touch_api_token(session: AsyncSession, token_id: int, *, now: datetime | None = None) -> None:
    await session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id)
                          .values(last_used_at=at_or_now(now)))


async def list_api_tokens(session: AsyncSession, user_id: int) -> list[ApiTokenRow]:
    stmt = (select(ApiTokenRow).where(ApiTokenRow.user_id == user_id)
            .order_by(ApiTokenRow.created_at.desc(), ApiTokenRow.id.desc()).execution_options(populate_existing=True))
    return list((await session.execute(stmt)).scalars())


async def get_api_token(session: AsyncSession, token_id: int, *, user_id: int) -> ApiTokenRow | None:
    """`user_id` must own the token: nobody revokes another person's token by changing an ID."""
    row = await session.get(ApiTokenRow, token_id, populate_existing=True)
    return row if row is not None and row.user_id == user_id else None


async def revoke_api_token(session: AsyncSession, token_id: int, *, user_id: int, now: datetime | None = None) -> bool:
    result = await session.execute(update(ApiTokenRow)
                                   .where(ApiTokenRow.id == token_id, ApiTokenRow.user_id == user_id,
                                          ApiTokenRow.revoked_at.is_(None))
                                   .values(revoked_at=at_or_now(now)))
    return bool(getattr(result, "rowcount", 0))


# ---- sign-in links (customer contacts) -------------------------------------------------------


async def create_sign_in_link(
    session: AsyncSession, *, user_id: int, token_hash: str, expires_at: datetime, now: datetime | None = None,
) -> SignInLinkRow:
    return await _added(session, SignInLinkRow(user_id=user_id, token_hash=token_hash, created_at=at_or_now(now),
                                               expires_at=as_utc(expires_at), used_at=None))


async def live_sign_in_link(
    session: AsyncSession, token_hash: str, *, now: datetime | None = None,
) -> tuple[SignInLinkRow, UserRow] | None:
    return await _live_with_user(session, SignInLinkRow, SignInLinkRow.user_id,
                                 SignInLinkRow.token_hash == token_hash, SignInLinkRow.used_at.is_(None),
                                 SignInLinkRow.expires_at > at_or_now(now))


async def consume_sign_in_link(
    session: AsyncSession, token_hash: str, *, now: datetime | None = None,
) -> UserRow | None:
    """Use a link once: one conditional UPDATE, so two clicks racing sign in only one browser."""
    at = at_or_now(now)
    found = await live_sign_in_link(session, token_hash, now=at)
    if found is None:
        return None
    link, user = found
    result = await session.execute(update(SignInLinkRow)
                                   .where(SignInLinkRow.id == link.id, SignInLinkRow.used_at.is_(None))
                                   .values(used_at=at))
    return user if getattr(result, "rowcount", 0) == 1 else None


# ---- sign-in attempts (throttling) -----------------------------------------------------------


async def record_attempt(session: AsyncSession, key: str, *, succeeded: bool, now: datetime | None = None) -> None:
    session.add(SignInAttemptRow(key=key[:400], at=at_or_now(now), succeeded=succeeded))
    await session.flush()


async def count_attempts(
    session: AsyncSession, key: str, *, since: datetime, succeeded: bool | None = False,
) -> int:
    stmt = select(func.count()).select_from(SignInAttemptRow).where(SignInAttemptRow.key == key[:400],
                                                                    SignInAttemptRow.at > as_utc(since))
    if succeeded is not None:
        stmt = stmt.where(SignInAttemptRow.succeeded.is_(succeeded))
    return int((await session.execute(stmt)).scalar_one())


async def clear_failures(session: AsyncSession, key: str) -> None:
    """A successful sign-in forgives the failures that came before it."""
    await session.execute(delete(SignInAttemptRow).where(SignInAttemptRow.key == key[:400],
                                                         SignInAttemptRow.succeeded.is_(False)))


async def prune_attempts(session: AsyncSession, *, before: datetime) -> None:
    await session.execute(delete(SignInAttemptRow).where(SignInAttemptRow.at < as_utc(before)))


async def prune_sessions(session: AsyncSession, *, before: datetime) -> None:
    """Forget sessions and sign-in links that expired before `before`."""
    await session.execute(delete(PortalSessionRow).where(PortalSessionRow.expires_at < as_utc(before)))
    await session.execute(delete(SignInLinkRow).where(SignInLinkRow.expires_at < as_utc(before)))


__all__ = [
    "ROLE_LABELS", "Role", "UserError", "add_user", "check_user_fields", "clear_failures", "consume_sign_in_link",
    "count_attempts", "create_api_token", "create_session", "create_sign_in_link", "find_api_token",
    "get_api_token", "get_live_session", "get_user", "get_user_by_email", "list_api_tokens", "list_users",
    "live_sign_in_link", "normalise_email", "prune_attempts", "prune_sessions", "record_attempt", "record_sign_in",
    "revoke_api_token", "revoke_session", "set_active", "set_password_hash", "touch_api_token",
]
