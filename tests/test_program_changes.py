"""Changes during a period and what the database (the system of record) keeps of them, on
the time-skipping server: TL reassignment (C7), contacts (C4), billable extras (C1, C3, C6,
C10, C11, C13, A4), the site inventory and its findings (D8, A7, D9, A8), what enrolment
records (E2, C5, C8, C9, D10, A9, D1-D3, A1), the onboarding documents (D4/A2, D5/A3), the
monthly cycle's invite and report (D6/A5, D7/A6), the renewal invoice (C14) and the
`programmes` projection."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import holidays
import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from domain.cycle import CycleStatus
from domain.enrolment import MaintenanceSubscription, check_enrolment
from domain.findings import analyse_inventory
from domain.inventory import SiteInventory
from domain.naming import SA_TECHNICAL_LEAD
from domain.policy import ProgramPolicy
from domain.program import Phase, ProgramStatus
from domain.step_inputs import A2_AGENDA, StepStatus
from storage.repositories import (
    get_programme,
    get_workspace,
    list_audit,
    list_billable_extras,
    list_contacts,
    list_documents,
)
from tests.cycles import drafted
from tests.harness import Stack, enrolment, eventually
from tests.test_program_lifecycle import complete_onboarding, inventory
from tests.test_program_timing import SHORT_TERM, begin, first_cycle_running, settle

PARIS = ZoneInfo("Europe/Paris")
T = TypeVar("T")


async def upd(h: WorkflowHandle[Any, Any], name: str, payload: dict[str, Any]) -> ProgramStatus:
    result: ProgramStatus = await h.execute_update(name, payload, result_type=ProgramStatus)
    return result


def to_of(m: EmailMessage) -> str:
    return str(m["To"])


# ---- C7: reassigning the Technical Lead ----------------------------------------------------------
@pytest.mark.rule("C7")
async def test_reassign_technical_lead_tells_contacts_and_keeps_history_rule_c7(st: Stack) -> None:
    h, _ = await begin(st, "acme")
    meeting = datetime.combine((await st.now()).astimezone(PARIS).date() + timedelta(days=3), time(10), PARIS)
    await upd(h, "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting.isoformat()})
    bob = {"id": "tl-bob", "name": "Bob Ferreira", "email": "bob.ferreira@support.example"}
    s = await upd(h, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": bob,
                                                 "reason": "Alice moves to the EMEA desk"})
    assert s.technical_lead.id == "tl-bob"
    assert s.technical_lead_history == ["tl-alice", "tl-bob"]

    # Contacts are told, with both TLs in copy; the new TL gets the assignment with the open steps.
    told = await st.sink.wait_for(lambda m: "Technical Lead is now Bob Ferreira" in str(m["Subject"]), timeout=10)
    assert "carol@acme.example" in to_of(told[0]) and "bob@acme.example" in to_of(told[0])
    assert "alice@support.example" in str(told[0]["Cc"]) and "bob.ferreira@support.example" in str(told[0]["Cc"])
    assignment = await st.sink.wait_for(lambda m: "bob.ferreira@support.example" in to_of(m)
                                        and "You are Technical Lead" in str(m["Subject"]), timeout=10)
    assert "Hold the planning and review meeting" in assignment[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # The TL inbox (search attribute) and the projection follow.
    desc = await eventually(h.describe, lambda d: d.typed_search_attributes.get(SA_TECHNICAL_LEAD) == "tl-bob",
                            "TechnicalLead search attribute")
    assert desc.typed_search_attributes.get(SA_TECHNICAL_LEAD) == "tl-bob"

    async def row() -> Any:
        async with st.sessions() as session:
            return await get_programme(session, "acme")

    await eventually(row, lambda r: r is not None and r.technical_lead_id == "tl-bob", "projection TL")

    # History keeps who did what: Alice scheduled the kickoff, Bob holds it.
    s = await upd(h, "complete_kickoff", {"by": "tl-bob", "held_on": meeting.date().isoformat(),
                                          "attendees": ["Bob", "Carol"], "minutes": "Kickoff held."})
    assert s.step("schedule_kickoff").done_by == "tl-alice"  # type: ignore[union-attr]
    assert s.step("complete_kickoff").done_by == "tl-bob"  # type: ignore[union-attr]

    async def audit() -> list[Any]:
        async with st.sessions() as session:
            return await list_audit(session, "acme")

    # The Update returned while the previous projection save was in flight: it is saved all the same.
    entries = await eventually(audit, lambda a: any(e.action == "complete_kickoff" for e in a), "audit")
    reassigned = [e for e in entries if e.action == "reassign_technical_lead"]
    assert len(reassigned) == 1 and reassigned[0].actor == "ops-olga"
    assert reassigned[0].detail["from"] == "tl-alice" and reassigned[0].detail["to"] == "tl-bob"

    with pytest.raises(WorkflowUpdateFailedError) as err:
        await upd(h, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": bob})
    assert "already the Technical Lead" in str(err.value.cause)


# ---- C4: a contact added during the period ---------------------------------------------------------
@pytest.mark.rule("C4")
async def test_add_contact_within_limits_mails_the_new_contact_rule_c4(st: Stack) -> None:
    h, _ = await begin(st, "acme")  # 2 on the subscription + 2 enrolled: well within 15
    await settle(st, h)  # the welcome went out before Dana joined
    s = await upd(h, "add_contact", {"by": "ops-olga", "contact": {
        "name": "Dana Kim", "email": "dana@acme.example", "role": "DBA"}})
    assert [c.email for c in s.contacts][-1] == "dana@acme.example"
    assert s.extras == [], "within the limit: no extra fee"
    mail = await st.sink.wait_for(lambda m: "dana@acme.example" in to_of(m), timeout=10)
    assert len(mail) == 1 and "You now have access" in str(mail[0]["Subject"]), [str(m["Subject"]) for m in mail]
    assert "alice@support.example" in str(mail[0]["Cc"])

    async def contacts() -> list[Any]:
        async with st.sessions() as session:
            return await list_contacts(session, "acme", active_only=True)

    rows = await eventually(contacts, lambda r: "dana@acme.example" in {c.email for c in r}, "contact in the DB")
    assert len(rows) == 3
    async with st.sessions() as session:
        assert await list_billable_extras(session, "acme") == []


# ---- C1, C3, C6, C11, C13, A4: billable extras -----------------------------------------------------
EXTRAS = [
    # kind, expected rule, what it is
    ("additional_system", "C1", "second production system run by the same admin team (C1); "
                                "inventory and analysis of a second OT product (C11)"),
    ("optional_coverage", "C6", "TL engaged for weekend coverage of a migration"),
    ("customisation", "C13", "support of a customised workflow module"),
    ("other", "C3", "training day priced from the current price list"),
    ("on_site_dispatch", "A4", "engineer sent on site, agreed by both parties"),
]


@pytest.mark.rule("C3")
async def test_billable_extras_are_stored_with_their_agreement_rules_c1_c3_c6_c11_c13_a4(st: Stack) -> None:
    h, _ = await begin(st, "acme")
    for i, (kind, _rule, description) in enumerate(EXTRAS):
        await upd(h, "record_billable_extra", {"by": "ops-olga", "kind": kind, "description": description,
                                               "agreement_ref": f"AGR-{i}",
                                               "amount": {"amount": "1500.00", "currency": "EUR"},
                                               "override_reason": "lump sum in the agreement"})
    # rule C3: an amount other than the price list's needs its reason.
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await upd(h, "record_billable_extra", {"by": "ops-olga", "kind": "optional_coverage", "description": "x",
                                               "agreement_ref": "AGR-X", "amount": {"amount": "9.00"}})
    assert "override_reason" in str(err.value.cause)
    # rules C3/C13: every extra needs a separate agreement: a customisation without one is refused.
    with pytest.raises(WorkflowUpdateFailedError):
        await upd(h, "record_billable_extra", {"by": "ops-olga", "kind": "customisation",
                                               "description": "unagreed customisation", "agreement_ref": ""})
    async with st.sessions() as session:
        rows = await list_billable_extras(session, "acme")
    assert [(r.kind, r.rule, r.agreement_ref) for r in rows] == [
        (kind, rule, f"AGR-{i}") for i, (kind, rule, _) in enumerate(EXTRAS)]
    assert all(r.period == 1 and r.recorded_by == "ops-olga" and str(r.amount) == "1500.00" for r in rows)
    s = await st.status("acme")
    assert [x.rule for x in s.extras] == [rule for _, rule, _ in EXTRAS]


# ---- D6/A5, D7/A6, C10: the monthly cycle ------------------------------------------------------------
@pytest.mark.rule("C10", "A5", "A6", "D6", "D7")
async def test_monthly_cycle_invite_report_and_second_call_rules_c10_a5_a6_d6_d7(st: Stack) -> None:
    s, cycle = await first_cycle_running(st, "acme")
    assert s.plan is not None

    async def cupd(name: str, payload: dict[str, Any]) -> CycleStatus:
        result: CycleStatus = await cycle.execute_update(name, {"by": "tl-alice", **payload},
                                                         result_type=CycleStatus)
        return result

    month_start = s.plan.month_starts[0]
    extra = {"held_on": (month_start + timedelta(days=9)).isoformat(), "notes": "Escalation review",
             "agreement_ref": "AGR-CALL-2"}
    # rule C10: the included call comes first; an extra one before it is refused.
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await cupd("record_extra_call", extra)
    assert "C10" in str(err.value.cause)

    call_at = datetime.combine(month_start + timedelta(days=7), time(14), PARIS)
    await cupd("schedule_call", {"call_at": call_at.isoformat(), "dial_in": "https://meet.example/acme"})
    # rule A5: the contacts get the call as a calendar invite (.ics).
    invite = (await st.sink.wait_for(lambda m: "follow-up call for" in str(m["Subject"]), timeout=10))[0]
    assert "carol@acme.example" in to_of(invite) and "bob@acme.example" in to_of(invite)
    ics = [p for p in invite.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(ics) == 1 and ics[0].get_filename() == "invite.ics"
    text = ics[0].get_content()
    text = text.decode() if isinstance(text, bytes) else text
    assert "METHOD:REQUEST" in text and "mailto:carol@acme.example" in text.replace("\r\n ", "")
    assert "Open and closed issues" in text.replace("\r\n ", "")  # A5 agenda

    held = await cupd("hold_call", {"held_on": (month_start + timedelta(days=7)).isoformat(),
                                    "attendees": ["Alice", "Carol"], "notes": "Patch 23.4.2 planned."})
    assert held.report_document_id is None  # rule D7: drafted after the month ends
    done = await cupd("record_extra_call", extra)
    assert done.extra_calls == 1
    # The same extra call again (a double submission) is refused, not billed twice (C10).
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await cupd("record_extra_call", extra)
    assert "recorded already" in str(err.value.cause)
    # Two at once (racing past the validator, or not): one is recorded, the other refused.
    again = {**extra, "agreement_ref": "AGR-CALL-3"}
    raced = await asyncio.gather(cupd("record_extra_call", again), cupd("record_extra_call", again),
                                 return_exceptions=True)
    refused = [r for r in raced if isinstance(r, WorkflowUpdateFailedError)]
    assert len(refused) == 1 and "recorded already" in str(refused[0].cause), raced
    assert max(r.extra_calls for r in raced if isinstance(r, CycleStatus)) == 2
    draft = await drafted(st, cycle)
    approved = await cupd("approve_report", {"comments": "ok"})
    assert approved.done

    # rule C10: the second call is a billable extra in the database, with its agreement (C3).
    async with st.sessions() as session:
        extras = await list_billable_extras(session, "acme")
        reports = await list_documents(session, "acme", kind="monthly_report")
    assert [(e.kind, e.rule, e.agreement_ref) for e in extras] == [
        ("extra_call", "C10", "AGR-CALL-2"), ("extra_call", "C10", "AGR-CALL-3")]

    # rule D7/A6: the written report, filed in the workspace, has the A6 sections.
    assert len(reports) == 1 and reports[0].id == draft.report_document_id
    sections = reports[0].data["sections"]
    assert set(sections["requests"]["by_state"]) == {"open", "pending", "closed"}
    assert set(sections["requests"]["by_kind"]) == {"support", "product", "advisory", "training"}
    # Review of every open, pending and closed request: counted in `data`, one CSV row each in its files.
    assert set(sections["requests"]["listed"]) == {"open", "pending", "closed"}
    assert any(f["filename"].endswith("-requests.csv") for f in reports[0].data["mail_files"])
    assert "extras" in sections  # use of other optional (billable) services
    assert sections["call"]["notes"] == "Patch 23.4.2 planned."
    mailed = await st.sink.wait_for(lambda m: "follow-up report" in str(m["Subject"]), timeout=10)
    assert "carol@acme.example" in to_of(mailed[0])
    assert any(p.get_content_type() == "text/html" for p in mailed[0].iter_attachments())
    # The programme hears of it (signal) and counts the month done.
    await eventually(lambda: st.status("acme"), lambda x: x.cycles[0].status == "done", "cycle done")


# ---- D4/A2, D5/A3, D8/A7, D9/A8 and the projection ---------------------------------------------------
@pytest.mark.rule("D4", "D5", "A3", "D9", "A8")
async def test_onboarding_documents_and_projection_phase_rules_d4_a2_d5_a3_a8_d9(st: Stack) -> None:
    h, _ = await begin(st, "acme")

    async def row() -> Any:
        async with st.sessions() as session:
            return await get_programme(session, "acme")

    await eventually(row, lambda r: r is not None and r.phase == "onboarding", "projection onboarding")
    s = await complete_onboarding(st, "acme", (await st.now()).astimezone(PARIS).date())
    assert s.phase == Phase.running and all(x.status == StepStatus.done for x in s.steps)
    # The database is the system of record: the projection shows the phase and every step done.
    r = await eventually(row, lambda r: r is not None and r.phase == "running", "projection running")
    assert {x["step"]: x["status"] for x in r.status["steps"]} == {x.step: "done" for x in s.steps}

    async with st.sessions() as session:
        docs = {d.kind: d for d in await list_documents(session, "acme")}
    # D4/A2: the planning meeting's minutes, with the A2 agenda.
    assert docs["kickoff_minutes"].data["agenda_covered"] == A2_AGENDA
    # D5/A3: the communication plan: policies, escalation and reporting processes, procedures.
    plan = docs["communication_plan"].data
    for part in ("communication_policies", "escalation_process", "reporting_process", "procedures"):
        assert plan[part]
    # D9/A8: findings presented to the customer, the GTS addition kept next to the rule-based ones.
    presented = docs["analysis_presentation"].data["findings"]
    assert {f["source"] for f in presented} == {"rules", "gts"}
    told = await st.sink.wait_for(lambda m: "Configuration analysis" in str(m["Subject"]), timeout=10)
    assert "carol@acme.example" in to_of(told[0])
    await settle(st, h)


@pytest.mark.rule("D8", "A7", "A8")
async def test_site_inventory_update_files_a_new_version_and_new_findings_rules_d8_a7_a8(st: Stack) -> None:
    h, _ = await begin(st, "acme")
    today = (await st.now()).astimezone(PARIS).date()
    s = await complete_onboarding(st, "acme", today)
    v1_rules = {f.check_id for f in s.findings if f.source == "rules"}
    assert s.inventory_version == 1

    improved: dict[str, Any] = inventory()["inventory"]  # type: ignore[assignment]
    improved = {**improved, "security": {"tls_min_version": "1.2", "http_enabled": False},
                "web_server": "Tomcat 9.0.85", "storage_network": "FC SAN"}
    # The workflow runs the rules as of its date (UTC): the server's date before or after the Update.
    dates = {(await st.now()).date()}
    s = await upd(h, "update_site_inventory", {"by": "tl-alice", "inventory": improved})
    dates.add((await st.now()).date())
    assert s.inventory_version == 2
    v2_rules = {f.check_id for f in s.findings if f.source == "rules"}
    candidates = [{f.check_id for f in analyse_inventory(SiteInventory.model_validate(improved), d)} for d in dates]
    assert v2_rules in candidates and v2_rules != v1_rules, "rule A8: findings recomputed from the new inventory"
    expected = v2_rules
    assert any(f.source == "gts" for f in s.findings), "the GTS finding stays"

    async with st.sessions() as session:
        inventories = await list_documents(session, "acme", kind="site_inventory")
        findings = await list_documents(session, "acme", kind="configuration_findings")
    # rule D8: one document per version; A7: every inventory item is kept.
    assert [d.version for d in inventories] == [1, 2]
    v2 = inventories[1].data
    assert v2["inventory"]["security"]["tls_min_version"] == "1.2" and v2["inventory"]["storage_network"] == "FC SAN"
    for item in ("servers", "ot_product", "third_party_products", "utilities", "custom_software",
                 "external_file_stores", "database_servers", "network_protocols", "storage_network", "web_server",
                 "security"):
        assert item in v2["inventory"], item
    assert v2["missing_items"] == []
    # rule C11: an inventory (and its analysis) covers one OT product; a second one is an extra (C1).
    assert isinstance(v2["inventory"]["ot_product"], dict) and v2["inventory"]["ot_product"]["name"] == "Content Server"
    latest = [d for d in findings if d.data.get("inventory_version") == 2]
    assert len(latest) == 1 and latest[0].version == 2
    assert {f["check_id"] for f in latest[0].data["findings"] if f["source"] == "rules"} == expected
    await settle(st, h)


# ---- E2, C8, C9, D10, A9, D1-D3, A1: what enrolment records ---------------------------------------
@pytest.mark.rule("C8", "C9", "D10", "A9", "A1")
async def test_enrolment_records_handbook_language_products_and_welcome_rules_e2_c8_c9_a9_d10(st: Stack) -> None:
    h, _ = await begin(st, "acme", products=[{"name": "Content Server", "version": "23.4"},
                                             {"name": "Brava!", "version": "16.6", "third_party": True}])
    await settle(st, h)
    async with st.sessions() as session:
        row = await get_programme(session, "acme")
        docs = await list_documents(session, "acme", kind="welcome")
        ws = await get_workspace(session, "acme")
    s = await st.status("acme")
    assert row is not None
    # rule E2: the handbook version and the acceptance time are recorded on the programme.
    assert row.handbook_version == st.policy.handbook_version == s.handbook_version
    assert row.handbook_accepted_at is not None and s.handbook_accepted_at is not None
    assert abs(row.handbook_accepted_at.replace(tzinfo=None) - s.handbook_accepted_at.replace(tzinfo=None)) \
        < timedelta(seconds=1)
    # rule C8: support is given in English.
    assert row.support_language == "en"
    # rule C9: the products in scope are listed at enrolment (the third-party one too).
    assert [p["name"] for p in row.enrolment["products"]] == ["Content Server", "Brava!"]
    # rule D10/A9: the private workspace exists and holds the welcome document.
    assert ws is not None and ws.status == "active" and s.workspace_id == ws.id
    assert len(docs) == 1
    welcome = docs[0].data
    assert [p["name"] for p in welcome["products"]] == ["Content Server", "Brava!"]
    assert welcome["handbook_version"] == st.policy.handbook_version
    # D1-D3 are continuous deliverables, announced with the others (D1..D10).
    assert [d["id"] for d in welcome["deliverables"]] == [f"D{i}" for i in range(1, 11)]
    assert {d["id"] for d in welcome["deliverables"] if d["frequency"] == "continuous"} == {"D1", "D2", "D3"}
    mail = await st.sink.wait_for(lambda m: "Welcome" in str(m["Subject"]), timeout=10)
    body = mail[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Priority call handling" in body and "Problem management and escalation" in body
    assert "/workspace/acme" in body
    # rule A1/D2: the dedicated TL is told at enrolment, with the steps to do.
    tl = await st.sink.wait_for(lambda m: "alice@support.example" in to_of(m)
                                and "You are Technical Lead" in str(m["Subject"]), timeout=10)
    assert "Schedule the planning and review meeting" in tl[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # The same rules refuse an enrolment before the workflow starts (what the CLI checks).
    start = s.plan.period_start  # type: ignore[union-attr]
    sub = MaintenanceSubscription(id="SMP-acme", customer_id="acme", start=start - timedelta(days=3),
                                  end=start + timedelta(days=800), contact_count=2)
    assert {v.rule for v in check_enrolment(enrolment("acme", start, support_language="fr"), sub,
                                            ProgramPolicy())} == {"C8"}
    assert {v.rule for v in check_enrolment(enrolment("acme", start, products=[]), sub,
                                            ProgramPolicy())} == {"C9"}


@pytest.mark.rule("C5")
async def test_business_calendar_defaults_to_nine_to_five_monday_to_friday_rule_c5(st: Stack) -> None:
    _, s = await begin(st, "acme")
    cal = s.calendar
    assert (cal.day_start, cal.day_end, cal.weekdays) == (time(9), time(17), [1, 2, 3, 4, 5])
    fr = holidays.country_holidays("FR", years=range(s.plan.period_start.year, s.plan.period_end.year + 2))  # type: ignore[union-attr]
    for step in s.steps:
        assert step.due_on is not None and step.due_at is not None and step.remind_at is not None
        # Due at the end of a business day, reminded at the start of one: never a weekend or holiday.
        assert step.due_on.isoweekday() <= 5 and step.due_on not in fr, step
        local_due, local_remind = step.due_at.astimezone(PARIS), step.remind_at.astimezone(PARIS)
        assert local_due.time() == time(17) and local_due.date() == step.due_on
        assert local_remind.time() == time(9) and local_remind.isoweekday() <= 5 and local_remind.date() not in fr


# ---- C14: the renewal invoice ------------------------------------------------------------------------
@pytest.mark.rule("C14")
async def test_renewal_invoice_paid_only_after_the_notice_rule_c14(st: Stack) -> None:
    h, s = await begin(st, "acme", **SHORT_TERM)
    assert s.plan is not None
    paid = {"by": "ops-olga", "invoice_ref": "INV-2027-0042", "paid_on": (await st.now()).date().isoformat()}
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await upd(h, "record_renewal_invoice_paid", paid)
    assert "C14" in str(err.value.cause)

    await st.sleep_until(s.plan.renewal_notice_at + timedelta(hours=1))
    await eventually(lambda: st.status("acme"), lambda x: bool(x.renewal and x.renewal.notice_sent), "notice sent")
    paid["paid_on"] = (await st.now()).date().isoformat()
    # The notice issued the invoice: a payment names it; another number is refused with the open one's.
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await upd(h, "record_renewal_invoice_paid", paid)
    assert "C14" in str(err.value.cause) and "TC-INV-ACME-P2" in str(err.value.cause), err.value.cause
    paid["invoice_ref"] = "TC-INV-ACME-P2"
    s = await upd(h, "record_renewal_invoice_paid", paid)
    assert s.renewal is not None and s.renewal.invoice_ref == "TC-INV-ACME-P2"
    assert s.renewal.invoice is not None and s.renewal.invoice.paid_on == date.fromisoformat(paid["paid_on"])
    assert s.renewal.invoice_paid_on == date.fromisoformat(paid["paid_on"])
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await upd(h, "record_renewal_invoice_paid", paid)
    assert "already recorded paid" in str(err.value.cause)

    async def row() -> Any:
        async with st.sessions() as session:
            return await get_programme(session, "acme")

    r = await eventually(row, lambda r: r.status["renewal"]["invoice_ref"] == "TC-INV-ACME-P2", "invoice projected")
    assert r.phase == "renewal"
