"""Customers, their contacts and the maintenance registry they are enrolled against (rule E1)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from domain.enrolment import Contact, MaintenanceSubscription
from storage.repositories.clock import at_or_now
from storage.repositories.common import UpsertCounts, fresh, insert_ignore, rows, upsert
from storage.tables import ContactRow, CustomerRow, MaintenanceSubscriptionRow

# ---- maintenance subscriptions (rule E1) ---------------------------------------------


def subscription_model(row: MaintenanceSubscriptionRow) -> MaintenanceSubscription:
    return MaintenanceSubscription(id=row.id, customer_id=row.customer_id, start=row.start, end=row.end,
                                   contact_count=row.contact_count)


async def get_subscription(session: AsyncSession, subscription_id: str) -> MaintenanceSubscriptionRow | None:
    return await session.get(MaintenanceSubscriptionRow, subscription_id, populate_existing=True)


async def list_subscriptions(
    session: AsyncSession, *, customer_id: str | None = None,
) -> list[MaintenanceSubscriptionRow]:
    stmt = select(MaintenanceSubscriptionRow).order_by(MaintenanceSubscriptionRow.id)
    return await rows(session, stmt, (MaintenanceSubscriptionRow.customer_id, customer_id))


async def registry_contact_count(session: AsyncSession, customer_id: str, on: date) -> int:
    """Rule C4: the contacts of every maintenance subscription of the customer still running on `on` (an
    ended subscription has no contacts any more)."""
    total = await session.scalar(select(func.coalesce(func.sum(MaintenanceSubscriptionRow.contact_count), 0)).where(
        MaintenanceSubscriptionRow.customer_id == customer_id, MaintenanceSubscriptionRow.end >= on))
    return int(total or 0)


async def upsert_subscriptions(
    session: AsyncSession, subscriptions: Iterable[MaintenanceSubscription], *, now: datetime | None = None
) -> UpsertCounts:
    """Insert or replace registry rows by id; counts say how many were new."""
    subs = list(subscriptions)
    if not subs:
        return UpsertCounts()
    imported_at = at_or_now(now)
    existing = set((await session.execute(
        select(MaintenanceSubscriptionRow.id).where(MaintenanceSubscriptionRow.id.in_([s.id for s in subs]))
    )).scalars())
    await upsert(session, MaintenanceSubscriptionRow,
                 [{**sub.model_dump(), "imported_at": imported_at} for sub in subs],
                 ["id"], ["customer_id", "start", "end", "contact_count", "imported_at"])
    return UpsertCounts(inserted=len(subs) - len(existing), updated=len(existing))


# ---- customers and contacts ------------------------------------------------------------


async def get_customer(session: AsyncSession, customer_id: str) -> CustomerRow | None:
    return await session.get(CustomerRow, customer_id, populate_existing=True)


async def upsert_customer(
    session: AsyncSession, customer_id: str, name: str, maintenance_subscription_id: str,
    *, now: datetime | None = None,
) -> None:
    await upsert(session, CustomerRow,
                 {"id": customer_id, "name": name, "maintenance_subscription_id": maintenance_subscription_id,
                  "created_at": at_or_now(now)},
                 ["id"], ["name", "maintenance_subscription_id"])


async def ensure_customer(session: AsyncSession, customer_id: str, name: str, *, now: datetime | None = None) -> None:
    """Make sure the row other tables point at exists, without touching a registered one.

    A programme refused at enrolment is still projected (so ops see why) though it was
    never registered; its subscription ID is then unknown here and left empty.
    """
    await insert_ignore(session, CustomerRow,
                        {"id": customer_id, "name": name, "maintenance_subscription_id": "",
                         "created_at": at_or_now(now)}, ["id"])


def _email_key(email: str) -> str:
    # Rule C4 counts people, not spellings: Bob@ACME and bob@acme are one contact.
    return email.strip().lower()


async def upsert_contacts(
    session: AsyncSession, customer_id: str, contacts: Iterable[Contact], *, active: bool = True,
    now: datetime | None = None,
) -> None:
    """Insert or update contacts by (customer, e-mail), in one statement."""
    added_at = at_or_now(now)
    by_email: dict[str, dict[str, Any]] = {}
    for contact in contacts:
        email = _email_key(str(contact.email))
        by_email.setdefault(email, {"customer_id": customer_id, "name": contact.name, "email": email,
                                    "role": contact.role, "active": active, "added_at": added_at})
    await upsert(session, ContactRow, list(by_email.values()), ["customer_id", "email"], ["name", "role", "active"])


async def list_contacts(session: AsyncSession, customer_id: str, *, active_only: bool = False) -> list[ContactRow]:
    stmt = fresh(select(ContactRow).where(ContactRow.customer_id == customer_id).order_by(ContactRow.id))
    if active_only:
        stmt = stmt.where(ContactRow.active.is_(True))
    return await rows(session, stmt)


async def deactivate_contacts(session: AsyncSession, customer_id: str, *, keep: Iterable[str] = ()) -> int:
    """Revoke access of the customer's contacts, except the e-mails in `keep`; returns how many changed."""
    conditions: list[ColumnElement[bool]] = [ContactRow.customer_id == customer_id, ContactRow.active.is_(True)]
    kept = [_email_key(e) for e in keep]
    if kept:
        conditions.append(ContactRow.email.not_in(kept))
    result = await session.execute(update(ContactRow).where(*conditions).values(active=False))
    return int(getattr(result, "rowcount", 0))


async def sync_contacts(
    session: AsyncSession, customer_id: str, contacts: Iterable[Contact], *, active: bool = True,
    now: datetime | None = None,
) -> None:
    """Make the stored contacts match `contacts`: listed ones upserted, the rest revoked."""
    given = list(contacts)
    await upsert_contacts(session, customer_id, given, active=active, now=now)
    await deactivate_contacts(session, customer_id, keep=[str(c.email) for c in given])
