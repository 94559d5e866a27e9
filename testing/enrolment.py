"""A valid enrolment for a customer: what tests and benchmarks start programmes with."""

from __future__ import annotations

from datetime import date
from typing import Any

from domain.enrolment import Enrolment


def enrolment(customer_id: str, period_start: date, **overrides: Any) -> Enrolment:
    data: dict[str, Any] = {
        "customer": {"id": customer_id, "name": f"{customer_id.title()} Corp",
                     "maintenance_subscription_id": f"SMP-{customer_id}"},
        "period_start": period_start.isoformat(),
        "term_months": 12,
        "technical_lead": {"id": "tl-alice", "name": "Alice Martin", "email": "alice@support.example"},
        "primary_contact": {"name": "Carol Diaz", "email": f"carol@{customer_id}.example", "role": "CIO"},
        "additional_contacts": [{"name": "Bob Stone", "email": f"bob@{customer_id}.example", "role": "IT"}],
        "calendar": {"timezone": "Europe/Paris", "country": "FR"},
        "products": [{"name": "Content Server", "version": "23.4"}],
        "primary_system": "CS production",
        "annual_fee": {"amount": "48000.00", "currency": "EUR"},
    }
    data.update(overrides)
    return Enrolment.model_validate(data)
