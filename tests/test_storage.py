"""Migrations and repositories, on SQLite and PostgreSQL (`database_url` runs each test on both)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.activities import AuditEntry
from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, TechnicalLead
from domain.money import Money
from domain.program import BillableExtra, Phase, ProgramStatus
from domain.step_inputs import BillableExtraKind
from storage import repositories as repo
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import current_revision, head_revision, upgrade, upgrade_sync
from storage.schema_version import at_newest_revision, newest_revision
from storage.tables import (
    AuditLogRow,
    Base,
    BillableExtraRow,
    ContactRow,
    CustomerRow,
    DocumentRow,
    MaintenanceSubscriptionRow,
    OutboxRow,
    WorkspaceRow,
)

NOW = datetime(2027, 3, 15, 10, 30, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade(database_url)
    eng = make_engine(database_url)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


async def count(sessions: SessionFactory, model: type[Base]) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def seed_customer(sessions: SessionFactory, customer_id: str = "acme") -> None:
    async with sessions() as s, s.begin():
        await repo.upsert_customer(s, customer_id, "ACME Corp", "SMP-1001", now=NOW)


def status(customer_id: str = "acme", *, phase: Phase = Phase.onboarding, tl: str = "tl-alice") -> ProgramStatus:
    return ProgramStatus(
        customer_id=customer_id, customer_name=customer_id.upper(), workflow_id=f"program-{customer_id}", period=1,
        phase=phase, calendar=BusinessCalendar(),
        technical_lead=TechnicalLead(id=tl, name="Alice Martin", email="alice@support.example"),
        annual_fee=Money(amount=Decimal("48000.00")), handbook_version="rev. 2024", handbook_accepted_at=NOW,
    )


# ---- migrations ------------------------------------------------------------------------


def _schema(conn: Connection) -> dict[str, Any]:
    """What the database really has, in a shape comparable with the metadata."""
    insp = inspect(conn)
    dialect = conn.dialect
    out: dict[str, Any] = {}
    for name in insp.get_table_names():
        if name == "alembic_version":
            continue
        out[name] = {
            "columns": {c["name"]: (c["nullable"], c["type"].compile(dialect)) for c in insp.get_columns(name)},
            "pk": set(insp.get_pk_constraint(name)["constrained_columns"]),
            "unique": {frozenset(u["column_names"]) for u in insp.get_unique_constraints(name)},
            "indexes": {(i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in insp.get_indexes(name) if not i.get("duplicates_constraint")},
            "fks": {(tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                    for f in insp.get_foreign_keys(name)},
        }
    return out


def _expected(conn: Connection) -> dict[str, Any]:
    from sqlalchemy import Index, UniqueConstraint

    dialect = conn.dialect
    out: dict[str, Any] = {}
    for name, table in Base.metadata.tables.items():
        out[name] = {
            "columns": {c.name: (c.nullable, c.type.compile(dialect)) for c in table.columns},
            "pk": {c.name for c in table.primary_key.columns},
            "unique": {frozenset(c.name for c in u.columns)
                       for u in table.constraints if isinstance(u, UniqueConstraint)},
            "indexes": {(i.name, tuple(c.name for c in i.columns), bool(i.unique))
                        for i in table.indexes if isinstance(i, Index)},
            "fks": {((f.parent.name,), f.column.table.name, (f.column.name,)) for f in table.foreign_keys},
        }
    return out


def _autogenerate_diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


async def test_migration_creates_exactly_the_tables_of_the_metadata(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        actual = await conn.run_sync(_schema)
        expected = await conn.run_sync(_expected)
        diff = await conn.run_sync(_autogenerate_diff)
    assert set(actual) == set(expected)
    for table in expected:
        assert actual[table] == expected[table], table
    # Alembic's own comparison catches what the hand-made one might miss.
    assert diff == []


async def test_upgrade_twice_is_a_noop_and_keeps_data(database_url: str) -> None:
    assert await current_revision(database_url) is None
    await upgrade(database_url)
    assert await current_revision(database_url) == head_revision() is not None
    eng = make_engine(database_url)
    try:
        await seed_customer(make_session_factory(eng))
        await upgrade(database_url)
        assert await current_revision(database_url) == head_revision()
        assert await count(make_session_factory(eng), CustomerRow) == 1
    finally:
        await eng.dispose()


async def test_a_reading_command_knows_the_newest_revision_without_alembic(database_url: str) -> None:
    """storage/schema_version.py reads the newest revision off the file names: Alembic's head, and the database
    is found behind it until upgraded (starter/database.py then upgrades)."""
    assert newest_revision() == head_revision()
    eng = make_engine(database_url)
    try:
        assert not await at_newest_revision(eng)  # empty: no alembic_version table
        await upgrade(database_url)
        assert await at_newest_revision(eng)
        async with eng.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0009'"))
        assert not await at_newest_revision(eng)
    finally:
        await eng.dispose()


async def test_concurrent_upgrades_on_start_do_not_collide(database_url: str) -> None:
    # Several workers and the portal start together and each calls upgrade().
    await asyncio.gather(*(upgrade(database_url) for _ in range(4)))
    assert await current_revision(database_url) == head_revision()


async def test_upgrade_sync_inside_a_running_loop(database_url: str) -> None:
    upgrade_sync(database_url)
    assert await current_revision(database_url) == head_revision()


def test_upgrade_sync_without_a_loop(sqlite_url: str) -> None:
    upgrade_sync(sqlite_url)
    upgrade_sync(sqlite_url)
    assert asyncio.run(current_revision(sqlite_url)) == head_revision()


# ---- idempotent writes -----------------------------------------------------------------


async def test_document_insert_is_idempotent(sessions: SessionFactory) -> None:
    await seed_customer(sessions)
    results = []
    for title in ("Communication plan", "Changed title on retry"):
        async with sessions() as s, s.begin():
            results.append(await repo.insert_document(
                s, customer_id="acme", period=1, kind="communication_plan", title=title, body_text="t",
                body_html="<p>t</p>", data={"v": 1}, idempotency_key="program-acme:p1:plan"))
    assert [r.created for r in results] == [True, False]
    assert results[0].row.id == results[1].row.id
    assert results[1].row.title == "Communication plan"  # the first write wins
    assert await count(sessions, DocumentRow) == 1
    async with sessions() as s:
        assert [d.id for d in await repo.list_documents(s, "acme")] == [results[0].row.id]
        assert await repo.get_document(s, results[0].row.id, customer_id="acme") is not None
        # rule D10/A9: a workspace is private, another customer cannot read the document.
        assert await repo.get_document(s, results[0].row.id, customer_id="globex") is None


async def test_concurrent_idempotent_inserts_leave_one_row(sessions: SessionFactory) -> None:
    # Two attempts of one activity (e.g. a retry racing a slow first try) on separate connections.
    await seed_customer(sessions)

    async def attempt() -> int:
        async with sessions() as s, s.begin():
            res = await repo.insert_document(s, customer_id="acme", period=1, kind="monthly_report", title="March",
                                             body_text="", body_html="", idempotency_key="race")
            return res.row.id

    ids = await asyncio.gather(*(attempt() for _ in range(5)))
    assert len(set(ids)) == 1
    assert await count(sessions, DocumentRow) == 1


async def test_billable_extra_insert_is_idempotent_and_listed_by_month(sessions: SessionFactory) -> None:
    # rule C10: a second call in a month is a billable extra, recorded once however often retried.
    await seed_customer(sessions)
    extra = BillableExtra(kind=BillableExtraKind.extra_call, rule="C10", description="second call in March",
                          agreement_ref="AGR-7", amount=Money(amount=Decimal("450.00")), recorded_at=NOW,
                          recorded_by="tl-alice")
    for _ in range(2):
        async with sessions() as s, s.begin():
            await repo.insert_billable_extra(s, customer_id="acme", period=1, extra=extra, idempotency_key="x1")
    assert await count(sessions, BillableExtraRow) == 1
    async with sessions() as s:
        (row,) = await repo.list_billable_extras(s, "acme", period=1)
        assert (row.amount, row.currency, row.agreement_ref) == (Decimal("450.00"), "EUR", "AGR-7")  # rule C3
        assert repo.as_utc(row.recorded_at) == NOW
        assert [r.id for r in await repo.list_billable_extras_by_month(s, 2027, 3)] == [row.id]
        assert await repo.list_billable_extras_by_month(s, 2027, 4) == []
        assert await repo.list_billable_extras(s, "acme", period=2) == []


async def test_audit_with_key_is_stored_once_without_key_every_time(sessions: SessionFactory) -> None:
    entry = AuditEntry(at=NOW, actor="ops-1", action="program_started", customer_id="acme", interface="cli")
    for _ in range(2):
        async with sessions() as s, s.begin():
            await repo.append_audit(s, entry, idempotency_key="k1")
            await repo.append_audit(s, entry)
    assert await count(sessions, AuditLogRow) == 3
    async with sessions() as s:
        assert len(await repo.list_audit(s, "acme", limit=2)) == 2


async def test_customer_contacts_and_workspace_upserts(sessions: SessionFactory) -> None:
    contacts = [Contact(name="Bob Stone", email="bob@acme.example", role="IT"),
                Contact(name="Eve Ray", email="eve@acme.example")]
    for name in ("ACME", "ACME Corp"):
        async with sessions() as s, s.begin():
            await repo.upsert_customer(s, "acme", name, "SMP-1001")
            await repo.upsert_contacts(s, "acme", contacts)
            await repo.create_workspace(s, "acme")
    assert await count(sessions, CustomerRow) == 1
    assert await count(sessions, ContactRow) == 2
    assert await count(sessions, WorkspaceRow) == 1
    async with sessions() as s, s.begin():
        customer = await repo.get_customer(s, "acme")
        assert customer is not None
        assert customer.name == "ACME Corp"
        # Same person, other spelling of the address: still one contact (rule C4 counts people).
        await repo.upsert_contacts(s, "acme", [Contact(name="Bob S.", email="Bob@acme.example")])
        assert len(await repo.list_contacts(s, "acme")) == 2
        assert await repo.deactivate_contacts(s, "acme", keep=["eve@acme.example"]) == 1
        assert [c.email for c in await repo.list_contacts(s, "acme", active_only=True)] == ["eve@acme.example"]
        ws = await repo.archive_workspace(s, "acme", now=NOW)
        assert ws is not None
        assert ws.status == "archived"
        again = await repo.archive_workspace(s, "acme")
        assert again is not None
        assert again.archived_at is not None
        assert repo.as_utc(again.archived_at) == NOW  # the first archiving time is kept
        reopened = await repo.create_workspace(s, "acme", reopen=True)
        assert (reopened.id, reopened.status, reopened.archived_at) == ("ws-acme", "active", None)


async def test_a_status_save_keeps_the_enrolment_and_a_new_enrolment_replaces_it(sessions: SessionFactory) -> None:
    """The programme's upsert updates the enrolment only when one is given (two shapes of one statement, each
    built once and reused: they must not be mixed up, in whichever order they are first built)."""
    from testing.enrolment import enrolment

    await seed_customer(sessions, "acme")
    first = enrolment("acme", date(2027, 1, 1), support_language="fr")
    async with sessions() as s, s.begin():
        await repo.upsert_programme(s, status("acme"), first)
        await repo.upsert_programme(s, status("acme", phase=Phase.running))  # a status save: no enrolment
    async with sessions() as s:
        kept = await repo.get_programme(s, "acme")
        assert kept is not None
        assert (kept.phase, kept.enrolment, kept.support_language) == (
            "running", first.model_dump(mode="json"), "fr")
    second = enrolment("acme", date(2027, 1, 1), support_language="en")
    async with sessions() as s, s.begin():
        await repo.upsert_programme(s, status("acme", phase=Phase.running), second)
    async with sessions() as s:
        replaced = await repo.get_programme(s, "acme")
        assert replaced is not None
        assert (replaced.enrolment, replaced.support_language) == (second.model_dump(mode="json"), "en")


async def test_programme_projection_upsert_get_and_filters(sessions: SessionFactory) -> None:
    for cid in ("acme", "globex", "initech"):
        await seed_customer(sessions, cid)
    async with sessions() as s, s.begin():
        await repo.upsert_programme(s, status("acme", tl="tl-alice"))
        await repo.upsert_programme(s, status("globex", tl="tl-bob", phase=Phase.running))
        await repo.upsert_programme(s, status("initech", tl="tl-alice", phase=Phase.running))
        await repo.upsert_programme(s, status("acme", tl="tl-alice", phase=Phase.running))
    async with sessions() as s:
        got = await repo.get_programme(s, "acme")
        assert got is not None
        assert got.phase == "running"
        assert got.status["phase"] == "running"
        assert got.handbook_version == "rev. 2024"  # rule E2
        assert got.period == 1
        assert got.enrolment == {}
        assert [p.customer_id for p in await repo.list_programmes(s, phase="running")] == ["acme", "globex", "initech"]
        assert [p.customer_id for p in await repo.list_programmes(s, technical_lead_id="tl-alice")] == [
            "acme", "initech"]
        assert [p.customer_id for p in await repo.list_programmes(s, phase="running", technical_lead_id="tl-bob")] == [
            "globex"]


async def test_subscription_upsert_counts_and_outbox_reads(sessions: SessionFactory) -> None:
    from domain.enrolment import MaintenanceSubscription

    sub = MaintenanceSubscription(id="SMP-1", customer_id="acme", start=date(2026, 1, 1), end=date(2028, 12, 31))
    async with sessions() as s, s.begin():
        assert await repo.upsert_subscriptions(s, [sub]) == repo.UpsertCounts(inserted=1, updated=0)
        changed = sub.model_copy(update={"contact_count": 3})
        assert await repo.upsert_subscriptions(s, [changed]) == repo.UpsertCounts(inserted=0, updated=1)
        row = await repo.get_subscription(s, "SMP-1")
        assert row is not None
        assert repo.subscription_model(row) == changed
        s.add(OutboxRow(idempotency_key="mail-1", customer_id="acme", template="welcome", message_id="<m1@x>",
                        sender="a@x", recipients="b@x", subject="Welcome", body_text="", body_html="",
                        created_at=NOW))
    assert await count(sessions, MaintenanceSubscriptionRow) == 1
    async with sessions() as s:
        out = await repo.get_outbox(s, "mail-1")
        assert out is not None
        assert out.status == "pending"
        assert [o.idempotency_key for o in await repo.list_outbox(s, customer_id="acme")] == ["mail-1"]
        assert await repo.list_outbox(s, status="sent") == []
