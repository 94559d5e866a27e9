"""Programme state (rules D4-D10, C7, C14-C16).

The workflow keeps a `ProgramStatus` as its state and returns it from every Update
and from the `get_status` query, so what a TL sees after completing a step is
exactly what the workflow holds. The step payloads live in `domain/step_inputs.py`, the
steps themselves in `domain/steps.py`: import them from there.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, Enrolment, TechnicalLead
from domain.errors import RuleViolation
from domain.inventory import Finding, SiteInventory
from domain.money import Money
from domain.policy import ProgramPolicy
from domain.renewal import RenewalInvoice
from domain.step_inputs import BillableExtraKind, Rejection, StepName, StepState, StepStatus
from domain.steps import STEP_DEPENDS_ON


class Phase(StrEnum):
    enrolling = "enrolling"
    onboarding = "onboarding"  # kickoff, plan, inventory, analysis under way
    running = "running"  # onboarding steps done, monthly cycles go on
    renewal = "renewal"  # renewal notice sent, waiting for the period end
    closing = "closing"
    closed = "closed"
    refused = "refused"


# ---- state ---------------------------------------------------------------------


class BillableExtra(BaseModel):
    """An extra as the workflow records it; the ledger row adds its price from OT's list (rule C3)."""

    kind: BillableExtraKind
    rule: str
    description: str
    agreement_ref: str
    quantity: Decimal = Decimal("1")
    # The months the extra covers (an agreement for the period): a price per month bills quantity × months.
    months: int | None = None
    amount: Money | None = None  # an override of the list price (with override_reason), else None
    override_reason: str | None = None
    recorded_at: datetime
    recorded_by: str


class CycleSummary(BaseModel):
    month: int  # 1..12 within the period: the cycle's first month
    months: int = 1  # rule C10: how many months it covers (the agreed frequency; the last one may be shorter)
    starts_on: date
    workflow_id: str
    status: Literal["scheduled", "running", "done", "missed"] = "scheduled"
    call_held_on: date | None = None
    report_document_id: int | None = None


class NonRenewal(BaseModel):
    party: Literal["customer", "ot"]
    received_on: date
    reference: str
    recorded_by: str
    recorded_at: datetime


class MaintenanceCheck(BaseModel):
    at: datetime
    covered: bool
    detail: str


class RenewalState(BaseModel):
    notice_on: date
    notice_sent: bool = False
    next_price: Money | None = None
    non_renewal_deadline: date
    non_renewal_deadline_end_at: datetime
    reminder_on: date
    reminder_sent: bool = False
    non_renewal: NonRenewal | None = None
    invoice_ref: str | None = None
    invoice_paid_on: date | None = None
    invoice: RenewalInvoice | None = None  # rule C14: issued with the notice, for the next period
    price_rise_percent: Decimal | None = None  # rule C15: the rise and its reason are recorded
    price_rise_reason: str | None = None
    # Rule E1 ahead of time: what each maintenance check before the end found ("covered" or the violations).
    maintenance_checks: list[MaintenanceCheck] = Field(default_factory=list)



class PeriodPlan(BaseModel):
    """Dates of one period, computed by the calendar activity and recorded in history."""

    period: int
    period_start: date
    period_end: date
    period_start_at: datetime
    period_end_at: datetime  # end of the last day, programme time zone
    renewal_notice_on: date
    renewal_notice_at: datetime
    non_renewal_deadline: date
    non_renewal_deadline_end_at: datetime
    non_renewal_reminder_on: date
    non_renewal_reminder_at: datetime
    month_starts: list[date]
    month_start_ats: list[datetime]
    # Planned since the renewal paperwork (C14, E1 ahead of time); None in plans recorded before, so a
    # run planned earlier keeps its old sequence on replay.
    invoice_due_on: date | None = None
    invoice_escalation_at: datetime | None = None
    maintenance_warning_ats: list[datetime] | None = None


class ProgramInput(BaseModel):
    enrolment: Enrolment
    policy: ProgramPolicy = Field(default_factory=ProgramPolicy)
    period: int = 1
    started_by: str = "ops"
    # Set on continue-as-new: what carries over into the next period.
    inventory: SiteInventory | None = None
    inventory_version: int = 0
    extras_carried: list[BillableExtra] = Field(default_factory=list)
    # Rule C14: the invoice that pays this period (issued with the last period's renewal notice).
    period_invoice: RenewalInvoice | None = None
    # Rule D6/A2: the day of the month for the follow-up calls agreed in a kickoff's minutes, carried on.
    call_day_of_month: int | None = Field(default=None, ge=1, le=31)


class ProgramStatus(BaseModel):
    customer_id: str
    customer_name: str
    workflow_id: str
    period: int
    phase: Phase
    calendar: BusinessCalendar
    technical_lead: TechnicalLead
    technical_lead_history: list[str] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)
    handbook_version: str = ""
    handbook_accepted_at: datetime | None = None
    kickoff_agenda_not_covered: list[str] = Field(default_factory=list)  # rule A2, flagged from the minutes
    plan: PeriodPlan | None = None
    steps: list[StepState] = Field(default_factory=list)
    cycles: list[CycleSummary] = Field(default_factory=list)
    # rule C10: a follow-up cycle (call and report) every this many months, and the agreement for it.
    call_frequency_months: int = 1
    call_frequency_agreement_ref: str | None = None
    # rule D6/A2: the day of the month for the calls agreed in the kickoff minutes (None: no day agreed, the
    # call is due by the month's last day); it carries into the next period.
    call_day_of_month: int | None = None
    renewal: RenewalState | None = None
    period_invoice: RenewalInvoice | None = None  # rule C14: carried from the previous period, until paid
    annual_fee: Money
    inventory: SiteInventory | None = None
    inventory_version: int = 0
    findings: list[Finding] = Field(default_factory=list)
    extras: list[BillableExtra] = Field(default_factory=list)
    rejections: list[Rejection] = Field(default_factory=list)
    refusal: list[RuleViolation] = Field(default_factory=list)
    workspace_id: str | None = None
    mail_failures: list[str] = Field(default_factory=list)
    outcome: str | None = None  # "renewed", "closed: ...", "refused: ..."

    def step(self, name: str) -> StepState | None:
        return next((s for s in self.steps if s.step == name), None)

    def open_steps(self) -> list[StepState]:
        """Steps a person can complete now: open ones, and missed ones whose predecessors are done
        (a missed step stays to do; it is completed late, in order)."""
        done = {s.step for s in self.steps if s.status == StepStatus.done}
        return [s for s in self.steps if s.status == StepStatus.open or (
            s.status == StepStatus.missed and all(d.value in done for d in STEP_DEPENDS_ON[StepName(s.step)]))]


class ProgramResult(BaseModel):
    customer_id: str
    period: int
    outcome: str
    refusal: list[RuleViolation] = Field(default_factory=list)
