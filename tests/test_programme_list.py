"""The portal's programme list (issue 16) reads columns and the parts of each programme's status it shows, not
the whole status: on SQLite and PostgreSQL, every programme in the list is exactly the view the programme's own
page builds from its whole row (open and overdue steps, the TL's name, the non-renewal deadline and notice)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from domain.calendar import BusinessCalendar
from domain.enrolment import TechnicalLead
from domain.money import Money
from domain.program import NonRenewal, PeriodPlan, Phase, ProgramStatus, RenewalState
from domain.step_inputs import StepState, StepStatus
from portal.queries import programme_view, programme_views
from storage import repositories as repo
from storage.db import SessionFactory
from storage.tables import CustomerRow, ProgrammeRow

NOW = datetime(2027, 3, 17, 10, 0, tzinfo=UTC)  # a fixed instant: every date below is relative to it
DAY = NOW.date()


def _plan(start: date) -> PeriodPlan:
    end = start + timedelta(days=364)
    at = datetime(start.year, start.month, start.day, tzinfo=UTC)
    deadline = end - timedelta(days=90)
    return PeriodPlan(period=1, period_start=start, period_end=end, period_start_at=at,
                      period_end_at=at + timedelta(days=365), renewal_notice_on=deadline - timedelta(days=10),
                      renewal_notice_at=at, non_renewal_deadline=deadline, non_renewal_deadline_end_at=at,
                      non_renewal_reminder_on=deadline - timedelta(days=7), non_renewal_reminder_at=at,
                      month_starts=[start], month_start_ats=[at])


def _status(customer_id: str, *, renewal: bool, notice: bool) -> ProgramStatus:
    plan = _plan(DAY - timedelta(days=30))
    steps = [StepState(step="schedule_kickoff", title="Schedule the kickoff", rule="D3", status=StepStatus.open,
                       due_on=DAY - timedelta(days=2), escalated=True),
             StepState(step="deliver_communication_plan", title="Plan", rule="D2", status=StepStatus.open,
                       due_on=DAY + timedelta(days=5)),
             StepState(step="submit_site_inventory", title="Inventory", rule="D1", status=StepStatus.done,
                       done_by="tl-alice", done_at=NOW)]
    state = None
    if renewal:
        state = RenewalState(
            notice_on=plan.renewal_notice_on, notice_sent=True, non_renewal_deadline=plan.non_renewal_deadline
            + timedelta(days=1), non_renewal_deadline_end_at=NOW, reminder_on=plan.non_renewal_reminder_on,
            non_renewal=NonRenewal(party="customer", received_on=DAY, reference="LTR-7", recorded_by="ops",
                                   recorded_at=NOW) if notice else None)
    return ProgramStatus(
        customer_id=customer_id, customer_name=f"{customer_id.title()} Corp", workflow_id=f"program-{customer_id}",
        period=1, phase=Phase.running, calendar=BusinessCalendar(), plan=plan, steps=steps, renewal=state,
        technical_lead=TechnicalLead(id="tl-alice", name="Alice Martin", email="alice@support.example"),
        annual_fee=Money(amount=Decimal("48000.00")))


async def test_each_listed_programme_is_the_view_its_whole_row_gives(sessions: SessionFactory) -> None:
    async with sessions() as s, s.begin():
        await repo.upsert_customer(s, "acme", "Acme Corp", "SMP-acme", now=NOW)
        await repo.upsert_customer(s, "beta", "Beta Corp", "SMP-beta", now=NOW)
        await repo.upsert_programme(s, _status("acme", renewal=True, notice=True), now=NOW)
        await repo.upsert_programme(s, _status("beta", renewal=False, notice=False), now=NOW)
    async with sessions() as s:
        listed = await programme_views(s)
        rows = select(ProgrammeRow, CustomerRow.name).join(CustomerRow, CustomerRow.id == ProgrammeRow.customer_id)
        whole = {row.customer_id: programme_view(row, name) for row, name in (await s.execute(rows)).all()}
    assert [v.customer_id for v in listed] == ["acme", "beta"]
    for view in listed:
        assert view == whole[view.customer_id]
    acme, beta = listed
    # The view has what the list shows, so the equality above compares something.
    assert [s["step"] for s in acme.open_steps] == ["schedule_kickoff", "deliver_communication_plan"]
    assert [s["step"] for s in acme.overdue_steps] == ["schedule_kickoff"]
    assert acme.technical_lead_name == "Alice Martin" and acme.renewal_notice_sent
    assert acme.non_renewal is not None and acme.non_renewal["reference"] == "LTR-7"
    # The renewal's deadline when there is a renewal, the plan's before.
    assert acme.non_renewal_deadline == _plan(DAY - timedelta(days=30)).non_renewal_deadline + timedelta(days=1)
    assert beta.non_renewal_deadline == _plan(DAY - timedelta(days=30)).non_renewal_deadline
    assert beta.non_renewal is None and not beta.renewal_notice_sent
