"""Programme state, steps and the payload of every human step (rules D4-D9, C7, C14-C16).

The workflow keeps a `ProgramStatus` as its state and returns it from every Update
and from the `get_status` query, so what a TL sees after completing a step is
exactly what the workflow holds.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, Enrolment, TechnicalLead
from domain.errors import RuleViolation
from domain.inventory import Finding, SiteInventory
from domain.money import Money
from domain.policy import ProgramPolicy


class Phase(StrEnum):
    enrolling = "enrolling"
    onboarding = "onboarding"  # kickoff, plan, inventory, analysis under way
    running = "running"  # onboarding steps done, monthly cycles go on
    renewal = "renewal"  # renewal notice sent, waiting for the period end
    closing = "closing"
    closed = "closed"
    refused = "refused"


class StepName(StrEnum):
    """Programme steps; each is also the name of the Update that completes it."""

    schedule_kickoff = "schedule_kickoff"  # D4/A2
    complete_kickoff = "complete_kickoff"  # D4/A2, minutes fix the agreed dates
    deliver_communication_plan = "deliver_communication_plan"  # D5/A3
    submit_site_inventory = "submit_site_inventory"  # D8/A7
    add_findings = "add_findings"  # D9/A8 (GTS/TL additions)
    present_configuration_analysis = "present_configuration_analysis"  # D9/A8


STEP_RULES: dict[StepName, str] = {
    StepName.schedule_kickoff: "D4",
    StepName.complete_kickoff: "D4",
    StepName.deliver_communication_plan: "D5",
    StepName.submit_site_inventory: "D8",
    StepName.add_findings: "D9",
    StepName.present_configuration_analysis: "D9",
}

STEP_TITLES: dict[StepName, str] = {
    StepName.schedule_kickoff: "Schedule the planning and review meeting",
    StepName.complete_kickoff: "Hold the planning and review meeting, file its minutes",
    StepName.deliver_communication_plan: "Deliver the communication plan",
    StepName.submit_site_inventory: "Submit the site inventory",
    StepName.add_findings: "Add GTS/TL configuration findings",
    StepName.present_configuration_analysis: "Present the configuration analysis",
}

# A step opens when all steps it depends on are done.
STEP_DEPENDS_ON: dict[StepName, list[StepName]] = {
    StepName.schedule_kickoff: [],
    StepName.complete_kickoff: [StepName.schedule_kickoff],
    StepName.deliver_communication_plan: [StepName.complete_kickoff],
    StepName.submit_site_inventory: [StepName.complete_kickoff],
    StepName.add_findings: [StepName.submit_site_inventory],
    StepName.present_configuration_analysis: [StepName.add_findings],
}


class StepStatus(StrEnum):
    waiting = "waiting"  # depends on a step not done yet
    open = "open"
    done = "done"
    missed = "missed"  # its date was long gone when the programme was taken over


class StepState(BaseModel):
    step: str
    title: str
    rule: str
    status: StepStatus = StepStatus.waiting
    workflow_id: str = ""  # which workflow's Update completes it
    due_on: date | None = None
    due_at: datetime | None = None
    remind_at: datetime | None = None
    reminded: bool = False
    escalated: bool = False
    done_at: datetime | None = None
    done_by: str | None = None
    late: bool = False


# ---- payloads of human steps (one model in per Update) --------------------------


class StepInput(BaseModel):
    by: str = Field(min_length=1, description="ID of the person completing the step")
    # Where the step came from, for the audit log: "cli" and "portal" set it; an Update sent any
    # other way (the Temporal CLI or UI, a script) says "temporal", a `complete_step` signal "signal".
    via: str = Field(default="temporal", min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9-]*$",
                     description="Interface the step was sent from (audit log): cli, portal, temporal")


class ScheduleKickoff(StepInput):
    meeting_at: datetime
    attendance: Literal["on-site", "remote"] = "remote"  # A2
    location: str = ""


class AgreedDates(BaseModel):
    communication_plan: date | None = None
    site_inventory: date | None = None
    configuration_analysis: date | None = None


A2_AGENDA = [
    "review of the past year's activity",
    "projects for the coming year",
    "organisation of the site inventory",
    "communication plan updates",
    "planning of the recurring follow-up calls",
    "follow-up report frequency",
    "programme adjustments for extra services",
    "on-site or remote attendance",
]


def check_kickoff_agenda(agenda_covered: list[str]) -> list[RuleViolation]:
    """Rule A2: `agenda_covered` names items of the A2 agenda (a typo would hide an item covered)."""
    known = {a.lower() for a in A2_AGENDA}
    unknown = [a for a in agenda_covered if a.strip().lower() not in known]
    if not unknown:
        return []
    return [RuleViolation(rule="A2", field="agenda_covered",
                          message=f"{', '.join(repr(a) for a in unknown)} is not an item of the A2 agenda; "
                                  f"agenda_covered lists items of: {'; '.join(A2_AGENDA)}")]


def agenda_not_covered(agenda_covered: list[str]) -> list[str]:
    """Rule A2: the agenda items the meeting did not cover, in handbook order. The handbook says the
    meeting "may cover" them: an item left out is flagged (minutes, programme status), not refused."""
    covered = {a.strip().lower() for a in agenda_covered}
    return [a for a in A2_AGENDA if a not in covered]


class CompleteKickoff(StepInput):
    held_on: date
    attendees: list[str] = Field(min_length=1)
    minutes: str = Field(min_length=1)
    agreed_dates: AgreedDates = Field(default_factory=AgreedDates)
    # Rule A2: what the person holding the meeting says was covered; nothing is assumed covered.
    agenda_covered: list[str] = Field(default_factory=list)


class DeliverCommunicationPlan(StepInput):
    """Annex A3: communication policies, escalation and reporting, procedures."""

    communication_policies: str = Field(min_length=1)
    escalation_process: str = Field(min_length=1)
    reporting_process: str = Field(min_length=1)
    procedures: str = Field(min_length=1)


class SubmitSiteInventory(StepInput):
    inventory: SiteInventory


class AddFindings(StepInput):
    role: Literal["gts", "tl"] = "gts"
    findings: list[Finding] = Field(default_factory=list)


class PresentConfigurationAnalysis(StepInput):
    held_on: date
    attendees: list[str] = Field(min_length=1)
    notes: str = ""


class ReassignTechnicalLead(StepInput):
    """Rule C7: OT may assign different resources; contacts are told."""

    technical_lead: TechnicalLead
    reason: str = ""


class AddContact(StepInput):
    contact: Contact
    accept_extra_contact_fee: bool = False  # rule C4
    agreement_ref: str | None = None


class BillableExtraKind(StrEnum):
    additional_system = "additional_system"  # C1, C11
    optional_coverage = "optional_coverage"  # C6
    extra_call = "extra_call"  # C10
    extra_report = "extra_report"  # C10
    customisation = "customisation"  # C13
    extra_contacts = "extra_contacts"  # C4
    on_site_dispatch = "on_site_dispatch"  # A4
    other = "other"  # C3


EXTRA_RULES: dict[BillableExtraKind, str] = {
    BillableExtraKind.additional_system: "C1",
    BillableExtraKind.optional_coverage: "C6",
    BillableExtraKind.extra_call: "C10",
    BillableExtraKind.extra_report: "C10",
    BillableExtraKind.customisation: "C13",
    BillableExtraKind.extra_contacts: "C4",
    BillableExtraKind.on_site_dispatch: "A4",
    BillableExtraKind.other: "C3",
}


def check_billable_extra(kind: BillableExtraKind, agreement_ref: str) -> list[RuleViolation]:
    """Rule C3: every billable extra (C1, C4, C6, C10, C11, C13, A4) carries its separate agreement."""
    if agreement_ref.strip():
        return []
    return [RuleViolation(rule="C3", field="agreement_ref",
                          message=f"a billable extra ({kind.value}, rule {EXTRA_RULES[kind]}) needs the reference "
                                  f"of its separate agreement (agreement_ref)")]


class RecordBillableExtra(StepInput):
    kind: BillableExtraKind
    description: str = Field(min_length=1)
    agreement_ref: str = Field(min_length=1)  # rule C3: every extra has an agreement
    amount: Money | None = None


class ProposeRenewalPrice(StepInput):
    price: Money


class GiveNonRenewalNotice(StepInput):
    party: Literal["customer", "ot"]
    received_on: date
    reference: str = Field(min_length=1)


class RecordInvoicePaid(StepInput):
    invoice_ref: str = Field(min_length=1)
    paid_on: date


class CompleteStepSignal(BaseModel):
    """For tools that can only signal: the same checks as the Update named `step`."""

    step: str
    by: str
    payload: dict[str, Any] = Field(default_factory=dict)


# ---- state ---------------------------------------------------------------------


class Rejection(BaseModel):
    at: datetime
    step: str
    by: str
    reason: str
    via: str = "signal"


class BillableExtra(BaseModel):
    kind: BillableExtraKind
    rule: str
    description: str
    agreement_ref: str
    amount: Money | None = None
    recorded_at: datetime
    recorded_by: str


class CycleSummary(BaseModel):
    month: int  # 1..12 within the period
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


class ProgramInput(BaseModel):
    enrolment: Enrolment
    policy: ProgramPolicy = Field(default_factory=ProgramPolicy)
    period: int = 1
    started_by: str = "ops"
    # Set on continue-as-new: what carries over into the next period.
    inventory: SiteInventory | None = None
    inventory_version: int = 0
    extras_carried: list[BillableExtra] = Field(default_factory=list)


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
    renewal: RenewalState | None = None
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
