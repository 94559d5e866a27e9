"""A programme in month five of its period with one overdue deliverable, as its state says (domain/timeline.py).

Built from the date given, never from a literal: the unit tests pass any day, the portal tests the
portal clock's day. The due dates follow the policy's business days roughly (kickoff in a week, the
plan in six, the analysis in twelve), which is all a timeline needs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from domain.calendar import BusinessCalendar, add_months, period_end_date
from domain.enrolment import TechnicalLead
from domain.money import Money
from domain.naming import monthly_cycle_workflow_id
from domain.program import CycleSummary, PeriodPlan, Phase, ProgramStatus
from domain.step_inputs import StepName, StepState, StepStatus
from domain.steps import STEP_RULES, STEP_TITLES

OVERDUE_STEP = "present_configuration_analysis"


def _at(d: date) -> datetime:
    return datetime.combine(d, time(9), UTC)


def plan_from(period_start: date) -> PeriodPlan:
    """A 12-month plan as the calendar activity makes it (instants at 09:00 UTC: any hour does)."""
    starts = [add_months(period_start, i) for i in range(12)]
    end = period_end_date(period_start, 12)
    return PeriodPlan(period=1, period_start=period_start, period_end=end, period_start_at=_at(period_start),
                      period_end_at=datetime.combine(end + timedelta(days=1), time(0), UTC),
                      renewal_notice_on=end - timedelta(days=120), renewal_notice_at=_at(end - timedelta(days=120)),
                      non_renewal_deadline=end - timedelta(days=90),
                      non_renewal_deadline_end_at=_at(end - timedelta(days=89)),
                      non_renewal_reminder_on=end - timedelta(days=104),
                      non_renewal_reminder_at=_at(end - timedelta(days=104)),
                      month_starts=starts, month_start_ats=[_at(d) for d in starts])


def _step(name: str, due_on: date, done_on: date | None = None, status: StepStatus | None = None) -> StepState:
    done = done_on is not None
    return StepState(step=name, title=STEP_TITLES[StepName(name)], rule=STEP_RULES[StepName(name)],
                     status=status or (StepStatus.done if done else StepStatus.open), due_on=due_on,
                     due_at=_at(due_on + timedelta(days=1)), done_at=_at(done_on) if done_on else None,
                     done_by="tl-wendy" if done else None, late=done_on is not None and done_on > due_on)


def status_in_month_five(customer_id: str, today: date) -> ProgramStatus:
    """Period started four months and ten days before `today`; every deliverable done but the presentation
    of the configuration analysis, due three weeks ago; the calls of months 1-4 held, month 5's running."""
    start = add_months(today, -4) - timedelta(days=10)
    plan = plan_from(start)

    def day(n: int) -> date:
        return start + timedelta(days=n)

    steps = [
        _step("schedule_kickoff", day(7), day(3)),
        _step("complete_kickoff", day(21), day(18)),
        _step("deliver_communication_plan", day(42), day(47)),  # done late
        _step("submit_site_inventory", day(56), day(50)),
        _step("add_findings", today - timedelta(days=21), today - timedelta(days=25)),
        _step(OVERDUE_STEP, today - timedelta(days=21)),
    ]
    cycles = [CycleSummary(month=m, starts_on=plan.month_starts[m - 1],
                           workflow_id=monthly_cycle_workflow_id(customer_id, 1, m),
                           status="done" if m < 5 else "running",
                           call_held_on=plan.month_starts[m - 1] + timedelta(days=12) if m < 5 else None,
                           report_document_id=100 + m if m < 5 else None)
              for m in range(1, 6)]
    return ProgramStatus(
        customer_id=customer_id, customer_name=f"{customer_id.title()} Corp", workflow_id=f"program-{customer_id}",
        period=1, phase=Phase.running, calendar=BusinessCalendar(timezone="Europe/Paris"),
        technical_lead=TechnicalLead(id="tl-wendy", name="Wendy Lead", email="wendy@support.example"),
        plan=plan, steps=steps, cycles=cycles, annual_fee=Money(amount=Decimal("48000.00")),
    )
