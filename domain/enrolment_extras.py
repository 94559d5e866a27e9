"""The billable extras an enrolment file agrees to (rules C3, C4, C5, C9): each becomes a ledger row at the
start of every period it covers, priced from OT's price list by the recording activity."""

from __future__ import annotations

from decimal import Decimal

from domain.enrolment import Enrolment, contacts_beyond_limit
from domain.policy import ProgramPolicy
from domain.step_inputs import BillableExtraKind, RecordBillableExtra


def enrolment_extras(e: Enrolment, total_contacts: int, policy: ProgramPolicy, period: int,
                     by: str) -> list[RecordBillableExtra]:
    """What the enrolment check accepted at extra cost; the C1/C11 additional systems are billed beside
    (workflows/program.py, their own patch)."""
    out: list[RecordBillableExtra] = []
    beyond = contacts_beyond_limit(total_contacts, policy)
    if beyond and e.extra_contacts_agreement_ref:
        # rule C4: the enrolment check refused more than fifteen without the fee accepted under an agreement.
        out.append(RecordBillableExtra(
            by=by, kind=BillableExtraKind.extra_contacts, agreement_ref=e.extra_contacts_agreement_ref,
            quantity=Decimal(beyond),
            description=f"{beyond} contact(s) beyond {policy.max_total_contacts} across the maintenance "
                        f"subscriptions ({total_contacts} in all), period {period} (C4, SMPH section 6)"))
    if e.calendar.out_of_hours_agreement_ref:
        # rule C5: out-of-hours requests go to other resources at extra cost, agreed at the start.
        out.append(RecordBillableExtra(
            by=by, kind=BillableExtraKind.extended_hours, agreement_ref=e.calendar.out_of_hours_agreement_ref,
            months=e.term_months,
            description=f"Out-of-hours cover beyond the TL's business hours, period {period} (C5)"))
    if e.other_region_tl_agreement_ref:
        out.append(RecordBillableExtra(
            by=by, kind=BillableExtraKind.other_region_tl, agreement_ref=e.other_region_tl_agreement_ref,
            months=e.term_months, description=f"Technical Lead for another region, period {period} (C5)"))
    for product in e.products:
        if product.extra_cost_agreement_ref:
            # rule C9: products beyond maintenance and OT's resold ones, at extra cost.
            out.append(RecordBillableExtra(
                by=by, kind=BillableExtraKind.other_product, agreement_ref=product.extra_cost_agreement_ref,
                description=f"Product {product.name} {product.version} outside the maintenance programme, "
                            f"period {period} (C9)"))
    return out
