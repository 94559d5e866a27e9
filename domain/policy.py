"""Every "our reading" default of the rules (docs/rules.md), as one model.

Settings (pydantic-settings, `TECHCONNECT_*`) fill this model at start time and it
travels in the workflow input, so a running programme keeps the policy it was
started with: changing a setting never changes history being replayed.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal

from pydantic import BaseModel, Field


class ProgramPolicy(BaseModel):
    handbook_version: str = "TechConnect handbook FR, OpenText, rev. 2024"  # rule E2
    default_term_months: int = 12  # rule C2
    max_additional_contacts_at_enrolment: int = 5  # rule C4
    max_total_contacts: int = 15  # rule C4
    business_day_start: time = time(9, 0)  # rule C5
    business_day_end: time = time(17, 0)  # rule C5
    support_language: str = "en"  # rule C8
    first_response_minutes: int = 60  # rule C12
    first_response_warning_minutes: int = 15  # rule C12
    # Rule A4: each approval of an on-site dispatch (extra cost) has its own deadline, in business days.
    dispatch_customer_approval_business_days: int = 3
    dispatch_manager_approval_business_days: int = 2
    renewal_notice_days_before_end: int = 100  # rule C14 (100 so the customer has time: docs/configuration.md)
    non_renewal_notice_days: int = 90  # rule C16
    # Rule C16: the reminder comes after the renewal notice (domain/renewal.py renewal_timing_problems).
    non_renewal_reminder_days_before_deadline: int = 7
    renewal_notice_min_days_before_deadline: int = 10  # rule C14: time to read the price before the deadline
    # Rule C14: the renewal invoice goes with the notice, is due on the period's last day, and an unpaid one is
    # escalated to ops this many days before the end; whether the next period starts unpaid is a policy.
    unpaid_invoice_escalation_days_before_end: int = 30
    next_period_starts_unpaid: bool = True
    # Rule E1 ahead of time: the maintenance subscription is checked against the next period on these days
    # before the end; ops and the TL are told at once if it does not cover it.
    maintenance_warning_days_before_end: int = 60
    maintenance_second_warning_days_before_end: int = 30
    max_price_increase_percent: Decimal = Decimal("10")  # rule C15
    default_price_increase_percent: Decimal = Decimal("0")  # rule C15
    step_reminder_business_days: int = 2
    # Default deadlines, in business days from the period start, used until the
    # kickoff minutes fix agreed dates (rule D4/A2).
    kickoff_schedule_business_days: int = 5
    kickoff_held_business_days: int = 15
    communication_plan_business_days: int = 30
    site_inventory_business_days: int = 40
    configuration_analysis_business_days: int = 60
    call_schedule_business_days: int = 5  # from the first day of the month
    report_approval_business_days: int = 5  # from the first day of the next month
    # A past deadline older than this is marked missed without mail (docs/design.md "Past start dates").
    stale_after_days: int = 2
    # Rules D10, A9: after the close the contacts keep reading the archived workspace (its pages and
    # documents, the final report) for this many days, writing nothing; then their access ends. 0: at once.
    workspace_readable_days_after_close: int = Field(default=30, ge=0)
    ops_mailbox: str = "ops@techconnect.example"
    support_manager_mailbox: str = "support-manager@techconnect.example"
    support_desk_mailbox: str = "support-desk@techconnect.example"  # rule C12: SLA warnings
    sender: str = "TechConnect <techconnect@support.example>"
    portal_url: str = "http://127.0.0.1:8000"
    extras: dict[str, str] = Field(default_factory=dict)
