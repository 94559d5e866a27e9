"""Task queues, workflow IDs and search attributes: the names every part shares."""

from __future__ import annotations

import re

from temporalio.common import (
    SearchAttributeKey,
)

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def is_valid_customer_id(customer_id: str) -> bool:
    """Customer IDs become part of workflow IDs, URLs and tracking numbers."""
    return bool(_ID_RE.match(customer_id))


def program_workflow_id(customer_id: str) -> str:
    # One ID per customer: Temporal refuses a second live run with the same ID,
    # which is how "one active programme per customer" is enforced.
    return f"program-{customer_id}"


def monthly_cycle_workflow_id(customer_id: str, period: int, month: int) -> str:
    return f"program-{customer_id}-p{period}-m{month:02d}"


def request_workflow_id(tracking_number: str) -> str:
    return f"request-{tracking_number}"


# Custom search attributes (docs/design.md "Reading state").
SA_CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SA_TECHNICAL_LEAD = SearchAttributeKey.for_keyword("TechnicalLead")
SA_PROGRAM_PHASE = SearchAttributeKey.for_keyword("ProgramPhase")
SA_OPEN_STEPS = SearchAttributeKey.for_keyword_list("OpenSteps")
SA_PERIOD_END = SearchAttributeKey.for_datetime("PeriodEnd")
SA_NON_RENEWAL_DEADLINE = SearchAttributeKey.for_datetime("NonRenewalDeadline")
SA_REQUEST_STATE = SearchAttributeKey.for_keyword("RequestState")
SA_SLA_BREACHED = SearchAttributeKey.for_bool("SlaBreached")

# Name -> type as the `temporal` CLI spells it (`--search-attribute Name=Type`).
SEARCH_ATTRIBUTES: dict[str, str] = {
    "CustomerId": "Keyword",
    "TechnicalLead": "Keyword",
    "ProgramPhase": "Keyword",
    "OpenSteps": "KeywordList",
    "PeriodEnd": "Datetime",
    "NonRenewalDeadline": "Datetime",
    "RequestState": "Keyword",
    "SlaBreached": "Bool",
}
