"""Rules of a running programme, proved through its Updates, signals and support requests on the
time-skipping server (real worker, SQLite, SMTP on loopback): A2 (the kickoff agenda as the person
holding it says, uncovered items flagged), A7 (an incomplete site inventory refused, naming the item),
C11 (inventory and analysis cover the programme's systems; another one needs the C1 agreement),
C6/C3 (optional TL coverage billed under its agreement), D1 (priority handling of every request) and
D2 (the programme's dedicated TL gets its requests, and the next TL after a reassignment)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import holidays
import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from domain.inventory import SiteInventory, check_site_inventory
from domain.naming import SA_TECHNICAL_LEAD, request_workflow_id
from domain.program import ProgramStatus
from domain.request import NewRequest, RequestState, RequestStatus
from domain.step_inputs import A2_AGENDA, StepStatus, agenda_not_covered, check_kickoff_agenda
from starter.requests import open_request
from storage.repositories import list_billable_extras, list_documents
from tests.harness import Stack, add_subscription, enrolment, eventually

PARIS = ZoneInfo("Europe/Paris")
UTC = ZoneInfo("UTC")
T = TypeVar("T")



async def begin(st: Stack, customer: str = "acme", **overrides: Any) -> WorkflowHandle[Any, Any]:
    """A programme whose period starts today (server time), its maintenance covering it (E1)."""
    today = (await st.now()).astimezone(PARIS).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=30), today + timedelta(days=800))
    h = await st.start(enrolment(customer, today, **overrides))
    await st.wait_enrolled(customer)
    return h


async def upd(h: WorkflowHandle[Any, Any], name: str, payload: dict[str, Any]) -> ProgramStatus:
    result: ProgramStatus = await h.execute_update(name, {"by": "tl-alice", **payload}, result_type=ProgramStatus)
    return result


async def refusal(h: WorkflowHandle[Any, Any], name: str, payload: dict[str, Any]) -> str:
    """The refusal message of an Update that must be refused, with its causes (a payload the model
    refuses fails as "Failed decoding arguments", caused by the pydantic error naming the field)."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await upd(h, name, payload)
    messages: list[str] = []
    cause: BaseException | None = err.value.cause
    while cause is not None:
        messages.append(str(cause))
        cause = getattr(cause, "cause", None)
    return " <- ".join(messages)


async def schedule_kickoff(st: Stack, h: WorkflowHandle[Any, Any]) -> date:
    held_on = (await st.now()).astimezone(PARIS).date() + timedelta(days=3)
    await upd(h, "schedule_kickoff", {"meeting_at": datetime.combine(held_on, time(10), PARIS).isoformat()})
    return held_on


def kickoff(held_on: date, **extra: Any) -> dict[str, Any]:
    return {"held_on": held_on.isoformat(), "attendees": ["Alice Martin", "Carol Diaz"],
            "minutes": "Reviewed the year; planned the inventory.", **extra}


async def documents(st: Stack, customer: str, kind: str) -> list[Any]:
    async with st.sessions() as session:
        return list(await list_documents(session, customer, kind=kind))


async def extras_in_db(st: Stack, customer: str) -> list[Any]:
    async with st.sessions() as session:
        return list(await list_billable_extras(session, customer))


def full_inventory(**changes: Any) -> dict[str, Any]:
    """Every item annex A7 asks for (third-party products, utilities, custom software and a storage
    network are listed where there are any: this site has none)."""
    inv: dict[str, Any] = {
        "servers": [{"hostname": "cs-fe-01", "role": "front-end", "memory_gb": 32, "os_name": "Windows Server",
                     "os_version": "2022"}],
        "ot_product": {"name": "Content Server", "version": "24.4", "patch_level": "2025-04"},
        "database_servers": [{"engine": "SQL Server", "version": "2022", "hostname": "db-01"}],
        "external_file_stores": ["\\\\nas01\\efs"], "network_protocols": ["HTTPS", "SMB 3"],
        "web_server": "Tomcat 10.1.24", "security": {"tls_min_version": "1.2"},
    }
    inv.update(changes)
    return inv


# ---- A2: the planning and review meeting ----------------------------------------------------------
@pytest.mark.rule("A2")
def test_agenda_items_not_covered_are_the_rest_of_the_a2_agenda_in_order() -> None:
    covered = [A2_AGENDA[3], A2_AGENDA[0].upper()]  # any order, any case
    assert agenda_not_covered(covered) == [a for i, a in enumerate(A2_AGENDA) if i not in (0, 3)]
    assert agenda_not_covered(list(A2_AGENDA)) == []
    assert agenda_not_covered([]) == A2_AGENDA
    assert check_kickoff_agenda(list(A2_AGENDA)) == []
    [v] = check_kickoff_agenda(["review of the past year's activity", "golf"])
    assert (v.rule, v.field) == ("A2", "agenda_covered") and "'golf'" in v.message and A2_AGENDA[6] in v.message


@pytest.mark.rule("A2", "D4")
async def test_kickoff_agenda_comes_from_the_minutes_and_uncovered_items_are_flagged_a2(st: Stack) -> None:
    h = await begin(st)
    held_on = await schedule_kickoff(st, h)
    covered = [A2_AGENDA[0], A2_AGENDA[2], A2_AGENDA[4]]
    uncovered = [a for a in A2_AGENDA if a not in covered]

    # An item that is not on the A2 agenda is refused, naming it; the step stays open.
    message = await refusal(h, "complete_kickoff", kickoff(held_on, agenda_covered=[*covered, "lunch"]))
    assert "rule A2" in message and "'lunch'" in message, message
    assert (await st.status("acme")).step("complete_kickoff").status == StepStatus.open  # type: ignore[union-attr]

    s = await upd(h, "complete_kickoff", kickoff(held_on, agenda_covered=covered))
    assert s.step("complete_kickoff").status == StepStatus.done  # type: ignore[union-attr]
    # The meeting "may cover" each item (handbook): what it left out is flagged, not refused.
    assert s.kickoff_agenda_not_covered == uncovered
    [minutes] = await eventually(lambda: documents(st, "acme", "kickoff_minutes"), lambda d: len(d) == 1,
                                 "kickoff minutes filed")
    assert minutes.data["agenda_covered"] == covered
    assert minutes.data["agenda_not_covered"] == uncovered
    # The customer reads the flag in the filed minutes, not only in the data behind them.
    for body in (minutes.body_text, minutes.body_html):
        shown = body.lower().partition("not covered (a2)")[2]
        assert shown and all(item in shown.replace("&#39;", "'") for item in uncovered), body


@pytest.mark.rule("A2")
async def test_minutes_that_state_no_agenda_cover_nothing_a2(st: Stack) -> None:
    """Nothing is assumed covered: minutes without `agenda_covered` flag the whole agenda."""
    h = await begin(st)
    held_on = await schedule_kickoff(st, h)
    s = await upd(h, "complete_kickoff", kickoff(held_on))
    assert s.kickoff_agenda_not_covered == A2_AGENDA
    [minutes] = await eventually(lambda: documents(st, "acme", "kickoff_minutes"), lambda d: len(d) == 1,
                                 "kickoff minutes filed")
    assert minutes.data["agenda_covered"] == [] and minutes.data["agenda_not_covered"] == A2_AGENDA


@pytest.mark.rule("A2")
async def test_signal_route_refuses_an_unknown_agenda_item_like_the_update_a2(st: Stack) -> None:
    h = await begin(st)
    held_on = await schedule_kickoff(st, h)
    await h.signal("complete_step", {"step": "complete_kickoff", "by": "tl-alice",
                                     "payload": kickoff(held_on, agenda_covered=["golf"])})
    async def rejections() -> list[Any]:
        s = await st.status("acme")
        return [(r.step, r.reason, s.step("complete_kickoff").status.value) for r in s.rejections]  # type: ignore[union-attr]

    [(step, reason, status)] = await eventually(rejections, lambda r: len(r) >= 1, "signal rejected")
    assert step == "complete_kickoff" and "rule A2" in reason and "'golf'" in reason, reason
    assert status == "open"


# ---- A7: the site inventory ------------------------------------------------------------------------
A7_ITEMS = [
    # (what is left out, the item the refusal names)
    ({"servers": []}, "hardware and operating system (servers)"),
    ({"servers": [{"hostname": "cs-fe-01", "role": "front-end"}]}, "operating system of cs-fe-01"),
    ({"ot_product": None}, "OT product"),
    ({"database_servers": []}, "database servers"),
    ({"network_protocols": []}, "network protocols"),
    ({"web_server": " "}, "web server"),
    ({"external_file_stores": []}, "external file stores"),
    ({"security": {}}, "security settings (minimum TLS version)"),
]


@pytest.mark.rule("A7")
@pytest.mark.parametrize(("left_out", "item"), A7_ITEMS, ids=[i for _, i in A7_ITEMS])
def test_an_inventory_missing_an_a7_item_is_refused_naming_it(left_out: dict[str, Any], item: str) -> None:
    inv = SiteInventory.model_validate(full_inventory(**left_out))
    violations = check_site_inventory(inv, "CS production", [])
    assert [v.rule for v in violations] == ["A7"], violations
    assert violations[0].message == f"the site inventory does not list the {item}"


@pytest.mark.rule("A7")
def test_an_inventory_with_every_a7_item_is_accepted() -> None:
    assert check_site_inventory(SiteInventory.model_validate(full_inventory()), "CS production", []) == []
    # Where there are any: third-party products, utilities, custom software and a storage network.
    listed = full_inventory(third_party_products=[{"name": "Brava!", "version": "24.4"}], utilities=["OTDS 24.4"],
                            custom_software=["invoice importer"], storage_network="FC SAN")
    assert check_site_inventory(SiteInventory.model_validate(listed), "CS production", []) == []


@pytest.mark.rule("A7", "D8")
async def test_submit_and_update_refuse_an_inventory_missing_an_item_a7(st: Stack) -> None:
    h = await begin(st)
    await upd(h, "complete_kickoff", kickoff(await schedule_kickoff(st, h), agenda_covered=list(A2_AGENDA)))

    message = await refusal(h, "submit_site_inventory",
                            {"inventory": full_inventory(web_server="", database_servers=[])})
    assert "rule A7" in message and "database servers" in message and "web server" in message, message
    s = await st.status("acme")
    assert s.step("submit_site_inventory").status == StepStatus.open and s.inventory_version == 0  # type: ignore[union-attr]

    s = await upd(h, "submit_site_inventory", {"inventory": full_inventory()})
    assert s.inventory_version == 1 and s.inventory is not None
    # D8: updatable all period, but never into an incomplete inventory.
    message = await refusal(h, "update_site_inventory", {"inventory": full_inventory(external_file_stores=[])})
    assert "rule A7" in message and "external file stores" in message, message
    s = await st.status("acme")
    assert s.inventory_version == 1 and s.inventory is not None and s.inventory.external_file_stores
    await eventually(lambda: documents(st, "acme", "site_inventory"), lambda d: [x.version for x in d] == [1],
                     "only the accepted inventory is filed")


# ---- C11: inventory and analysis cover the programme's systems ------------------------------------------
DR_SERVER = {"hostname": "dr-01", "role": "front-end", "memory_gb": 32, "os_name": "Windows Server",
             "os_version": "2012 R2", "system": "DR cluster"}


@pytest.mark.rule("C11")
def test_a_server_of_a_system_outside_the_programme_is_refused_c11() -> None:
    inv = SiteInventory.model_validate(full_inventory(servers=[*full_inventory()["servers"], DR_SERVER]))
    [v] = check_site_inventory(inv, "CS production", [])
    assert v.rule == "C11" and "dr-01" in v.message and "'DR cluster'" in v.message and "C1" in v.message
    assert check_site_inventory(inv, "CS production", ["dr cluster"]) == []  # agreed at enrolment
    # A server of the primary system, named or not, is always covered.
    named = full_inventory(servers=[{**full_inventory()["servers"][0], "system": "CS production"}])
    assert check_site_inventory(SiteInventory.model_validate(named), "CS production", []) == []


@pytest.mark.rule("C11", "C1")
async def test_inventory_and_analysis_of_an_additional_system_need_its_agreement_c11(st: Stack) -> None:
    """The DR cluster is inventoried and analysed where it was agreed (and billed) at enrolment; a
    programme that did not buy it cannot slip it into its inventory."""
    with_dr = await begin(st, "acme", additional_systems=["DR cluster"], additional_systems_agreement_ref="AGR-DR-1")
    without = await begin(st, "beta")
    inventory = {"inventory": full_inventory(servers=[*full_inventory()["servers"], DR_SERVER])}
    for h in (with_dr, without):
        await upd(h, "complete_kickoff", kickoff(await schedule_kickoff(st, h), agenda_covered=list(A2_AGENDA)))

    message = await refusal(without, "submit_site_inventory", inventory)
    assert "rule C11" in message and "dr-01" in message and "'DR cluster'" in message, message
    assert (await st.status("beta")).inventory_version == 0

    s = await upd(with_dr, "submit_site_inventory", inventory)
    assert s.inventory_version == 1
    # The configuration analysis covers the additional system too: its old OS is a finding.
    assert any(f.check_id == "CFG-008" and "dr-01" in f.detail for f in s.findings), s.findings
    # ... which the programme pays for: the agreed system is a billable extra of the period (C1).
    rows = await eventually(lambda: extras_in_db(st, "acme"), lambda r: len(r) >= 1, "the system billed")
    assert [(r.kind, r.rule, r.agreement_ref) for r in rows] == [("additional_system", "C1", "AGR-DR-1")]
    assert "DR cluster" in rows[0].description and "C11" in rows[0].description
    assert await extras_in_db(st, "beta") == []


# ---- C6 (and C3): optional coverage by the TL ----------------------------------------------------------
@pytest.mark.rule("C6", "C3")
async def test_optional_tl_coverage_is_billed_with_its_agreement_and_refused_without_c6(st: Stack) -> None:
    h = await begin(st)
    coverage = {"by": "ops-olga", "kind": "optional_coverage", "description": "TL on call for the weekend migration",
                "amount": {"amount": "2400.00", "currency": "EUR"}, "override_reason": "weekend rate in AGR-COV-3"}

    missing = await refusal(h, "record_billable_extra", coverage)
    assert "RecordBillableExtra" in missing and "agreement_ref" in missing and "Field required" in missing, missing
    blank = await refusal(h, "record_billable_extra", {**coverage, "agreement_ref": "   "})
    assert "rule C3" in blank and "rule C6" in blank and "agreement_ref" in blank, blank
    assert (await st.status("acme")).extras == []

    s = await upd(h, "record_billable_extra", {**coverage, "agreement_ref": "AGR-COV-3"})
    assert [(x.kind.value, x.rule, x.agreement_ref, x.recorded_by) for x in s.extras] == [
        ("optional_coverage", "C6", "AGR-COV-3", "ops-olga")]
    rows = await eventually(lambda: extras_in_db(st, "acme"), lambda r: len(r) == 1, "one billable extra row")
    assert (rows[0].kind, rows[0].rule, rows[0].agreement_ref, str(rows[0].amount), rows[0].period) == (
        "optional_coverage", "C6", "AGR-COV-3", "2400.00", 1)
    assert rows[0].description == "TL on call for the weekend migration"


# ---- D1, D2: priority handling of requests, by the programme's dedicated TL -----------------------------
def next_business_day(after: datetime) -> date:
    """The next Monday-Thursday after `after` (Paris), with no French holiday on it or the day after."""
    days = holidays.country_holidays("FR", years=range(after.year, after.year + 2))
    d = after.astimezone(PARIS).date() + timedelta(days=1)
    while d.isoweekday() > 4 or d in days or d + timedelta(days=1) in days:
        d += timedelta(days=1)
    return d


async def file_request(st: Stack, at: datetime, priority: str) -> tuple[str, RequestStatus]:
    """File a request the way the CLI and the portal do (starter.requests.open_request), at `at`."""
    await st.sleep_until(at)
    settings = st.settings.model_copy(update={"task_queue": st.task_queue})
    new = NewRequest.model_validate({"customer_id": "acme", "kind": "support", "priority": priority,
                                     "summary": f"{priority} issue", "filed_by": "carol"})
    number = await open_request(st.client, settings, new, now=at, sessions=st.sessions)
    h = st.client.get_workflow_handle(request_workflow_id(number))

    async def status() -> RequestStatus:
        result: RequestStatus = await h.query("get_status", result_type=RequestStatus)
        return result

    s = await eventually(status, lambda x: x.first_response_deadline is not None, f"{number} clock set")
    return number, s


async def request_tl(st: Stack, number: str) -> str | None:
    desc = await st.client.get_workflow_handle(request_workflow_id(number)).describe()
    return desc.typed_search_attributes.get(SA_TECHNICAL_LEAD)


@pytest.mark.rule("D1", "D2", "A1", "C7")
async def test_requests_get_the_priority_clock_and_go_to_the_programmes_current_tl_d1_d2(st: Stack) -> None:
    h = await begin(st)
    day = next_business_day(await st.now())
    first_at = datetime.combine(day, time(10), PARIS).astimezone(UTC)

    # D1: a low-priority request gets the same one-business-hour first response as any other.
    low, s = await file_request(st, first_at, "low")
    assert s.state == RequestState.open and s.first_response_deadline == first_at + timedelta(hours=1)
    # D2: the programme's dedicated TL is the request's TL, told at once.
    told = await st.sink.wait_for(lambda m: low in str(m["Subject"]) and "New low" in str(m["Subject"]), timeout=10)
    assert str(told[0]["To"]) == "alice@support.example", told[0]["To"]
    assert await request_tl(st, low) == "tl-alice"

    bob = {"id": "tl-bob", "name": "Bob Ferreira", "email": "bob.ferreira@support.example"}
    await upd(h, "reassign_technical_lead", {"by": "ops-olga", "technical_lead": bob, "reason": "rota"})
    second_at = first_at + timedelta(minutes=30)
    critical, s = await file_request(st, second_at, "critical")
    assert s.first_response_deadline == second_at + timedelta(hours=1)
    told = await st.sink.wait_for(lambda m: critical in str(m["Subject"]), timeout=10)
    assert str(told[0]["To"]) == "bob.ferreira@support.example", told[0]["To"]
    assert "Hello Bob Ferreira" in told[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert await request_tl(st, critical) == "tl-bob"
    # Alice heard of her request only.
    to_alice = [str(m["Subject"]) for m in st.mails(to="alice@support.example") if "request" in str(m["Subject"])]
    assert len(to_alice) == 1 and low in to_alice[0], to_alice
