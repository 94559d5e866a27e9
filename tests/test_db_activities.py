"""DatabaseActivities against a real database (SQLite and PostgreSQL), no mocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from activities.db import DatabaseActivities, audit_key
from config.calendar import supported_countries
from domain.activities import (
    AuditEntry,
    CloseWorkspace,
    EnrolmentCheckRequest,
    ExtraRecord,
    ProjectionUpdate,
    RegisterProgramme,
)
from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, CustomerRef, Enrolment, MaintenanceSubscription, Product, TechnicalLead
from domain.money import Money
from domain.policy import ProgramPolicy
from domain.program import BillableExtra, Phase, ProgramStatus
from domain.step_inputs import BillableExtraKind
from storage import repositories as repo
from storage.db import SessionFactory
from storage.tables import AuditLogRow, Base, BillableExtraRow, ContactRow, CustomerRow, ProgrammeRow, WorkspaceRow

ACCEPTED_AT = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)


@pytest.fixture
def acts(sessions: SessionFactory) -> DatabaseActivities:
    return DatabaseActivities(sessions)


async def add_subscription(sessions: SessionFactory, *, start: date = date(2026, 1, 1),
                           end: date = date(2029, 12, 31), sub_id: str = "SMP-1001", customer_id: str = "acme",
                           contact_count: int = 0) -> None:
    async with sessions() as s, s.begin():
        await repo.upsert_subscriptions(s, [MaintenanceSubscription(
            id=sub_id, customer_id=customer_id, start=start, end=end, contact_count=contact_count)])


def enrolment(**changes: Any) -> Enrolment:
    base = Enrolment(
        customer=CustomerRef(id="acme", name="ACME Corp", maintenance_subscription_id="SMP-1001"),
        period_start=date(2027, 1, 4),
        technical_lead=TechnicalLead(id="tl-alice", name="Alice Martin", email="alice@support.example"),
        primary_contact=Contact(name="Carol King", email="carol@acme.example", role="CIO"),
        additional_contacts=[Contact(name="Bob Stone", email="bob@acme.example", role="IT manager")],
        calendar=BusinessCalendar(timezone="Europe/Paris", country="FR"),
        products=[Product(name="Content Server", version="23.4")],
        primary_system="CS production cluster",
        annual_fee=Money(amount=Decimal("48000.00")),
    )
    return base.model_copy(update=changes)


def status_of(e: Enrolment, *, phase: Phase = Phase.onboarding, **changes: Any) -> ProgramStatus:
    return ProgramStatus(
        customer_id=e.customer.id, customer_name=e.customer.name, workflow_id=f"program-{e.customer.id}", period=1,
        phase=phase, calendar=e.calendar, technical_lead=e.technical_lead, contacts=e.contacts(),
        handbook_version=ProgramPolicy().handbook_version, handbook_accepted_at=ACCEPTED_AT,
        annual_fee=e.annual_fee,
    ).model_copy(update=changes)


async def count(sessions: SessionFactory, model: type[Base]) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


# ---- check_enrolment ------------------------------------------------------------------------


@pytest.mark.rule("E1")
async def test_check_enrolment_accepts_a_covered_period(acts: DatabaseActivities, sessions: SessionFactory) -> None:
    await add_subscription(sessions)
    # Through ActivityEnvironment once, to prove the method runs as a real activity.
    result = await ActivityEnvironment().run(
        acts.check_enrolment, EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert result.accepted, result.violations
    assert result.subscription is not None
    assert result.subscription.id == "SMP-1001"


@pytest.mark.rule("E1")
async def test_rule_e1_subscription_ending_inside_the_period_is_refused_with_dates(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    # rule E1: the subscription must cover the whole period (2027-01-04 .. 2028-01-03).
    await add_subscription(sessions, end=date(2027, 6, 30))
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert [v.rule for v in result.violations] == ["E1"]
    message = result.violations[0].message
    assert "2027-06-30" in message
    assert "2027-01-04" in message
    assert "2028-01-03" in message


@pytest.mark.rule("E1")
async def test_rule_e1_unknown_subscription_is_refused(acts: DatabaseActivities) -> None:
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert not result.accepted
    assert result.subscription is None
    assert [(v.rule, v.field) for v in result.violations] == [("E1", "customer.maintenance_subscription_id")]
    assert "SMP-1001 is not in the registry" in result.violations[0].message


@pytest.mark.rule("E1")
async def test_rule_e1_subscription_of_another_customer_is_refused(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    await add_subscription(sessions, customer_id="globex")
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert [v.rule for v in result.violations] == ["E1"]
    assert "belongs to globex" in result.violations[0].message


@pytest.mark.rule("C5")
async def test_rule_c5_country_without_holiday_calendar_is_refused(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    await add_subscription(sessions)
    assert "FR" in supported_countries()
    assert "ZZ" not in supported_countries()
    bad = enrolment(calendar=BusinessCalendar(country="ZZ"))
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=bad, policy=ProgramPolicy()))
    assert [(v.rule, v.field) for v in result.violations] == [("C5", "calendar.country")]


@pytest.mark.rule("C4")
async def test_rule_c4_contacts_across_subscriptions_counted_from_the_registry(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    # rule C4: 14 contacts already on the subscription + 2 here = 16 > 15.
    await add_subscription(sessions, contact_count=14)
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert [(v.rule, v.field) for v in result.violations] == [("C4", "accept_extra_contact_fees")]


@pytest.mark.rule("C4")
async def test_rule_c4_the_fifteen_sum_every_running_subscription_of_the_customer(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    # rule C4 "across all the customer's maintenance subscriptions": 8 on the named one + 6 on another of
    # the customer's + 2 here = 16 > 15. One that ended before the period start and another customer's
    # subscription do not count.
    await add_subscription(sessions, contact_count=8)
    await add_subscription(sessions, sub_id="SMP-1002", contact_count=6)
    await add_subscription(sessions, sub_id="SMP-0999", end=date(2026, 12, 31), contact_count=40)
    await add_subscription(sessions, sub_id="SMP-2001", customer_id="globex", contact_count=40)
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert result.registry_contacts == 14
    assert [(v.rule, v.field) for v in result.violations] == [("C4", "accept_extra_contact_fees")]
    assert "16 contacts" in result.violations[0].message
    # 5 on the other one: 15 in all, accepted without a fee.
    await add_subscription(sessions, sub_id="SMP-1002", contact_count=5)
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=enrolment(), policy=ProgramPolicy()))
    assert result.accepted and result.registry_contacts == 13


@pytest.mark.rule("E1")
async def test_rule_e1_renewal_rechecks_maintenance_only(acts: DatabaseActivities, sessions: SessionFactory) -> None:
    # Period 2 runs 2028-01-04 .. 2029-01-03; the subscription ends 2028-09-30.
    await add_subscription(sessions, end=date(2028, 9, 30), contact_count=14)
    renewal = enrolment(period_start=date(2028, 1, 4))
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=renewal, policy=ProgramPolicy(), period=2))
    # Only E1: the C4 total (16 contacts) was settled at enrolment and does not end a running programme.
    assert [v.rule for v in result.violations] == ["E1"]
    assert "2028-09-30" in result.violations[0].message
    assert "2029-01-03" in result.violations[0].message

    await add_subscription(sessions, end=date(2030, 12, 31), contact_count=14)
    result = await acts.check_enrolment(EnrolmentCheckRequest(enrolment=renewal, policy=ProgramPolicy(), period=2))
    assert result.accepted


# ---- register_programme / save_projection ---------------------------------------------------


async def test_register_programme_twice_gives_one_customer_and_workspace(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    e = enrolment()
    request = RegisterProgramme(status=status_of(e), enrolment=e)
    first = await acts.register_programme(request)
    second = await acts.register_programme(request)  # a retry after a lost response
    assert first.workspace_id == second.workspace_id == "ws-acme"
    assert await count(sessions, CustomerRow) == 1
    assert await count(sessions, WorkspaceRow) == 1
    assert await count(sessions, ProgrammeRow) == 1
    assert await count(sessions, ContactRow) == 2
    async with sessions() as s:
        programme = await repo.get_programme(s, "acme")
        assert programme is not None
        # rule E2: the handbook version and acceptance time are recorded on the programme.
        assert programme.handbook_version == ProgramPolicy().handbook_version
        assert programme.handbook_accepted_at is not None
        assert repo.as_utc(programme.handbook_accepted_at) == ACCEPTED_AT
        assert programme.support_language == "en"  # rule C8
        assert (programme.period_start, programme.period_end) == (date(2027, 1, 4), date(2028, 1, 3))
        assert programme.enrolment["customer"]["maintenance_subscription_id"] == "SMP-1001"
        customer = await repo.get_customer(s, "acme")
        assert customer is not None
        assert customer.maintenance_subscription_id == "SMP-1001"


@pytest.mark.rule("D10")
async def test_a_new_enrolment_revokes_the_contacts_it_leaves_out_and_writes_its_start_once(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    """Since `enrolment-mails-at-once` no save follows the registration before the mails: the registration itself
    makes the contacts match the enrolment (a closed programme's readable workspace left them active) and writes
    the start's audit entry, once however often it runs."""
    # The previous period had one more contact, still reading the archived workspace (D10, A9).
    eve = Contact(name="Eve", email="eve@acme.example")
    before = enrolment(additional_contacts=[*enrolment().additional_contacts, eve])
    await acts.register_programme(RegisterProgramme(status=status_of(before), enrolment=before))
    e = enrolment()
    started = AuditEntry(at=ACCEPTED_AT, actor="ops-olga", action="programme_started", customer_id="acme",
                         detail={"period": 1})
    request = RegisterProgramme(status=status_of(e), enrolment=e, audit=[started])
    await acts.register_programme(request)
    await acts.register_programme(request)  # run again with its workflow task (a worker died before it completed)
    async with sessions() as s:
        active = {c.email for c in await repo.list_contacts(s, "acme", active_only=True)}
        audit = await repo.list_audit(s, "acme")
        programme = await repo.get_programme(s, "acme")
    assert active == {str(c.email) for c in e.contacts()}
    assert [a.action for a in audit] == ["programme_started"]
    assert programme is not None and programme.status["workspace_id"] == "ws-acme"


async def test_save_projection_updates_row_and_does_not_duplicate_audit(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    e = enrolment()
    await acts.register_programme(RegisterProgramme(status=status_of(e), enrolment=e))
    at = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    # Two different actions at the same workflow instant must both be kept.
    audit = [AuditEntry(at=at, actor="tl-alice", action="schedule_kickoff", customer_id="acme"),
             AuditEntry(at=at, actor="tl-alice", action="add_contact", customer_id="acme",
                        detail={"email": "dan@acme.example"})]
    new_tl = TechnicalLead(id="tl-bob", name="Bob Lane", email="bob.lane@support.example")
    update = ProjectionUpdate(
        status=status_of(e, phase=Phase.running, technical_lead=new_tl,
                         contacts=[*e.contacts(), Contact(name="Dan", email="dan@acme.example")]),
        audit=audit)
    ack1 = await acts.save_projection(update)
    ack2 = await acts.save_projection(update)  # retried activity
    assert "2 new audit entries" in ack1.detail
    assert "0 new audit entries" in ack2.detail
    assert await count(sessions, AuditLogRow) == 2
    assert audit_key("program-acme", audit[0]) != audit_key("program-acme", audit[1])
    async with sessions() as s:
        programme = await repo.get_programme(s, "acme")
        assert programme is not None
        assert (programme.phase, programme.technical_lead_id) == ("running", "tl-bob")  # rule C7
        assert programme.status["technical_lead"]["id"] == "tl-bob"
        # The projection has no enrolment: the one registered is kept.
        assert programme.enrolment["customer"]["id"] == "acme"
        assert len(await repo.list_contacts(s, "acme", active_only=True)) == 3
        assert [a.action for a in await repo.list_audit(s, "acme")] == ["add_contact", "schedule_kickoff"]


async def test_save_projection_of_a_refused_enrolment_without_registration(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    # rule E1 refusal: never registered, yet ops see the refused programme in the projection.
    e = enrolment()
    await acts.save_projection(ProjectionUpdate(status=status_of(e, phase=Phase.refused, contacts=[])))
    async with sessions() as s:
        programme = await repo.get_programme(s, "acme")
        assert programme is not None
        assert programme.phase == "refused"


async def test_record_billable_extra_is_idempotent(acts: DatabaseActivities, sessions: SessionFactory) -> None:
    e = enrolment()
    await acts.register_programme(RegisterProgramme(status=status_of(e), enrolment=e))
    record = ExtraRecord(customer_id="acme", period=1, idempotency_key="program-acme:p1:extra:1", extra=BillableExtra(
        kind=BillableExtraKind.additional_system, rule="C1", description="DR cluster", agreement_ref="AGR-12",
        recorded_at=ACCEPTED_AT + timedelta(days=3), recorded_by="ops-1"))
    assert (await acts.record_billable_extra(record)).detail.endswith(" recorded")
    assert (await acts.record_billable_extra(record)).detail.endswith("already recorded")
    assert await count(sessions, BillableExtraRow) == 1


# ---- close_workspace (D10) -----------------------------------------------------------------


@pytest.mark.rule("D10", "A9")
async def test_rule_d10_close_workspace_archives_and_revokes_every_contact(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    e = enrolment()
    await acts.register_programme(RegisterProgramme(status=status_of(e), enrolment=e))
    close = CloseWorkspace(customer_id="acme", period=1, reason="non-renewal notice from the customer")
    ack = await acts.close_workspace(close)
    assert ack.detail == "workspace ws-acme archived; 2 contact(s) revoked"
    assert (await acts.close_workspace(close)).detail == "workspace ws-acme archived; 0 contact(s) revoked"
    # The final projection after closing must not hand access back.
    await acts.save_projection(ProjectionUpdate(status=status_of(e, phase=Phase.closed)))
    async with sessions() as s:
        workspace = await repo.get_workspace(s, "acme")
        assert workspace is not None
        assert workspace.status == "archived"
        assert workspace.archived_at is not None
        contacts = await repo.list_contacts(s, "acme")
        assert len(contacts) == 2
        assert not any(c.active for c in contacts)


@pytest.mark.rule("D10", "A9")
async def test_rule_d10_a_close_with_readable_days_keeps_the_contacts_until_access_ends_then_revokes_them(
    acts: DatabaseActivities, sessions: SessionFactory,
) -> None:
    from portal.auth import contact_access  # the portal's check, against the row the activity wrote
    from storage import users as users_repo
    from storage.users import Role

    e = enrolment()
    await acts.register_programme(RegisterProgramme(status=status_of(e), enrolment=e))
    closed_at = ACCEPTED_AT + timedelta(days=365)
    close = CloseWorkspace(customer_id="acme", period=1, reason="non-renewal", readable_days=30, closed_at=closed_at)
    ends = closed_at + timedelta(days=30)
    assert (await acts.close_workspace(close)).detail == f"workspace ws-acme archived; readable by its contacts " \
                                                         f"until {ends.isoformat()}"
    # A retry a day later keeps the first close; the closing projection neither revokes nor gives back.
    await acts.close_workspace(close.model_copy(update={"closed_at": closed_at + timedelta(days=1)}))
    await acts.save_projection(ProjectionUpdate(status=status_of(e, phase=Phase.closed)))
    async with sessions() as s, s.begin():
        workspace = await repo.get_workspace(s, "acme")
        assert workspace is not None and workspace.status == "archived"
        assert workspace.archived_at is not None and repo.as_utc(workspace.archived_at) == closed_at
        assert workspace.access_ends_at is not None and repo.as_utc(workspace.access_ends_at) == ends
        assert all(c.active for c in await repo.list_contacts(s, "acme"))
        carol = (await users_repo.add_user(s, email="carol@acme.example", name="Carol", role=Role.contact,
                                           customer_id="acme")).row

    async def access_at(now: datetime) -> tuple[bool, datetime | None]:
        async with sessions() as s, s.begin():
            got = await contact_access(s, carol, now)
            return got.revoked, got.closed.access_ends_at if got.closed else None

    assert await access_at(ends - timedelta(seconds=1)) == (False, ends)  # read-only until then
    assert await access_at(ends) == (True, None)  # then revoked, for good:
    assert await access_at(ends - timedelta(days=1)) == (True, None)
    async with sessions() as s:
        assert not any(c.active for c in await repo.list_contacts(s, "acme"))
    # A new enrolment reopens the workspace: the contacts get in again, with nothing read-only.
    await acts.register_programme(RegisterProgramme(status=status_of(e), enrolment=e))
    assert await access_at(ends + timedelta(days=1)) == (False, None)
    async with sessions() as s:
        workspace = await repo.get_workspace(s, "acme")
        assert workspace is not None and workspace.status == "active" and workspace.access_ends_at is None
