"""The enrolment file (docs/design.md "The enrolment file") and the rules checked before a programme starts.

Rules E1, E2, C1, C2, C4, C5, C8, C9, C10, C15 (docs/rules.md). `check_enrolment` returns every
violation at once so operations staff can fix a file in one go.
"""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, EmailStr, Field

from domain.calendar import BusinessCalendar, period_end_date
from domain.errors import RuleViolation
from domain.money import Money
from domain.policy import ProgramPolicy


class CustomerRef(BaseModel):
    id: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    maintenance_subscription_id: str = Field(min_length=1)


class TechnicalLead(BaseModel):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    email: EmailStr


class Contact(BaseModel):
    name: str = Field(min_length=1)
    email: EmailStr
    role: str = ""


class Product(BaseModel):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    third_party: bool = False  # rule C9: third-party products resold by OT
    # Rule C9: a product outside the maintenance programme and OT's resold products is covered at extra cost,
    # under this agreement (billed as an extra of kind other_product).
    extra_cost_agreement_ref: str | None = None


class Enrolment(BaseModel):
    """The enrolment file; field names are the contract (docs/design.md "The enrolment file")."""

    customer: CustomerRef
    period_start: date
    term_months: int = Field(default=12, ge=1, le=60)
    written_agreement_ref: str | None = None
    technical_lead: TechnicalLead
    # The customer's primary contact gets the workspace; additional ones follow rule C4.
    primary_contact: Contact | None = None
    additional_contacts: list[Contact] = Field(default_factory=list)
    accept_extra_contact_fees: bool = False
    extra_contacts_agreement_ref: str | None = None  # rule C4 (with C3): contacts beyond fifteen, billed
    # Rule C5: a Technical Lead for another region, agreed at the start and billed as an extra.
    other_region_tl_agreement_ref: str | None = None
    calendar: BusinessCalendar = Field(default_factory=BusinessCalendar)
    products: list[Product] = Field(default_factory=list)
    primary_system: str = Field(min_length=1)
    additional_systems: list[str] = Field(default_factory=list)
    additional_systems_agreement_ref: str | None = None
    annual_fee: Money
    renewal_price_increase_percent: float | None = None
    support_language: str = "en"
    handbook_accepted_by: str | None = None
    # rule C10: one follow-up call and report a month, unless another frequency is agreed (with its reference).
    call_frequency_months: int = Field(default=1, ge=1, le=12)
    call_frequency_agreement_ref: str | None = None

    @property
    def period_end(self) -> date:
        return period_end_date(self.period_start, self.term_months)

    def contacts(self) -> list[Contact]:
        return ([self.primary_contact] if self.primary_contact else []) + list(self.additional_contacts)


class MaintenanceSubscription(BaseModel):
    """A row of the maintenance registry that ops import (CSV: id, customer_id, start, end, contact_count)."""

    id: str
    customer_id: str
    start: date
    end: date
    contact_count: int = Field(default=0, ge=0)


def check_maintenance(
    subscription: MaintenanceSubscription | None, customer_id: str, subscription_id: str, start: date, end: date
) -> list[RuleViolation]:
    """Rule E1: an active maintenance subscription covering the whole period."""
    if subscription is None:
        return [RuleViolation(rule="E1", field="customer.maintenance_subscription_id",
                              message=f"maintenance subscription {subscription_id} is not in the registry")]
    out: list[RuleViolation] = []
    if subscription.customer_id != customer_id:
        out.append(RuleViolation(rule="E1", field="customer.maintenance_subscription_id",
                                 message=f"maintenance subscription {subscription.id} belongs to "
                                         f"{subscription.customer_id}, not {customer_id}"))
    if subscription.start > start:
        out.append(RuleViolation(rule="E1", field="period_start",
                                 message=f"maintenance subscription {subscription.id} starts on "
                                         f"{subscription.start}, after the period start {start}"))
    if subscription.end < end:
        out.append(RuleViolation(rule="E1", field="period_start",
                                 message=f"maintenance subscription {subscription.id} ends on {subscription.end}, "
                                         f"inside the period {start} to {end}"))
    return out


def total_contacts(enrolment: Enrolment, subscription: MaintenanceSubscription | None,
                   registry_contacts: int | None = None) -> int:
    """Rule C4 counts contacts across all the customer's maintenance subscriptions: the registry's contacts
    of every subscription of the customer (`registry_contacts`, summed by the enrolment check), or of the
    named one when no sum is given, plus the primary contact and every additional one."""
    existing = registry_contacts if registry_contacts is not None else (
        subscription.contact_count if subscription else 0)
    return existing + len(enrolment.contacts())


def contacts_beyond_limit(total: int, policy: ProgramPolicy) -> int:
    """Rule C4: how many contacts are over the fifteen, each billed as an extra."""
    return max(0, total - policy.max_total_contacts)


def check_extra_contacts(total: int, accepted: bool, agreement_ref: str | None, policy: ProgramPolicy,
                         field: str) -> list[RuleViolation]:
    """Rule C4 (with C3), the same at enrolment and later: beyond fifteen contacts in all, the customer
    accepts the fee under an agreement reference, and each one over is billed."""
    if total <= policy.max_total_contacts or (accepted and (agreement_ref or "").strip()):
        return []
    return [RuleViolation(rule="C4", field=field,
                          message=f"{total} contacts in all across the customer's maintenance subscriptions; more "
                                  f"than {policy.max_total_contacts} needs the extra fee accepted with the reference "
                                  f"of its agreement (rule C3)")]


def check_call_frequency(months: int, agreement_ref: str | None, field: str) -> list[RuleViolation]:
    """Rule C10: one follow-up call and one report a month are included unless OT and the customer agree
    otherwise; another frequency (a cycle every `months` months) needs the reference of that agreement.
    A frequency that does not divide the term is accepted: the period's last cycle is shorter."""
    if months != 1 and not (agreement_ref or "").strip():
        return [RuleViolation(rule="C10", field=field,
                              message=f"a follow-up call and report every {months} months instead of monthly needs "
                                      f"the reference of the agreement with the customer ({field})")]
    return []


def check_enrolment(
    enrolment: Enrolment,
    subscription: MaintenanceSubscription | None,
    policy: ProgramPolicy,
    *,
    known_countries: set[str] | None = None,
    registry_contacts: int | None = None,
) -> list[RuleViolation]:
    """Every rule that refuses an enrolment; an empty list means it may start."""
    v: list[RuleViolation] = []
    end = enrolment.period_end
    # rule C2: 12 months unless agreed otherwise in writing.
    if enrolment.term_months != policy.default_term_months and not enrolment.written_agreement_ref:
        v.append(RuleViolation(rule="C2", field="term_months",
                               message=f"a term of {enrolment.term_months} months needs a written agreement "
                                       f"(written_agreement_ref); the standard term is "
                                       f"{policy.default_term_months} months"))
    # rule E1
    v += check_maintenance(subscription, enrolment.customer.id, enrolment.customer.maintenance_subscription_id,
                           enrolment.period_start, end)
    # rule C4
    extra = len(enrolment.additional_contacts)
    if extra > policy.max_additional_contacts_at_enrolment:
        v.append(RuleViolation(rule="C4", field="additional_contacts",
                               message=f"{extra} additional contacts at enrolment; at most "
                                       f"{policy.max_additional_contacts_at_enrolment} are allowed"))
    total = total_contacts(enrolment, subscription, registry_contacts)
    v += check_extra_contacts(total, enrolment.accept_extra_contact_fees, enrolment.extra_contacts_agreement_ref,
                              policy, "accept_extra_contact_fees" if not enrolment.accept_extra_contact_fees
                              else "extra_contacts_agreement_ref")
    emails = [c.email.lower() for c in enrolment.contacts()]
    if len(set(emails)) != len(emails):
        v.append(RuleViolation(rule="C4", field="additional_contacts", message="a contact e-mail appears twice"))
    # rule C5: a usable business calendar.
    cal = enrolment.calendar
    try:
        ZoneInfo(cal.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        v.append(RuleViolation(rule="C5", field="calendar.timezone", message=f"unknown time zone {cal.timezone!r}"))
    if cal.day_start >= cal.day_end:
        v.append(RuleViolation(rule="C5", field="calendar.day_end",
                               message=f"business day ends ({cal.day_end}) before it starts ({cal.day_start})"))
    if not cal.weekdays or any(d < 1 or d > 7 for d in cal.weekdays):
        v.append(RuleViolation(rule="C5", field="calendar.weekdays", message="weekdays must be ISO numbers 1..7"))
    if known_countries is not None and cal.country.upper() not in known_countries:
        v.append(RuleViolation(rule="C5", field="calendar.country",
                               message=f"no public-holiday calendar for country {cal.country!r}"))
    # rule C8: support is given in English.
    if enrolment.support_language != policy.support_language:
        v.append(RuleViolation(rule="C8", field="support_language",
                               message=f"support is given in {policy.support_language!r}, "
                                       f"not {enrolment.support_language!r}"))
    # rule C9: products in scope are listed at enrolment.
    if not enrolment.products:
        v.append(RuleViolation(rule="C9", field="products", message="list at least one product in scope"))
    # rules C1/C3/C11: additional systems are billable extras with an agreement.
    if enrolment.additional_systems and not enrolment.additional_systems_agreement_ref:
        v.append(RuleViolation(rule="C1", field="additional_systems_agreement_ref",
                               message=f"{len(enrolment.additional_systems)} additional system(s) "
                                       f"({', '.join(enrolment.additional_systems)}) are billable extras and need "
                                       f"the reference of a separate agreement (additional_systems_agreement_ref, "
                                       f"rule C3)"))
    # rule C10: another follow-up frequency than monthly needs its agreement.
    v += check_call_frequency(enrolment.call_frequency_months, enrolment.call_frequency_agreement_ref,
                              "call_frequency_agreement_ref")
    if enrolment.renewal_price_increase_percent is not None and (
        enrolment.renewal_price_increase_percent > float(policy.max_price_increase_percent)
    ):
        v.append(RuleViolation(rule="C15", field="renewal_price_increase_percent",
                               message=f"a renewal rise of {enrolment.renewal_price_increase_percent} % is above the "
                                       f"{policy.max_price_increase_percent} % cap"))
    return v
