"""Rules of a running programme's Updates: what ProgramWorkflow's validators and re-checks ask.

Pure functions of the programme's state and the payload: each returns the violations (empty when
the step may go ahead). `domain/refusal.refusal_text` words them as the workflow sends them. The
CLI and the portal can call the same functions on a `get_status` result to refuse at once.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.enrolment import Enrolment, check_extra_contacts
from domain.errors import RuleRefused, RuleViolation
from domain.inventory import check_site_inventory
from domain.money import Money, check_renewal_price
from domain.policy import ProgramPolicy
from domain.program import Phase, ProgramStatus
from domain.refusal import needs_offset, plain, violation
from domain.step_inputs import (
    AddContact,
    AgreedDates,
    CompleteKickoff,
    GiveNonRenewalNotice,
    ReassignTechnicalLead,
    RecordBillableExtra,
    ScheduleKickoff,
    StepName,
    StepStatus,
    SubmitSiteInventory,
    check_billable_extra,
    check_kickoff_agenda,
)
from domain.steps import spec

# A programme in these phases takes no step, change or request (E1: no programme, no TechConnect
# support). "closing" still does: after a non-renewal notice it runs to its period end (C16).
NOT_LIVE_PHASES = frozenset({Phase.enrolling, Phase.refused, Phase.closed})


def _iso(d: date | datetime | None) -> str | None:
    return d.isoformat() if d else None


def check_live(status: ProgramStatus, period_over: bool) -> list[RuleViolation]:
    """Any change to a programme: its period has not ended and it is live."""
    if period_over:
        return [plain(f"refused: period {status.period} has ended")]
    if status.phase in NOT_LIVE_PHASES:
        return [plain(f"refused: the programme is {status.phase.value}")]
    return []


def check_step_open(status: ProgramStatus, step: StepName, period_over: bool) -> list[RuleViolation]:
    """A tracked step (D4, D5, D8, D9) is done once, in order, while the programme is live."""
    if period_over:
        return [plain(f"step {step.value} refused: period {status.period} has ended")]
    if status.phase in NOT_LIVE_PHASES:
        return [plain(f"step {step.value} refused: the programme is {status.phase.value}")]
    st = status.step(step.value)
    if st is None:
        return [plain(f"unknown step {step.value}")]
    if st.status == StepStatus.done:
        return [plain(f"step {step.value} is already done (by {st.done_by} at {_iso(st.done_at)})")]
    waiting_for = [d for d in spec(step.value).waits_for if (dep := status.step(d)) and dep.status != StepStatus.done]
    # A missed step may still be done late, but in order, like any other.
    if st.status == StepStatus.waiting or (st.status == StepStatus.missed and waiting_for):
        return [plain(f"step {step.value} is out of order: it waits for {', '.join(waiting_for)}")]
    return []


def check_meeting_time(inp: ScheduleKickoff) -> list[RuleViolation]:
    return needs_offset(inp.meeting_at, "meeting_at", "2027-01-12T10:00:00+01:00")


def check_agreed_dates(inp: CompleteKickoff, period_end: date) -> list[RuleViolation]:
    """D4/A2: the dates agreed in the meeting fall between the meeting and the period end (the first
    one that does not is named)."""
    out: list[RuleViolation] = []
    for name, d in inp.agreed_dates.dates().items():
        if not (inp.held_on <= d <= period_end):
            out = [plain(f"agreed date for {name} ({d}) must fall between the meeting ({inp.held_on}) "
                         f"and the period end ({period_end})", f"agreed_dates.{name}")]
            break
    return out + check_agreed_call_schedule(inp.agreed_dates)


def check_agreed_call_schedule(agreed: AgreedDates) -> list[RuleViolation]:
    """A2 (with D6, C10): the call schedule agreed in the minutes is a day of the month (1 to 31; a shorter
    month takes its last day) and a follow-up frequency of 1 to 12 months."""
    out: list[RuleViolation] = []
    day = agreed.call_day_of_month
    if day is not None and not 1 <= day <= 31:
        out.append(violation("A2", f"agreed_dates.call_day_of_month ({day}), the day of the month agreed for the "
                                   f"follow-up calls, must be 1 to 31 (31: each month's last day)",
                             "agreed_dates.call_day_of_month"))
    months = agreed.report_frequency_months
    if months is not None and not 1 <= months <= 12:
        out.append(violation("A2", f"agreed_dates.report_frequency_months ({months}), the follow-up report frequency "
                                   f"agreed in the minutes, must be 1 to 12 months (rule C10)",
                             "agreed_dates.report_frequency_months"))
    return out


def check_step_payload(inp: CompleteKickoff | SubmitSiteInventory | RecordBillableExtra,
                       enrolment: Enrolment) -> list[RuleViolation]:
    """Rules A2 (agenda items), A7 and C11 (site inventory), C3 (an extra's agreement) on a payload."""
    if isinstance(inp, CompleteKickoff):
        return check_kickoff_agenda(inp.agenda_covered)
    if isinstance(inp, SubmitSiteInventory):
        return check_site_inventory(inp.inventory, enrolment.primary_system, enrolment.additional_systems)
    return check_billable_extra(inp.kind, inp.agreement_ref)


def check_inventory_update(status: ProgramStatus) -> list[RuleViolation]:
    """D8: the inventory is updatable all period, once it has been submitted."""
    st = status.step(StepName.submit_site_inventory.value)
    if st is None or st.status != StepStatus.done:
        return [plain("update_site_inventory refused: submit the site inventory first (step submit_site_inventory)")]
    return []


def check_reassignment(status: ProgramStatus, inp: ReassignTechnicalLead) -> list[RuleViolation]:
    if inp.technical_lead.id == status.technical_lead.id:
        return [plain(f"{inp.technical_lead.id} is already the Technical Lead", "technical_lead.id")]
    return []


def check_new_contact(status: ProgramStatus, inp: AddContact, subscription_contacts: int,
                      policy: ProgramPolicy) -> list[RuleViolation]:
    """Rule C4: contacts beyond the limit need the extra fee accepted, with its agreement (C3)."""
    if any(c.email.lower() == inp.contact.email.lower() for c in status.contacts):
        return [plain(f"{inp.contact.email} is already a contact", "contact.email")]
    total = subscription_contacts + len(status.contacts) + 1
    # The same rule as at enrolment (domain/enrolment.py check_extra_contacts).
    return check_extra_contacts(total, inp.accept_extra_contact_fee, inp.agreement_ref, policy,
                                "accept_extra_contact_fee" if not inp.accept_extra_contact_fee else "agreement_ref")


def check_renewal_proposal(status: ProgramStatus, price: Money, policy: ProgramPolicy) -> list[RuleViolation]:
    """Rules C14 (before the renewal notice) and C15 (at most the yearly cap above today's fee)."""
    r = status.renewal
    if r is None or r.notice_sent:
        return [plain(f"the renewal notice date ({r.notice_on if r else '?'}) has passed; "
                      f"the next period's price is fixed (C14)")]
    try:
        check_renewal_price(status.annual_fee, price, policy.max_price_increase_percent)
    except RuleRefused as err:
        return err.violations
    return []


def check_non_renewal_notice(status: ProgramStatus, inp: GiveNonRenewalNotice, now: datetime) -> list[RuleViolation]:
    """Rule C16: accepted up to and including the deadline day; later is refused as late."""
    r = status.renewal
    assert r is not None
    if r.non_renewal is not None:
        return [plain(f"a non-renewal notice was already recorded ({r.non_renewal.reference})")]
    if inp.received_on > r.non_renewal_deadline:
        return [violation("C16", f"non-renewal notice received on {inp.received_on} is late; the deadline was "
                                 f"{r.non_renewal_deadline} (90 days before the period end); the programme renews",
                          "received_on")]
    # A notice cannot be dated in the future of the programme's clock (one day of slack covers time
    # zones east of UTC).
    if inp.received_on > (now + timedelta(days=1)).date():
        return [plain(f"received_on {inp.received_on} is in the future", "received_on")]
    return []


def check_invoice_paid(status: ProgramStatus, invoice_ref: str, paid_on: date, today: date) -> list[RuleViolation]:
    """Rule C14: a payment is recorded against an issued invoice, from its issue on: the renewal invoice of
    this period (issued with the notice) or the one carried from the last period (it pays this one)."""
    r = status.renewal
    issued = [i for i in (status.period_invoice, r.invoice if r else None) if i is not None]
    if not issued:
        if r is not None and r.notice_sent and (status.plan is None or status.plan.invoice_due_on is None):
            return []  # a run planned before the renewal invoice: the reference is the customer's own
        return [violation("C14", "no renewal invoice yet: it is issued with the renewal notice"
                                 + (f" on {r.notice_on}" if r else ""), "invoice_ref")]
    match = next((i for i in issued if i.number == invoice_ref.strip()), None)
    if match is None:
        return [violation("C14", f"unknown invoice {invoice_ref!r}; open invoice(s): "
                                 + ", ".join(i.number for i in issued), "invoice_ref")]
    if match.paid:
        return [violation("C14", f"invoice {match.number} was already recorded paid on {match.paid_on}",
                          "invoice_ref")]
    if paid_on > today + timedelta(days=1):  # a day's slack: `today` is UTC, the payment's day is local
        return [violation("C14", f"paid on {paid_on}, a date still to come", "paid_on")]
    if paid_on < match.issued_on:
        return [violation("C14", f"paid on {paid_on}, before invoice {match.number} was issued on "
                                 f"{match.issued_on}", "paid_on")]
    return []
