"""What people send to complete a step: every programme Update's payload, and the step state all
three workflows share (rules A2, C3, C4, C7, C14-C16, D4-D9).

Kept apart from `domain/program.py` so the step registry (`domain/steps.py`) can name these models
while `ProgramStatus` asks the registry what each step waits for.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from domain.enrolment import Contact, TechnicalLead
from domain.errors import RuleViolation
from domain.inventory import Finding, SiteInventory
from domain.money import Money


class StepName(StrEnum):
    """Programme steps; each is also the name of the Update that completes it."""

    schedule_kickoff = "schedule_kickoff"  # D4/A2
    complete_kickoff = "complete_kickoff"  # D4/A2, minutes fix the agreed dates
    deliver_communication_plan = "deliver_communication_plan"  # D5/A3
    submit_site_inventory = "submit_site_inventory"  # D8/A7
    add_findings = "add_findings"  # D9/A8 (GTS/TL additions)
    present_configuration_analysis = "present_configuration_analysis"  # D9/A8


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
    """What the kickoff minutes agree (D4/A2): the due dates of the other onboarding steps, and the
    follow-up call schedule (D6, C10). Each is optional: what is not agreed keeps its default.

    The call day and the frequency are checked by `domain/rules_program.check_agreed_dates` (rule A2,
    naming the field), not by pydantic bounds, so a bad one is refused with the rule it breaks."""

    communication_plan: date | None = None
    site_inventory: date | None = None
    configuration_analysis: date | None = None
    # D6/A2: the day of the month the follow-up calls are held (1..31; a short month takes its last day).
    call_day_of_month: int | None = None
    # C10/A2 "follow-up report frequency": a follow-up cycle (call and report) every this many months (1..12).
    report_frequency_months: int | None = None

    def dates(self) -> dict[str, date]:
        """The agreed due dates, by field name (the call schedule is not a date)."""
        return {name: d for name in ("communication_plan", "site_inventory", "configuration_analysis")
                if (d := getattr(self, name)) is not None}


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


class TechnicalLeadChanged(BaseModel):
    """Rule C7, to the running work of a programme (its monthly cycles, its open requests): the
    programme's TL is now `technical_lead`. Sent by the programme workflow as a signal (a workflow can
    only signal another), after its `reassign_technical_lead` Update."""

    technical_lead: TechnicalLead
    previous_id: str
    by: str
    via: str = "temporal"
    reason: str = ""

    def record(self, previous_id: str, at: datetime) -> TechnicalLeadChange:
        """What the cycle or request keeps of it: who was TL until when, and who changed it."""
        return TechnicalLeadChange(at=at, from_id=previous_id, to_id=self.technical_lead.id, by=self.by,
                                   reason=self.reason)


class TechnicalLeadChange(BaseModel):
    """Who was the TL of a cycle or a request, from when (rule C7: history keeps who did what)."""

    at: datetime
    from_id: str
    to_id: str
    by: str
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
    extended_hours = "extended_hours"  # C5: TL hours other than the standard day, agreed at the start
    other_region_tl = "other_region_tl"  # C5: a TL for another region, agreed at the start
    other_product = "other_product"  # C9: a product outside maintenance and OT's resold products
    other = "other"  # C3


EXTRA_RULES: dict[BillableExtraKind, str] = {
    BillableExtraKind.additional_system: "C1",
    BillableExtraKind.optional_coverage: "C6",
    BillableExtraKind.extra_call: "C10",
    BillableExtraKind.extra_report: "C10",
    BillableExtraKind.customisation: "C13",
    BillableExtraKind.extra_contacts: "C4",
    BillableExtraKind.on_site_dispatch: "A4",
    BillableExtraKind.extended_hours: "C5",
    BillableExtraKind.other_region_tl: "C5",
    BillableExtraKind.other_product: "C9",
    BillableExtraKind.other: "C3",
}


def check_billable_extra(kind: BillableExtraKind, agreement_ref: str, amount: Money | None = None,
                         override_reason: str | None = None) -> list[RuleViolation]:
    """Rule C3: every billable extra (C1, C4, C6, C10, C11, C13, A4) carries its separate agreement and is
    priced from OT's price list; an amount that overrides the list says why."""
    out: list[RuleViolation] = []
    if not agreement_ref.strip():
        out.append(RuleViolation(rule="C3", field="agreement_ref",
                                 message=f"a billable extra ({kind.value}, rule {EXTRA_RULES[kind]}) needs the "
                                         f"reference of its separate agreement (agreement_ref)"))
    return out + check_price_override(amount, override_reason)


def check_price_override(amount: Money | None, override_reason: str | None) -> list[RuleViolation]:
    """Rule C3: an extra is priced from OT's list; an amount that overrides it says why."""
    if amount is not None and not (override_reason or "").strip():
        return [RuleViolation(rule="C3", field="override_reason",
                              message="an amount other than OT's price list needs its reason (override_reason); "
                                      "leave the amount empty to price the extra from the list")]
    return []


class RecordBillableExtra(StepInput):
    kind: BillableExtraKind
    description: str = Field(min_length=1)
    agreement_ref: str = Field(min_length=1)  # rule C3: every extra has an agreement
    # Bounded by the ledger's column (Numeric(12, 2)): a wider one would fail the recording activity for ever.
    quantity: Decimal = Field(default=Decimal("1"), gt=0, le=Decimal("9999999999.99"), decimal_places=2)
    months: int | None = Field(default=None, ge=1, le=60)
    # Rule C3: priced from OT's price list; an amount given here overrides it and needs its reason.
    amount: Money | None = None
    override_reason: str | None = None


class ProposeRenewalPrice(StepInput):
    price: Money
    reason: str | None = None  # rule C15: "a reasonable rise of service costs"; recorded with the rise


class GiveNonRenewalNotice(StepInput):
    party: Literal["customer", "ot"]
    received_on: date
    reference: str = Field(min_length=1)


class RecordInvoicePaid(StepInput):
    invoice_ref: str = Field(min_length=1)
    paid_on: date


class AgreeCallFrequency(StepInput):
    """Rule C10: a follow-up cycle (one call, one report) every `months` months from the coming months on,
    as agreed with the customer; a blank agreement reference is refused with rule C10."""

    months: int = Field(ge=1, le=12)
    agreement_ref: str
    reason: str = ""


class CompleteStepSignal(BaseModel):
    """For tools that can only signal: the same checks as the Update named `step`."""

    step: str
    by: str
    payload: dict[str, Any] = Field(default_factory=dict)


class Rejection(BaseModel):
    at: datetime
    step: str
    by: str
    reason: str
    via: str = "signal"
