"""One sample context per document template (tests/test_documents.py, test_document_pdf.py): what each
activity hands its template, so every template is rendered with every value it shows."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, TechnicalLead
from domain.findings import analyse_inventory
from domain.inventory import DatabaseServer, InstalledProduct, Server, SiteInventory
from domain.money import Money
from domain.program import Phase, ProgramStatus
from domain.step_inputs import A2_AGENDA, StepName, StepState, StepStatus
from domain.steps import STEP_RULES, STEP_TITLES

# ---- sample contexts, one per document template --------------------------------------

CUSTOMER = "acme"
CUSTOMER_NAME = "ACME & Sons <Ltd>"  # markup in a name must be escaped in HTML, kept as is in text

TL = {"name": "Alice Martin", "email": "alice@support.example"}
CONTACTS = [{"name": "Bob Stone", "email": "bob@acme.example", "role": "IT manager"},
            {"name": "Eve Grant", "email": "eve@acme.example", "role": ""}]


def sample_inventory() -> SiteInventory:
    return SiteInventory(
        servers=[Server(hostname="cs1", role="front-end", cpu_cores=4, memory_gb=8, os_name="Windows Server",
                        os_version="2012 R2")],
        ot_product=InstalledProduct(name="Content Server", version="16.2.11", patch_level="2023-01 update"),
        database_servers=[DatabaseServer(engine="SQL Server", version="2014", hostname="db1",
                                         last_backup_on=date(2027, 1, 2))],
        network_protocols=["HTTPS", "FTP"],
        web_server="Tomcat 8.5",
        notes="Second data centre planned.\nMigration in Q3.",
    )


def finding_dumps() -> list[dict[str, Any]]:
    findings = [f.model_dump(mode="json") for f in analyse_inventory(sample_inventory(), date(2027, 2, 1))]
    findings.append({"check_id": "HUMAN", "title": "Search index on the OS disk", "severity": "high",
                     "detail": "the index lives on C:", "recommendation": "Move it to a dedicated volume.",
                     "source": "gts", "author": "gts-ravi"})
    return findings


def sample_contexts() -> dict[str, dict[str, Any]]:
    base = {"customer_name": CUSTOMER_NAME, "customer_id": CUSTOMER, "period": 1}
    inventory = sample_inventory()
    return {
        "welcome": base | {
            "period_start": "2027-01-04", "period_end": "2028-01-03", "technical_lead": TL, "contacts": CONTACTS,
            "products": [{"name": "Content Server", "version": "23.4", "third_party": False},
                         {"name": "Brava!", "version": "23.4", "third_party": True}],
            "handbook_version": "TechConnect handbook FR, rev. 2024",
            "deliverables": [{"id": "D4", "title": "Programme planning and review meeting",
                              "frequency": "once a period"},
                             {"id": "D6", "title": "Follow-up calls", "frequency": "monthly"}],
        },
        "kickoff_minutes": base | {
            "held_on": "2027-01-15", "attendees": ["Alice Martin", "Bob Stone"],
            "minutes": "Reviewed last year.\nAgreed the inventory owner.",
            "agreed_dates": {"communication_plan": "2027-02-01", "site_inventory": None,
                             "configuration_analysis": "2027-03-15"},
            "agenda_covered": list(A2_AGENDA), "agenda_not_covered": [],  # as the workflow files them
        },
        "communication_plan": base | {
            "communication_policies": "Mail first; phone for P1.", "escalation_process": "TL, then support manager.",
            "reporting_process": "Monthly report in the workspace.", "procedures": "Tickets through the portal.",
            "technical_lead": TL, "contacts": CONTACTS,
        },
        "site_inventory": base | {
            "inventory": inventory.model_dump(mode="json"), "version": 2, "missing_items": inventory.missing_items(),
        },
        "configuration_findings": base | {"findings": finding_dumps(), "inventory_version": 2},
        "analysis_presentation": base | {
            "held_on": "2027-03-15", "attendees": ["Alice Martin", "Bob Stone"], "notes": "Upgrade planned for Q3.",
            "findings": finding_dumps(),
        },
        "renewal_notice": base | {
            "period_end": "2028-01-03", "current_price": {"amount": "48000.00", "currency": "EUR"},
            "next_price": {"amount": "50400.00", "currency": "EUR"}, "non_renewal_deadline": "2027-10-05",
        },
        "renewal_invoice": base | {
            "period_end": "2028-01-03", "non_renewal_deadline": "2027-10-05",
            "price_rise_reason": "the default rise of 5 % (policy)",
            "invoice": {"number": "TC-INV-ACME-P2", "customer_id": "acme", "period": 2, "issued_on": "2027-09-25",
                    "due_on": "2028-01-03", "lines": [{"description": "TechConnect programme, period 2",
                                                       "amount": {"amount": "50400.00", "currency": "EUR"}}],
                    "total": {"amount": "50400.00", "currency": "EUR"}},
        },
        "non_renewal_notice": base | {
            "party": "customer", "received_on": "2027-09-01", "reference": "LTR-42", "period_end": "2028-01-03",
        },
    }


def _status(**changes: Any) -> ProgramStatus:
    steps = [
        StepState(step=name.value, title=STEP_TITLES[name], rule=STEP_RULES[name], status=StepStatus.waiting)
        for name in StepName
    ]
    steps[0].status = StepStatus.done
    steps[0].done_at = datetime(2027, 1, 8, 10, 0, tzinfo=UTC)
    steps[0].done_by = "tl-alice"
    steps[1].status = StepStatus.done
    steps[1].done_at = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)  # done in the report month
    steps[1].due_on = date(2027, 3, 12)
    steps[2].status = StepStatus.open
    steps[2].due_on = date(2027, 3, 20)  # overdue by the end of March
    steps[3].status = StepStatus.open
    steps[3].due_on = date(2027, 4, 20)
    base = ProgramStatus(
        customer_id=CUSTOMER, customer_name=CUSTOMER_NAME, workflow_id=f"program-{CUSTOMER}", period=1,
        phase=Phase.onboarding, calendar=BusinessCalendar(timezone="Europe/Paris"),
        technical_lead=TechnicalLead(id="tl-alice", name="Alice Martin", email="alice@support.example"),
        contacts=[Contact(name="Bob Stone", email="bob@acme.example", role="IT manager")],
        handbook_version="rev. 2024", steps=steps, annual_fee=Money(amount=Decimal("48000.00"), currency="EUR"),
    )
    return base.model_copy(update=changes)
