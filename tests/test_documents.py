"""Workspace documents (D10/A9), configuration analysis (D9/A8) and reports (D7/A6) on a real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.testing import ActivityEnvironment

from activities.documents import DocumentActivities
from activities.report_builders import NO_REQUESTS_NOTE
from activities.templating import TEMPLATES_DIR, make_template_environment
from domain.activities import AnalysisRequest, FileDocumentRequest, FinalReportRequest, MonthlyReportRequest
from domain.findings import analyse_inventory
from domain.money import Money
from domain.program import BillableExtra, CycleSummary, NonRenewal, Phase, ProgramStatus, RenewalState
from domain.step_inputs import A2_AGENDA, BillableExtraKind, StepName, StepState, StepStatus
from domain.steps import STEP_TITLES
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.tables import Base, BillableExtraRow, CustomerRow, DocumentRow, OutboxRow, ProgrammeRow
from tests.document_samples import (
    CUSTOMER,
    CUSTOMER_NAME,
    TL,
    _status,
    sample_contexts,
    sample_inventory,
)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    engine = make_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    factory = make_session_factory(engine)
    async with factory() as s, s.begin():
        s.add(CustomerRow(id=CUSTOMER, name=CUSTOMER_NAME, maintenance_subscription_id="SMP-1",
                          created_at=datetime(2027, 1, 1, tzinfo=UTC)))
    try:
        yield factory
    finally:
        await engine.dispose()


@pytest.fixture
def templates() -> jinja2.Environment:
    return make_template_environment()


@pytest.fixture
def acts(sessions: SessionFactory, templates: jinja2.Environment) -> DocumentActivities:
    return DocumentActivities(sessions, templates)


async def count(sessions: SessionFactory, model: type[Base], **where: Any) -> int:
    async with sessions() as s:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return int((await s.execute(stmt)).scalar_one())



# ---- file_document ----------------------------------------------------------------


def file_request(key: str = "program-acme:p1:welcome", **changes: Any) -> FileDocumentRequest:
    values: dict[str, Any] = {
        "customer_id": CUSTOMER, "period": 1, "kind": "welcome", "title": "Welcome to TechConnect",
        "template": "welcome", "context": sample_contexts()["welcome"], "idempotency_key": key,
    }
    return FileDocumentRequest(**(values | changes))


async def test_file_document_is_idempotent_by_key(acts: DocumentActivities, sessions: SessionFactory) -> None:
    """D10/A9: a retried activity returns the first row; the workspace holds the document once."""
    env = ActivityEnvironment()
    first = await env.run(acts.file_document, file_request())
    again = await env.run(acts.file_document, file_request())
    assert again == first
    assert first.kind == "welcome" and first.title == "Welcome to TechConnect"
    assert await count(sessions, DocumentRow) == 1
    other = await env.run(acts.file_document, file_request(key="program-acme:p1:welcome:v2", version=2))
    assert other.document_id != first.document_id
    async with sessions() as s:
        row = await s.get(DocumentRow, first.document_id)
    assert row is not None
    assert row.data["customer_id"] == CUSTOMER and row.data["period"] == 1
    assert row.data["technical_lead"] == TL
    assert "ACME &amp; Sons &lt;Ltd&gt;" in row.body_html and CUSTOMER_NAME not in row.body_html
    assert CUSTOMER_NAME in row.body_text
    assert "Alice Martin" in row.body_text and "Brava!" in row.body_html


async def test_concurrent_filings_with_one_key_keep_one_row(acts: DocumentActivities, sessions: SessionFactory) -> None:
    refs = await asyncio.gather(*(acts.file_document(file_request(key="race")) for _ in range(4)))
    assert len({r.document_id for r in refs}) == 1
    assert await count(sessions, DocumentRow, idempotency_key="race") == 1


class _LosesTheRace(DocumentActivities):
    """Another attempt commits between this one's lookup and its insert."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lookups = 0

    async def _lookup(self, session: AsyncSession, key: str) -> DocumentRow | None:
        self.lookups += 1
        return None if self.lookups == 1 else await DocumentActivities._by_key(session, key)


async def test_lost_insert_race_returns_the_winner(
    sessions: SessionFactory, templates: jinja2.Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = await DocumentActivities(sessions, templates).file_document(file_request(key="k"))
    loser = _LosesTheRace(sessions, templates)
    monkeypatch.setattr(loser, "_by_key", loser._lookup)
    ref = await loser.file_document(file_request(key="k"))
    assert ref == winner
    assert loser.lookups == 2  # looked up, lost the insert on the unique key, reloaded
    assert await count(sessions, DocumentRow) == 1


async def test_customer_name_comes_from_the_database_when_missing(
    acts: DocumentActivities, sessions: SessionFactory
) -> None:
    context = dict(sample_contexts()["non_renewal_notice"])
    del context["customer_name"]
    context["received_on"] = date(2027, 9, 1)  # a Python date is stored as its ISO text
    ref = await acts.file_document(FileDocumentRequest(
        customer_id=CUSTOMER, period=1, kind="non_renewal_notice", title="Notice of non-renewal",
        template="non_renewal_notice", context=context, idempotency_key="nr"))
    assert ref.kind == "non_renewal_notice"
    async with sessions() as s:
        row = await s.get(DocumentRow, ref.document_id)
    assert row is not None
    assert row.data["customer_name"] == CUSTOMER_NAME and row.data["received_on"] == "2027-09-01"
    assert "1 September 2027" in row.body_text


# ---- every template renders --------------------------------------------------------


def document_templates() -> list[str]:
    names = {p.name.split(".")[0] for p in (TEMPLATES_DIR / "documents").glob("*.j2") if not p.name.startswith("_")}
    return sorted(names)


def test_every_document_template_has_html_and_text() -> None:
    folder: Path = TEMPLATES_DIR / "documents"
    for name in document_templates():
        assert (folder / f"{name}.html.j2").is_file() and (folder / f"{name}.txt.j2").is_file(), name
    assert set(sample_contexts()) | {"monthly_report", "final_report"} == set(document_templates())


@pytest.mark.parametrize("name", sorted(sample_contexts()))
def test_document_template_renders(name: str, templates: jinja2.Environment) -> None:
    context = sample_contexts()[name] | {"title": f"Sample {name}"}
    html = templates.get_template(f"documents/{name}.html.j2").render(context)
    text = templates.get_template(f"documents/{name}.txt.j2").render(context)
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html and "@media print" in html
    assert "ACME &amp; Sons &lt;Ltd&gt;" in html
    assert CUSTOMER_NAME in text and f"Sample {name}" in text
    for body in (html, text):
        assert "None" not in body, f"{name}: a null leaked into the document"


def test_optional_values_render(templates: jinja2.Environment) -> None:
    contexts = sample_contexts()
    minutes = contexts["kickoff_minutes"] | {"title": "Minutes", "agreed_dates": None, "agenda_covered": [],
                                             "agenda_not_covered": list(A2_AGENDA)}
    text = templates.get_template("documents/kickoff_minutes.txt.j2").render(minutes)
    assert "default deadlines apply" in text and all(item in text for item in A2_AGENDA)
    notice = contexts["renewal_notice"] | {"title": "Renewal", "next_price": None}
    assert "EUR 48,000.00" in templates.get_template("documents/renewal_notice.html.j2").render(notice)
    ot = contexts["non_renewal_notice"] | {"title": "Notice", "party": "ot"}
    assert "Given by: OpenText" in templates.get_template("documents/non_renewal_notice.txt.j2").render(ot)
    empty = contexts["configuration_findings"] | {"title": "Findings", "findings": []}
    assert "No findings" in templates.get_template("documents/configuration_findings.html.j2").render(empty)


@pytest.mark.rule("A8")
def test_findings_document_lists_every_finding(templates: jinja2.Environment) -> None:
    context = sample_contexts()["configuration_findings"] | {"title": "Configuration analysis"}
    text = templates.get_template("documents/configuration_findings.txt.j2").render(context)
    for finding in context["findings"]:
        assert finding["check_id"] in text and finding["detail"] in text
    assert "GTS, gts-ravi" in text


# ---- configuration analysis activity ---------------------------------------------


@pytest.mark.rule("A8")
async def test_analyse_configuration_returns_the_rule_findings(acts: DocumentActivities) -> None:
    """D9/A8 run as an activity: the same findings as the pure rules."""
    request = AnalysisRequest(customer_id=CUSTOMER, period=1, inventory=sample_inventory(), as_of=date(2027, 2, 1))
    result = await ActivityEnvironment().run(acts.analyse_configuration, request)
    assert result.findings == analyse_inventory(request.inventory, request.as_of)
    assert {"CFG-001", "CFG-007", "CFG-008", "CFG-015", "CFG-018"} <= {f.check_id for f in result.findings}


# ---- monthly report (D7, A6) -------------------------------------------------------


def at(day: int, hour: int = 10, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, 0, tzinfo=UTC)


async def seed_month(sessions: SessionFactory) -> None:
    """March 2027 for acme (Europe/Paris, UTC+1 in early March, UTC+2 from the 28th)."""
    status = _status()
    async with sessions() as s, s.begin():
        s.add(ProgrammeRow(customer_id=CUSTOMER, workflow_id=status.workflow_id, period=1, phase=status.phase.value,
                           technical_lead_id="tl-alice", enrolment={}, status=status.model_dump(mode="json"),
                           updated_at=at(10)))
        docs = [
            ("doc-in-1", at(2), "communication_plan", "Communication plan"),
            # 00:30 on 1 March in Paris: inside the month although it is still February in UTC.
            ("doc-in-2", datetime(2027, 2, 28, 23, 30, tzinfo=UTC), "site_inventory", "Site inventory v1"),
            ("doc-feb", at(27, month=2), "kickoff_minutes", "Minutes"),
            # 00:30 on 1 April in Paris (UTC+2): outside.
            ("doc-apr", datetime(2027, 3, 31, 22, 30, tzinfo=UTC), "site_inventory", "Site inventory v2"),
        ]
        for key, created, kind, title in docs:
            s.add(DocumentRow(customer_id=CUSTOMER, period=1, kind=kind, title=title, body_text="", body_html="",
                              data={}, idempotency_key=key, created_at=created))
        extras = [
            ("x-1", at(5), BillableExtraKind.extra_call, Decimal("900.00"), 1),
            ("x-2", at(20), BillableExtraKind.on_site_dispatch, Decimal("1500.50"), 1),
            ("x-3", at(21), BillableExtraKind.other, None, 1),
            ("x-apr", at(2, month=4), BillableExtraKind.extra_report, Decimal("400.00"), 1),
        ]
        for key, recorded, kind, amount, period in extras:
            s.add(BillableExtraRow(customer_id=CUSTOMER, period=period, kind=kind.value, rule="C10",
                                   description=f"extra {key}", agreement_ref=f"AGR-{key}", amount=amount,
                                   currency="EUR" if amount is not None else None, recorded_by="ops",
                                   recorded_at=recorded, idempotency_key=key))
        mails = [
            ("m-1", "sent", at(1), "call_invite"), ("m-2", "sent", at(15), "document_filed"),
            ("m-3", "sent", at(30), "step_reminder"), ("m-pending", "pending", None, "step_reminder"),
            ("m-failed", "failed", None, "welcome"), ("m-feb", "sent", at(20, month=2), "welcome"),
        ]
        for key, state, sent_at, template in mails:
            s.add(OutboxRow(idempotency_key=key, customer_id=CUSTOMER, template=template, message_id=f"<{key}@x>",
                            sender="tc@support.example", recipients="bob@acme.example", subject=f"Subject {key}",
                            body_text="", body_html="", status=state, created_at=at(1), sent_at=sent_at))
        # Another customer's rows never show in acme's report.
        s.add(CustomerRow(id="other", name="Other", maintenance_subscription_id="SMP-2", created_at=at(1)))
        s.add(OutboxRow(idempotency_key="m-other", customer_id="other", template="welcome", message_id="<o@x>",
                        sender="tc@support.example", recipients="x@other.example", subject="Other", body_text="",
                        body_html="", status="sent", created_at=at(3), sent_at=at(3)))
        await s.flush()
        s.add(DocumentRow(customer_id="other", period=1, kind="welcome", title="Other welcome", body_text="",
                          body_html="", data={}, idempotency_key="doc-other", created_at=at(3)))


def monthly_request(key: str = "program-acme-p1-m03:report") -> MonthlyReportRequest:
    return MonthlyReportRequest(
        customer_id=CUSTOMER, customer_name=CUSTOMER_NAME, period=1, month=3, month_start=date(2027, 3, 1),
        month_end=date(2027, 3, 31), call_held_on=date(2027, 3, 12), call_notes="Discussed the upgrade to 24.2.",
        idempotency_key=key,
    )


@pytest.mark.rule("A6", "D7")
async def test_monthly_report_counts_match_the_database(acts: DocumentActivities, sessions: SessionFactory) -> None:
    """D7/A6: the report is built from the rows of the month, in the programme's time zone."""
    await seed_month(sessions)
    draft = await ActivityEnvironment().run(acts.generate_monthly_report, monthly_request())
    async with sessions() as s:
        row = await s.get(DocumentRow, draft.document_id)
    assert row is not None and row.kind == "monthly_report" and row.period == 1
    sections = row.data["sections"]

    docs = sections["communications"]["documents"]
    assert [d["title"] for d in docs] == ["Site inventory v1", "Communication plan"]
    mails = sections["communications"]["mails"]
    assert [m["subject"] for m in mails] == ["Subject m-1", "Subject m-2", "Subject m-3"]

    extras = sections["extras"]
    assert extras["count"] == 3 and extras["c10_count"] == 1
    assert [e["agreement_ref"] for e in extras["entries"]] == ["AGR-x-1", "AGR-x-2", "AGR-x-3"]
    assert extras["totals"] == [{"amount": "2400.50", "currency": "EUR"}]

    requests = sections["requests"]
    assert requests["total"] == 0 and requests["note"] == NO_REQUESTS_NOTE
    assert requests["by_state"] == {"open": 0, "pending": 0, "closed": 0}
    assert set(requests["by_kind"]) == {"support", "product", "advisory", "training"}

    deliverables = sections["deliverables"]
    assert deliverables["total"] == len(StepName) and deliverables["done"] == 2 and deliverables["open"] == 2
    assert deliverables["done_this_month"] == [STEP_TITLES[StepName.complete_kickoff]]
    assert deliverables["overdue"] == [STEP_TITLES[StepName.deliver_communication_plan]]
    assert sections["call"] == {"held_on": "2027-03-12", "notes": "Discussed the upgrade to 24.2.",
                                "no_call_held": False}

    assert draft.summary == row.data["summary"]
    for fragment in ("Month 3 of period 1", "follow-up call held on 2027-03-12", "0 support requests",
                     "deliverables 2/6 done (1 this month, 1 overdue)", "3 billable extras", "2 documents filed",
                     "3 mails sent"):
        assert fragment in draft.summary
    assert NO_REQUESTS_NOTE in row.body_text and NO_REQUESTS_NOTE in row.body_html
    assert "Subject m-2" in row.body_text and "EUR 2,400.50" in row.body_html
    assert "Subject m-pending" not in row.body_text and "Other welcome" not in row.body_text


async def test_monthly_report_is_idempotent(acts: DocumentActivities, sessions: SessionFactory) -> None:
    await seed_month(sessions)
    first = await acts.generate_monthly_report(monthly_request())
    before = await count(sessions, DocumentRow)
    # A retry after more rows arrived still returns the draft filed first, unchanged.
    async with sessions() as s, s.begin():
        s.add(DocumentRow(customer_id=CUSTOMER, period=1, kind="notice", title="Late", body_text="", body_html="",
                          data={}, idempotency_key="late", created_at=at(25)))
    again = await acts.generate_monthly_report(monthly_request())
    assert again == first
    assert await count(sessions, DocumentRow) == before + 1
    assert await count(sessions, DocumentRow, kind="monthly_report") == 1


async def test_monthly_report_without_projection_or_call(acts: DocumentActivities) -> None:
    request = monthly_request("bare").model_copy(update={"call_held_on": None, "call_notes": None})
    draft = await acts.generate_monthly_report(request)
    assert "no follow-up call recorded" in draft.summary
    assert "0 documents filed; 0 mails sent" in draft.summary


async def test_monthly_report_skips_unreadable_projection_steps(
    acts: DocumentActivities, sessions: SessionFactory
) -> None:
    """A projection written by an older or newer worker must not stop the monthly report."""
    good = StepState(step="schedule_kickoff", title="Schedule", rule="D4", status=StepStatus.done)
    async with sessions() as s, s.begin():
        s.add(ProgrammeRow(customer_id=CUSTOMER, workflow_id="program-acme", period=1, phase="running",
                           technical_lead_id="tl-alice", enrolment={}, updated_at=at(1), status={
                               "calendar": {"timezone": "Not/AZone"},
                               "steps": [good.model_dump(mode="json"), {"step": "broken", "status": "???"}]}))
    draft = await acts.generate_monthly_report(monthly_request("tolerant"))
    assert "deliverables 1/1 done" in draft.summary


# ---- final report ----------------------------------------------------------------


def closing_status() -> ProgramStatus:
    recorded = datetime(2027, 6, 1, 9, 0, tzinfo=UTC)
    status = _status(
        phase=Phase.closing,
        cycles=[CycleSummary(month=m, starts_on=date(2027, m, 1), workflow_id=f"program-acme-p1-m{m:02d}",
                             status="done" if m < 3 else "scheduled",
                             call_held_on=date(2027, m, 10) if m < 3 else None,
                             report_document_id=100 + m if m < 3 else None) for m in range(1, 4)],
        extras=[BillableExtra(kind=BillableExtraKind.extra_call, rule="C10", description="Second call in May",
                              agreement_ref="AGR-7", amount=Money(amount=Decimal("900.00"), currency="EUR"),
                              recorded_at=recorded, recorded_by="ops")],
        renewal=RenewalState(
            notice_on=date(2027, 9, 25), notice_sent=True, next_price=Money(amount=Decimal("50400.00")),
            non_renewal_deadline=date(2027, 10, 5), non_renewal_deadline_end_at=datetime(2027, 10, 5, 22, tzinfo=UTC),
            reminder_on=date(2027, 9, 21),
            non_renewal=NonRenewal(party="customer", received_on=date(2027, 9, 30), reference="LTR-42",
                                   recorded_by="ops", recorded_at=recorded),
        ),
        technical_lead_history=["tl-bob"],
    )
    return status


async def test_final_report_is_filed_once(acts: DocumentActivities, sessions: SessionFactory) -> None:
    """C14-C16: the final report names the outcome, every step, cycle and extra."""
    request = FinalReportRequest(status=closing_status(), idempotency_key="program-acme:p1:final")
    ref = await ActivityEnvironment().run(acts.generate_final_report, request)
    assert ref.kind == "final_report"
    assert await acts.generate_final_report(request) == ref
    assert await count(sessions, DocumentRow, kind="final_report") == 1
    async with sessions() as s:
        row = await s.get(DocumentRow, ref.document_id)
    assert row is not None
    assert row.data["outcome"].startswith("Not renewed: notice of non-renewal given by " + CUSTOMER_NAME)
    assert row.data["calls_held"] == 2 and row.data["reports_filed"] == 2 and len(row.data["cycles"]) == 3
    assert row.data["extras_totals"] == [{"amount": "900.00", "currency": "EUR"}]
    for title in STEP_TITLES.values():
        assert title in row.body_text
    assert "LTR-42" in row.body_html and "Second call in May" in row.body_text and "tl-bob" in row.body_text


async def test_final_report_lists_the_dispatch_extras_of_support_requests(
        acts: DocumentActivities, sessions: SessionFactory) -> None:
    """Rule A4: a visit's cost, recorded by its support request's workflow, is in the final report
    beside the programme's own extras; another period's visit and another kind are not added."""
    visited = datetime(2027, 5, 20, 14, 0, tzinfo=UTC)
    async with sessions() as s, s.begin():
        for key, period, kind in (("d-1", 1, "on_site_dispatch"), ("d-0", 0, "on_site_dispatch"),
                                  ("c-1", 1, "extra_call")):
            s.add(BillableExtraRow(customer_id=CUSTOMER, period=period, kind=kind, rule="A4",
                                   description=f"On-site dispatch {key} for request TC-ACME-2027-0007",
                                   agreement_ref=f"AGR-{key}", amount=Decimal("1250.00"), currency="EUR",
                                   recorded_by="tl-alice", recorded_at=visited, idempotency_key=key))
    ref = await acts.generate_final_report(FinalReportRequest(status=closing_status(), idempotency_key="fin-a4"))
    async with sessions() as s:
        row = await s.get(DocumentRow, ref.document_id)
    assert row is not None
    assert [(x["kind"], x["agreement_ref"]) for x in row.data["extras"]] == [
        ("extra_call", "AGR-7"), ("on_site_dispatch", "AGR-d-1")]
    assert row.data["extras_totals"] == [{"amount": "2150.00", "currency": "EUR"}]  # 900 + 1,250
    assert "On-site dispatch d-1" in row.body_text and "AGR-d-0" not in row.body_text


async def test_final_report_of_a_renewed_programme(acts: DocumentActivities) -> None:
    status = _status(phase=Phase.closed, outcome="renewed", renewal=None, plan=None)
    ref = await acts.generate_final_report(FinalReportRequest(status=status, idempotency_key="fin-2"))
    assert ref.title == "Final report, period 1"
