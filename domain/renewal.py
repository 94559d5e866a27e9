"""Renewal paperwork (rules C14, C15, C16, E1): the order of the renewal mails, the renewal invoice,
and the maintenance check ahead of the period end.

Pure functions: the calendar activity turns the day counts into dates, the workflow keeps the
invoice in its state and carries it into the next period.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field

from domain.money import Money, price_increase_percent
from domain.policy import ProgramPolicy


class InvoiceLine(BaseModel):
    description: str
    amount: Money


class RenewalInvoice(BaseModel):
    """Rule C14: "the customer pays the invoice". Issued with the renewal notice for the next period,
    tracked until paid, across the period boundary."""

    number: str
    customer_id: str
    period: int  # the period it pays for
    issued_on: date
    due_on: date
    lines: list[InvoiceLine] = Field(min_length=1)
    total: Money
    document_id: int | None = None
    paid_on: date | None = None
    escalated: bool = False

    @property
    def paid(self) -> bool:
        return self.paid_on is not None


def invoice_number(customer_id: str, period: int) -> str:
    """One renewal invoice per customer and period paid for: the number is derived, never counted, so a
    retried or replayed issue gives the same number."""
    return f"TC-INV-{customer_id.upper()}-P{period}"


def renewal_invoice(customer_id: str, paid_period: int, fee: Money, *, issued_on: date, due_on: date,
                    period_start: date, period_end: date) -> RenewalInvoice:
    """Rule C14: the next period's annual fee (C15: the price of the renewal notice), one line."""
    line = InvoiceLine(description=f"TechConnect programme, period {paid_period} "
                                   f"({period_start.isoformat()} to {period_end.isoformat()})", amount=fee)
    return RenewalInvoice(number=invoice_number(customer_id, paid_period), customer_id=customer_id,
                          period=paid_period, issued_on=issued_on, due_on=due_on, lines=[line], total=fee)


def price_rise_reason(current: Money, next_price: Money, reason: str | None, agreed_percent: float | None) -> str:
    """Rule C15: the rise is recorded with its reason ("a reasonable rise of service costs")."""
    if reason and reason.strip():
        return reason.strip()
    rise = price_increase_percent(current, next_price)
    if rise == 0:
        return "no rise"
    shown = f"{rise.quantize(Decimal('0.01')):f}".rstrip("0").rstrip(".")
    if agreed_percent is not None:
        return f"the rise of {shown} % agreed at enrolment"
    return f"the default rise of {shown} % (policy), a reasonable rise of service costs"


def renewal_timing_problems(policy: ProgramPolicy) -> list[str]:
    """Rules C14, C16, E1: settings whose renewal sequence would be out of order. Checked when the settings
    load (config/settings.py), not on the policy model itself: running programmes carry the policy they
    started with and must keep decoding it."""
    out: list[str] = []
    gap = policy.renewal_notice_days_before_end - policy.non_renewal_notice_days
    if gap < policy.renewal_notice_min_days_before_deadline:
        out.append(f"rule C14: the renewal notice ({policy.renewal_notice_days_before_end} days before the end) "
                   f"must precede the non-renewal deadline ({policy.non_renewal_notice_days} days before the end) "
                   f"by at least {policy.renewal_notice_min_days_before_deadline} days "
                   f"(renewal_notice_min_days_before_deadline); it does by {gap}")
    if policy.non_renewal_reminder_days_before_deadline >= gap:
        out.append(f"rule C16: the deadline reminder ({policy.non_renewal_reminder_days_before_deadline} days "
                   f"before the deadline) must come after the renewal notice ({gap} days before the deadline): "
                   f"set non_renewal_reminder_days_before_deadline below {gap}")
    if policy.non_renewal_reminder_days_before_deadline < 1:
        out.append("rule C16: non_renewal_reminder_days_before_deadline must be at least 1 (the reminder "
                   "goes out while the deadline is still ahead)")
    if policy.unpaid_invoice_escalation_days_before_end >= policy.renewal_notice_days_before_end:
        out.append(f"rule C14: the unpaid-invoice escalation ({policy.unpaid_invoice_escalation_days_before_end} "
                   f"days before the end) must come after the invoice is issued with the renewal notice "
                   f"({policy.renewal_notice_days_before_end} days before the end)")
    first, second = (policy.maintenance_warning_days_before_end,
                     policy.maintenance_second_warning_days_before_end)
    if not 0 < second < first:
        out.append(f"rule E1: the second maintenance warning ({second} days before the end) must come after "
                   f"the first ({first} days before the end) and before the end")
    return out
