"""Async repository functions over an `AsyncSession` (activities, CLI, portal).

Functions never commit: the caller owns the transaction
(`async with session_factory() as s, s.begin(): ...`), so an activity's writes land
together or not at all.

Idempotent inserts use `INSERT ... ON CONFLICT DO NOTHING` and then read the row by
its key. Unlike catching IntegrityError, that never aborts the caller's PostgreSQL
transaction, and two concurrent writers with the same key end with one row: the
second waits for the first to commit, inserts nothing and reads the winner's row.

Datetimes are written in UTC. SQLite hands them back naive (still UTC), PostgreSQL
aware; `as_utc` gives readers one shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from domain.activities import AuditEntry
from domain.enrolment import Contact, Enrolment, MaintenanceSubscription
from domain.program import BillableExtra, ProgramStatus
from domain.request import Dispatch, NewRequest, RequestStatus, SlaEvent, StatusChange, tracking_number
from storage.tables import (
    AuditLogRow,
    Base,
    BillableExtraRow,
    ContactRow,
    CustomerRow,
    DispatchRow,
    DocumentRow,
    MaintenanceSubscriptionRow,
    OutboxRow,
    ProgrammeRow,
    RequestStatusChangeRow,
    SlaEventRow,
    SupportRequestRow,
    TrackingCounterRow,
    WorkspaceRow,
)

RowT = TypeVar("RowT", bound=Base)


@dataclass(frozen=True)
class Inserted(Generic[RowT]):
    """The row stored under an idempotency key, and whether this call created it."""

    row: RowT
    created: bool


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int = 0
    updated: int = 0


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Aware UTC, whichever database the value came from (SQLite returns naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite's DateTime drops the offset without converting: normalise before writing.
    return None if value is None else as_utc(value)


# ---- dialect helpers ----------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _insert_ignore(
    session: AsyncSession, model: type[Base], values: Mapping[str, Any], conflict_on: Sequence[str]
) -> bool:
    """Insert unless a row with the same `conflict_on` values exists; True when inserted."""
    table = Base.metadata.tables[model.__tablename__]
    name = _dialect(session)
    if name in ("postgresql", "sqlite"):
        ins = postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)
        result = await session.execute(ins.values(**values).on_conflict_do_nothing(index_elements=list(conflict_on)))
        return bool(getattr(result, "rowcount", 0))
    # Other dialects: a savepoint keeps the caller's transaction usable after the conflict.
    try:
        async with session.begin_nested():
            await session.execute(table.insert().values(**values))
    except IntegrityError:
        return False
    return True


async def _upsert(
    session: AsyncSession,
    model: type[Base],
    values: Mapping[str, Any],
    conflict_on: Sequence[str],
    update_columns: Sequence[str],
    coalesce_columns: Sequence[str] = (),
) -> None:
    """Insert, or update `update_columns` of the existing row (one statement, race-safe).

    `coalesce_columns` keep their stored value when the new one is NULL.
    """
    table = Base.metadata.tables[model.__tablename__]
    name = _dialect(session)
    if name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"upsert is not implemented for {name}")
    ins = postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)
    stmt = ins.values(**values)
    set_: dict[str, Any] = {}
    for col in update_columns:
        new = stmt.excluded[col]
        set_[col] = func.coalesce(new, table.c[col]) if col in coalesce_columns else new
    await session.execute(stmt.on_conflict_do_update(index_elements=list(conflict_on), set_=set_))


def _fresh(stmt: Select[tuple[RowT]]) -> Select[tuple[RowT]]:
    # Core upserts bypass the identity map: reload instead of returning stale objects.
    return stmt.execution_options(populate_existing=True)


async def _one_by(session: AsyncSession, model: type[RowT], column: InstrumentedAttribute[Any], value: Any) -> RowT:
    return (await session.execute(_fresh(select(model).where(column == value)))).scalar_one()


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
    if customer_id is not None:
        stmt = stmt.where(MaintenanceSubscriptionRow.customer_id == customer_id)
    return list((await session.execute(stmt)).scalars())


async def upsert_subscriptions(
    session: AsyncSession, subscriptions: Iterable[MaintenanceSubscription], *, now: datetime | None = None
) -> UpsertCounts:
    """Insert or replace registry rows by id; counts say how many were new."""
    subs = list(subscriptions)
    if not subs:
        return UpsertCounts()
    imported_at = _utc(now) or utcnow()
    existing = set((await session.execute(
        select(MaintenanceSubscriptionRow.id).where(MaintenanceSubscriptionRow.id.in_([s.id for s in subs]))
    )).scalars())
    for sub in subs:
        await _upsert(session, MaintenanceSubscriptionRow, {**sub.model_dump(), "imported_at": imported_at},
                      ["id"], ["customer_id", "start", "end", "contact_count", "imported_at"])
    return UpsertCounts(inserted=len(subs) - len(existing), updated=len(existing))


# ---- customers and contacts ------------------------------------------------------------


async def get_customer(session: AsyncSession, customer_id: str) -> CustomerRow | None:
    return await session.get(CustomerRow, customer_id, populate_existing=True)


async def upsert_customer(
    session: AsyncSession, customer_id: str, name: str, maintenance_subscription_id: str,
    *, now: datetime | None = None,
) -> CustomerRow:
    await _upsert(session, CustomerRow,
                  {"id": customer_id, "name": name, "maintenance_subscription_id": maintenance_subscription_id,
                   "created_at": _utc(now) or utcnow()},
                  ["id"], ["name", "maintenance_subscription_id"])
    return await _one_by(session, CustomerRow, CustomerRow.id, customer_id)


async def ensure_customer(session: AsyncSession, customer_id: str, name: str, *, now: datetime | None = None) -> None:
    """Make sure the row other tables point at exists, without touching a registered one.

    A programme refused at enrolment is still projected (so ops see why) though it was
    never registered; its subscription ID is then unknown here and left empty.
    """
    await _insert_ignore(session, CustomerRow,
                         {"id": customer_id, "name": name, "maintenance_subscription_id": "",
                          "created_at": _utc(now) or utcnow()}, ["id"])


def _email_key(email: str) -> str:
    # Rule C4 counts people, not spellings: Bob@ACME and bob@acme are one contact.
    return email.strip().lower()


async def upsert_contacts(
    session: AsyncSession, customer_id: str, contacts: Iterable[Contact], *, active: bool = True,
    now: datetime | None = None,
) -> list[ContactRow]:
    """Insert or update contacts by (customer, e-mail); returns the rows given, in order."""
    added_at = _utc(now) or utcnow()
    emails: list[str] = []
    for contact in contacts:
        email = _email_key(str(contact.email))
        if email in emails:
            continue
        emails.append(email)
        await _upsert(session, ContactRow,
                      {"customer_id": customer_id, "name": contact.name, "email": email, "role": contact.role,
                       "active": active, "added_at": added_at},
                      ["customer_id", "email"], ["name", "role", "active"])
    if not emails:
        return []
    rows = {r.email: r for r in (await session.execute(_fresh(
        select(ContactRow).where(ContactRow.customer_id == customer_id, ContactRow.email.in_(emails))
    ))).scalars()}
    return [rows[e] for e in emails]


async def list_contacts(session: AsyncSession, customer_id: str, *, active_only: bool = False) -> list[ContactRow]:
    stmt = _fresh(select(ContactRow).where(ContactRow.customer_id == customer_id).order_by(ContactRow.id))
    if active_only:
        stmt = stmt.where(ContactRow.active.is_(True))
    return list((await session.execute(stmt)).scalars())


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
) -> list[ContactRow]:
    """Make the stored contacts match `contacts`: listed ones upserted, the rest revoked."""
    given = list(contacts)
    rows = await upsert_contacts(session, customer_id, given, active=active, now=now)
    await deactivate_contacts(session, customer_id, keep=[str(c.email) for c in given])
    return rows


# ---- programmes (projection of ProgramWorkflow) ----------------------------------------


async def upsert_programme(
    session: AsyncSession, status: ProgramStatus, enrolment: Enrolment | None = None, *, now: datetime | None = None,
) -> ProgrammeRow:
    """Write the projection of `status`; `enrolment`, when given, replaces the stored one."""
    plan = status.plan
    period_start: date | None = plan.period_start if plan else None
    period_end: date | None = plan.period_end if plan else None
    if plan is None and enrolment is not None:
        period_start, period_end = enrolment.period_start, enrolment.period_end
    values: dict[str, Any] = {
        "customer_id": status.customer_id,
        "workflow_id": status.workflow_id,
        "period": status.period,
        "phase": str(status.phase),
        "technical_lead_id": status.technical_lead.id,
        "period_start": period_start,
        "period_end": period_end,
        "handbook_version": status.handbook_version,  # rule E2
        "handbook_accepted_at": _utc(status.handbook_accepted_at),  # rule E2
        "support_language": enrolment.support_language if enrolment else "en",  # rule C8
        "enrolment": enrolment.model_dump(mode="json") if enrolment else {},
        "status": status.model_dump(mode="json"),
        "updated_at": _utc(now) or utcnow(),
    }
    update_columns = ["workflow_id", "period", "phase", "technical_lead_id", "period_start", "period_end",
                      "handbook_accepted_at", "status", "updated_at"]
    if status.handbook_version:
        update_columns.append("handbook_version")
    if enrolment is not None:
        update_columns += ["enrolment", "support_language"]
    # A status without a plan or an acceptance time yet must not erase what is recorded.
    await _upsert(session, ProgrammeRow, values, ["customer_id"], update_columns,
                  coalesce_columns=["period_start", "period_end", "handbook_accepted_at"])
    return await _one_by(session, ProgrammeRow, ProgrammeRow.customer_id, status.customer_id)


async def get_programme(session: AsyncSession, customer_id: str) -> ProgrammeRow | None:
    return await session.get(ProgrammeRow, customer_id, populate_existing=True)


async def list_programmes(
    session: AsyncSession, *, phase: str | None = None, technical_lead_id: str | None = None,
) -> list[ProgrammeRow]:
    stmt = _fresh(select(ProgrammeRow).order_by(ProgrammeRow.customer_id))
    if phase is not None:
        stmt = stmt.where(ProgrammeRow.phase == phase)
    if technical_lead_id is not None:
        stmt = stmt.where(ProgrammeRow.technical_lead_id == technical_lead_id)
    return list((await session.execute(stmt)).scalars())


# ---- workspaces (D10/A9) -----------------------------------------------------------------


def workspace_id_for(customer_id: str) -> str:
    return f"ws-{customer_id}"


async def get_workspace(session: AsyncSession, customer_id: str) -> WorkspaceRow | None:
    stmt = _fresh(select(WorkspaceRow).where(WorkspaceRow.customer_id == customer_id))
    return (await session.execute(stmt)).scalar_one_or_none()


async def create_workspace(
    session: AsyncSession, customer_id: str, workspace_id: str | None = None, *, reopen: bool = False,
    now: datetime | None = None,
) -> WorkspaceRow:
    """The customer's one workspace, created on first call; `reopen` revives an archived one."""
    await _insert_ignore(session, WorkspaceRow,
                         {"id": workspace_id or workspace_id_for(customer_id), "customer_id": customer_id,
                          "status": "active", "created_at": _utc(now) or utcnow(), "archived_at": None},
                         ["customer_id"])
    if reopen:
        await session.execute(update(WorkspaceRow)
                              .where(WorkspaceRow.customer_id == customer_id, WorkspaceRow.status != "active")
                              .values(status="active", archived_at=None))
    return await _one_by(session, WorkspaceRow, WorkspaceRow.customer_id, customer_id)


async def archive_workspace(
    session: AsyncSession, customer_id: str, *, now: datetime | None = None,
) -> WorkspaceRow | None:
    """Archive the workspace; a second call keeps the first archiving time."""
    await session.execute(update(WorkspaceRow)
                          .where(WorkspaceRow.customer_id == customer_id, WorkspaceRow.status != "archived")
                          .values(status="archived", archived_at=_utc(now) or utcnow()))
    return await get_workspace(session, customer_id)


# ---- documents (workspace, A9) -----------------------------------------------------------


async def insert_document(
    session: AsyncSession, *, customer_id: str, period: int, kind: str, title: str, body_text: str, body_html: str,
    idempotency_key: str, data: dict[str, Any] | None = None, version: int = 1, now: datetime | None = None,
) -> Inserted[DocumentRow]:
    created = await _insert_ignore(session, DocumentRow, {
        "customer_id": customer_id, "period": period, "kind": kind, "title": title, "version": version,
        "body_text": body_text, "body_html": body_html, "data": data or {}, "idempotency_key": idempotency_key,
        "created_at": _utc(now) or utcnow(),
    }, ["idempotency_key"])
    return Inserted(await _one_by(session, DocumentRow, DocumentRow.idempotency_key, idempotency_key), created)


async def get_document(
    session: AsyncSession, document_id: int, *, customer_id: str | None = None,
) -> DocumentRow | None:
    """`customer_id`, when given, must own the document: workspaces are private (A9)."""
    row = await session.get(DocumentRow, document_id, populate_existing=True)
    if row is None or (customer_id is not None and row.customer_id != customer_id):
        return None
    return row


async def list_documents(
    session: AsyncSession, customer_id: str, *, period: int | None = None, kind: str | None = None,
) -> list[DocumentRow]:
    stmt = _fresh(select(DocumentRow).where(DocumentRow.customer_id == customer_id)
                  .order_by(DocumentRow.created_at, DocumentRow.id))
    if period is not None:
        stmt = stmt.where(DocumentRow.period == period)
    if kind is not None:
        stmt = stmt.where(DocumentRow.kind == kind)
    return list((await session.execute(stmt)).scalars())


# ---- billable extras (C1, C3, C4, C6, C10, C11, C13, A4) -------------------------------------


async def insert_billable_extra(
    session: AsyncSession, *, customer_id: str, period: int, extra: BillableExtra, idempotency_key: str,
) -> Inserted[BillableExtraRow]:
    created = await _insert_ignore(session, BillableExtraRow, {
        "customer_id": customer_id, "period": period, "kind": str(extra.kind), "rule": extra.rule,
        "description": extra.description, "agreement_ref": extra.agreement_ref,  # rule C3
        "amount": extra.amount.amount if extra.amount else None,
        "currency": extra.amount.currency if extra.amount else None,
        "recorded_by": extra.recorded_by, "recorded_at": as_utc(extra.recorded_at),
        "idempotency_key": idempotency_key,
    }, ["idempotency_key"])
    row = await _one_by(session, BillableExtraRow, BillableExtraRow.idempotency_key, idempotency_key)
    return Inserted(row, created)


async def list_billable_extras(
    session: AsyncSession, customer_id: str, *, period: int | None = None,
) -> list[BillableExtraRow]:
    stmt = _fresh(select(BillableExtraRow).where(BillableExtraRow.customer_id == customer_id)
                  .order_by(BillableExtraRow.recorded_at, BillableExtraRow.id))
    if period is not None:
        stmt = stmt.where(BillableExtraRow.period == period)
    return list((await session.execute(stmt)).scalars())


def _month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else datetime(year, month + 1, 1, tzinfo=UTC)
    return start, end


async def list_billable_extras_by_month(
    session: AsyncSession, year: int, month: int, *, customer_id: str | None = None,
) -> list[BillableExtraRow]:
    """Extras recorded in a calendar month (UTC), for invoicing."""
    start, end = _month_bounds(year, month)
    stmt = _fresh(select(BillableExtraRow)
                  .where(BillableExtraRow.recorded_at >= start, BillableExtraRow.recorded_at < end)
                  .order_by(BillableExtraRow.customer_id, BillableExtraRow.recorded_at, BillableExtraRow.id))
    if customer_id is not None:
        stmt = stmt.where(BillableExtraRow.customer_id == customer_id)
    return list((await session.execute(stmt)).scalars())


# ---- audit log -----------------------------------------------------------------------------


async def append_audit(
    session: AsyncSession, entry: AuditEntry, *, idempotency_key: str | None = None,
) -> Inserted[AuditLogRow]:
    """Append an entry; with a key, a retried writer finds its entry instead of adding another."""
    values: dict[str, Any] = {
        "at": as_utc(entry.at), "actor": entry.actor, "role": entry.role, "action": entry.action,
        "customer_id": entry.customer_id, "interface": entry.interface, "detail": entry.detail,
        "idempotency_key": idempotency_key,
    }
    if idempotency_key is None:
        row = AuditLogRow(**values)
        session.add(row)
        await session.flush()
        return Inserted(row, True)
    created = await _insert_ignore(session, AuditLogRow, values, ["idempotency_key"])
    return Inserted(await _one_by(session, AuditLogRow, AuditLogRow.idempotency_key, idempotency_key), created)


async def list_audit(
    session: AsyncSession, customer_id: str, *, limit: int | None = None,
) -> list[AuditLogRow]:
    """Newest first."""
    stmt = _fresh(select(AuditLogRow).where(AuditLogRow.customer_id == customer_id)
                  .order_by(AuditLogRow.at.desc(), AuditLogRow.id.desc()))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


# ---- outbox ----------------------------------------------------------------------------------


async def get_outbox(session: AsyncSession, idempotency_key: str) -> OutboxRow | None:
    stmt = _fresh(select(OutboxRow).where(OutboxRow.idempotency_key == idempotency_key))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_outbox(
    session: AsyncSession, *, customer_id: str | None = None, status: str | None = None, limit: int | None = None,
) -> list[OutboxRow]:
    """Newest first."""
    stmt = _fresh(select(OutboxRow).order_by(OutboxRow.created_at.desc(), OutboxRow.id.desc()))
    if customer_id is not None:
        stmt = stmt.where(OutboxRow.customer_id == customer_id)
    if status is not None:
        stmt = stmt.where(OutboxRow.status == status)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


# ---- support requests (A4, A6, C12, C13) ------------------------------------------------------


async def allocate_tracking_number(session: AsyncSession, customer_id: str, year: int) -> str:
    """Rule A4: the next tracking number of `customer_id` in `year`, e.g. `TC-ACME-2027-0001`.

    One atomic statement (`INSERT ... ON CONFLICT DO UPDATE SET last = last + 1 RETURNING
    last`): on PostgreSQL the row lock makes a concurrent allocator wait for this
    transaction; on SQLite the statement takes the database write lock. Either way two
    allocations never see the same number. The caller commits (a number allocated in a
    rolled-back transaction is handed out again, never twice).
    """
    table = Base.metadata.tables[TrackingCounterRow.__tablename__]
    name = _dialect(session)
    if name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"tracking numbers are not implemented for {name}")
    ins = postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)
    stmt = (ins.values(customer_id=customer_id, year=year, last=1)
            .on_conflict_do_update(index_elements=["customer_id", "year"], set_={"last": table.c["last"] + 1})
            .returning(table.c["last"]))
    sequence = int((await session.execute(stmt)).scalar_one())
    return tracking_number(customer_id, year, sequence)


async def upsert_request(
    session: AsyncSession, *, request: NewRequest, period: int, status: RequestStatus,
    now: datetime | None = None,
) -> SupportRequestRow:
    """Write the projection of a request's `status` (SupportRequestWorkflow's state).

    The filing details come from `request`. A write carrying an older `now` than the
    stored row is ignored, so a late retry never rolls the projection back.
    """
    table = Base.metadata.tables[SupportRequestRow.__tablename__]
    name = _dialect(session)
    if name not in ("postgresql", "sqlite"):
        raise NotImplementedError(f"upsert is not implemented for {name}")
    values: dict[str, Any] = {
        "tracking_number": status.tracking_number,
        "customer_id": status.customer_id,
        "period": period,
        "kind": str(status.kind),  # A6
        "priority": str(status.priority),  # A4
        "summary": status.summary,
        "description": request.description,
        "channel": str(request.channel),
        "filed_by": request.filed_by,
        "customisation": request.customisation,  # C13
        "agreement_ref": request.agreement_ref,  # C13
        "state": str(status.state),
        "pending_reason": status.pending_reason,
        "opened_at": as_utc(status.opened_at),
        "first_response_deadline": _utc(status.first_response_deadline),  # C12
        "first_response_at": _utc(status.first_response_at),
        "sla_breached": status.sla_breached,  # C12
        "closed_at": _utc(status.closed_at),
        "closure": status.closure if status.closure is not None else status.refusal,
        "updated_at": _utc(now) or utcnow(),
    }
    ins = postgresql.insert(table) if name == "postgresql" else sqlite.insert(table)
    stmt = ins.values(**values)
    mutable = ["priority", "summary", "description", "state", "pending_reason", "first_response_deadline",
               "first_response_at", "sla_breached", "closed_at", "closure", "agreement_ref", "updated_at"]
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["tracking_number"], set_={c: stmt.excluded[c] for c in mutable},
        where=stmt.excluded["updated_at"] >= table.c["updated_at"],
    ))
    return await _one_by(session, SupportRequestRow, SupportRequestRow.tracking_number, status.tracking_number)


async def get_request(session: AsyncSession, tracking_number: str) -> SupportRequestRow | None:
    return await session.get(SupportRequestRow, tracking_number, populate_existing=True)


async def list_requests(
    session: AsyncSession, *, customer_id: str | None = None, state: str | None = None, kind: str | None = None,
    period: int | None = None, opened_before: datetime | None = None,
) -> list[SupportRequestRow]:
    """Requests, oldest first; the filters serve the CLI, the portal and the A6 report."""
    stmt = _fresh(select(SupportRequestRow).order_by(SupportRequestRow.opened_at, SupportRequestRow.tracking_number))
    if customer_id is not None:
        stmt = stmt.where(SupportRequestRow.customer_id == customer_id)
    if state is not None:
        stmt = stmt.where(SupportRequestRow.state == state)
    if kind is not None:
        stmt = stmt.where(SupportRequestRow.kind == kind)
    if period is not None:
        stmt = stmt.where(SupportRequestRow.period == period)
    if opened_before is not None:
        stmt = stmt.where(SupportRequestRow.opened_at < as_utc(opened_before))
    return list((await session.execute(stmt)).scalars())


async def append_status_change(
    session: AsyncSession, *, tracking_number: str, change: StatusChange, idempotency_key: str,
) -> Inserted[RequestStatusChangeRow]:
    """Rule A4: every status change with who and when; a retried write finds its row."""
    created = await _insert_ignore(session, RequestStatusChangeRow, {
        "tracking_number": tracking_number, "at": as_utc(change.at),
        "from_state": str(change.from_state) if change.from_state is not None else None,
        "to_state": str(change.to_state), "by": change.by, "note": change.note,
        "idempotency_key": idempotency_key,
    }, ["idempotency_key"])
    row = await _one_by(session, RequestStatusChangeRow, RequestStatusChangeRow.idempotency_key, idempotency_key)
    return Inserted(row, created)


async def list_status_changes(session: AsyncSession, tracking_number: str) -> list[RequestStatusChangeRow]:
    stmt = _fresh(select(RequestStatusChangeRow).where(RequestStatusChangeRow.tracking_number == tracking_number)
                  .order_by(RequestStatusChangeRow.at, RequestStatusChangeRow.id))
    return list((await session.execute(stmt)).scalars())


async def append_sla_event(
    session: AsyncSession, *, tracking_number: str, event: SlaEvent, idempotency_key: str,
) -> Inserted[SlaEventRow]:
    """Rule C12: every SLA event (started, warned, met, breached, responded_late), once."""
    created = await _insert_ignore(session, SlaEventRow, {
        "tracking_number": tracking_number, "kind": str(event.kind), "at": as_utc(event.at),
        "deadline": as_utc(event.deadline), "note": event.note, "idempotency_key": idempotency_key,
    }, ["idempotency_key"])
    return Inserted(await _one_by(session, SlaEventRow, SlaEventRow.idempotency_key, idempotency_key), created)


async def list_sla_events(
    session: AsyncSession, *, tracking_number: str | None = None, customer_id: str | None = None,
    kind: str | None = None,
) -> list[SlaEventRow]:
    stmt = _fresh(select(SlaEventRow).order_by(SlaEventRow.at, SlaEventRow.id))
    if tracking_number is not None:
        stmt = stmt.where(SlaEventRow.tracking_number == tracking_number)
    if customer_id is not None:
        stmt = stmt.join(SupportRequestRow, SupportRequestRow.tracking_number == SlaEventRow.tracking_number
                         ).where(SupportRequestRow.customer_id == customer_id)
    if kind is not None:
        stmt = stmt.where(SlaEventRow.kind == kind)
    return list((await session.execute(stmt)).scalars())


async def upsert_dispatch(
    session: AsyncSession, *, tracking_number: str, customer_id: str, seq: int, dispatch: Dispatch,
    now: datetime | None = None,
) -> DispatchRow:
    """Rule A4: an on-site dispatch by (request, sequence number); later writes update its state.

    A booking reference or engineer already stored is kept when the new write has none.
    """
    values: dict[str, Any] = {
        "tracking_number": tracking_number, "customer_id": customer_id, "seq": seq, "reason": dispatch.reason,
        "estimated_cost": dispatch.estimated_cost.amount, "currency": dispatch.estimated_cost.currency,
        "agreement_ref": dispatch.agreement_ref,  # rule C3
        "state": str(dispatch.state), "requested_by": dispatch.requested_by,
        "requested_at": as_utc(dispatch.requested_at),
        "customer_approved_by": dispatch.customer_approved_by,
        "customer_approved_at": _utc(dispatch.customer_approved_at),
        "manager_approved_by": dispatch.manager_approved_by,
        "manager_approved_at": _utc(dispatch.manager_approved_at),
        "refusal": dispatch.refusal, "engineer": dispatch.engineer, "booking_ref": dispatch.booking_ref,
        "visit_on": dispatch.visit_on, "visit_notes": dispatch.visit_notes,
        "updated_at": _utc(now) or utcnow(),
    }
    mutable = ["state", "customer_approved_by", "customer_approved_at", "manager_approved_by",
               "manager_approved_at", "refusal", "engineer", "booking_ref", "visit_on", "visit_notes", "updated_at"]
    await _upsert(session, DispatchRow, values, ["tracking_number", "seq"], mutable,
                  coalesce_columns=["engineer", "booking_ref"])
    stmt = _fresh(select(DispatchRow).where(DispatchRow.tracking_number == tracking_number, DispatchRow.seq == seq))
    return (await session.execute(stmt)).scalar_one()


async def get_dispatch(session: AsyncSession, tracking_number: str, seq: int) -> DispatchRow | None:
    stmt = _fresh(select(DispatchRow).where(DispatchRow.tracking_number == tracking_number, DispatchRow.seq == seq))
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_dispatches(
    session: AsyncSession, *, tracking_number: str | None = None, customer_id: str | None = None,
) -> list[DispatchRow]:
    stmt = _fresh(select(DispatchRow).order_by(DispatchRow.requested_at, DispatchRow.id))
    if tracking_number is not None:
        stmt = stmt.where(DispatchRow.tracking_number == tracking_number)
    if customer_id is not None:
        stmt = stmt.where(DispatchRow.customer_id == customer_id)
    return list((await session.execute(stmt)).scalars())
