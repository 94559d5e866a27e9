"""Rules checked at enrolment, proved by what the programme does: C1 (additional systems),
C15 (the renewal rise fixed at enrolment), E1 (a refusal that names the dates) and E2 (the
handbook accepted at enrolment, recorded and shown), on the pure check the CLI runs first
and on the real workflow (time-skipping server, real worker, SQLite, SMTP on loopback)."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any, TypeVar

import pytest
from rich.console import Console
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

import cli.programs as cli
from cli import runtime
from domain.enrolment import MaintenanceSubscription, check_enrolment
from domain.errors import EnrolmentRefused
from domain.policy import ProgramPolicy
from domain.program import Phase, ProgramResult
from starter.programs import precheck_enrolment
from storage.repositories import get_programme, list_billable_extras
from tests.harness import Stack, add_subscription, enrolment, eventually

T = TypeVar("T")
POLICY = ProgramPolicy()
# A handbook version no default carries: what the programme records can only come from the policy.
HANDBOOK = "TechConnect handbook FR, OpenText, rev. E2-TEST-7"


@pytest.fixture
def stack_policy() -> ProgramPolicy:
    """`st` (tests/conftest.py) runs with this handbook version."""
    return ProgramPolicy(handbook_version=HANDBOOK)



def covering(start: date, customer: str = "acme") -> MaintenanceSubscription:
    return MaintenanceSubscription(id=f"SMP-{customer}", customer_id=customer, start=start - timedelta(days=30),
                                   end=start + timedelta(days=800), contact_count=2)


async def start_programme(st: Stack, customer: str = "acme", **overrides: Any) -> WorkflowHandle[Any, Any]:
    today = (await st.now()).date()
    await add_subscription(st.sessions, customer, today - timedelta(days=30), today + timedelta(days=800))
    return await st.start(enrolment(customer, today, **overrides))


async def refused_result(st: Stack, h: WorkflowHandle[Any, Any], customer: str = "acme") -> ProgramResult:
    """The result of a run whose enrolment must be refused. Waits for the end of enrolment without
    skipping time (awaiting the result of a running programme would skip through its whole period)."""
    s = await st.wait_enrolled(customer)
    assert s.phase == Phase.refused, f"enrolment not refused: phase {s.phase.value}, extras {s.extras}"
    return ProgramResult.model_validate(await h.result())


async def extras_in_db(st: Stack, customer: str) -> list[Any]:
    async with st.sessions() as session:
        return list(await list_billable_extras(session, customer))


# ---- C1: additional systems ------------------------------------------------------------------------
@pytest.mark.rule("C1")
def test_additional_systems_without_agreement_refused_naming_c1_and_the_field() -> None:
    start = date(2024, 3, 4)  # any date: the check is pure, the subscription covers it
    refused = enrolment("acme", start, additional_systems=["DR cluster", "Archive CS"])
    violations = check_enrolment(refused, covering(start), POLICY)
    assert [(v.rule, v.field) for v in violations] == [("C1", "additional_systems_agreement_ref")], violations
    message = violations[0].message
    assert "2 additional system(s)" in message and "DR cluster" in message and "Archive CS" in message, message
    assert "additional_systems_agreement_ref" in message, "the workflow's refusal shows the message, not the field"

    agreed = enrolment("acme", start, additional_systems=["DR cluster", "Archive CS"],
                       additional_systems_agreement_ref="AGR-SYS-7")
    assert check_enrolment(agreed, covering(start), POLICY) == []
    # A blank reference is no agreement.
    blank = enrolment("acme", start, additional_systems=["DR cluster"], additional_systems_agreement_ref="")
    assert [v.rule for v in check_enrolment(blank, covering(start), POLICY)] == ["C1"]


@pytest.mark.rule("C1")
async def test_cli_precheck_refuses_additional_systems_without_agreement_c1(st: Stack) -> None:
    today = (await st.now()).date()
    await add_subscription(st.sessions, "acme", today - timedelta(days=30), today + timedelta(days=800))
    with pytest.raises(EnrolmentRefused) as refused:
        await precheck_enrolment(st.settings, enrolment("acme", today, additional_systems=["DR cluster"]))
    assert "rule C1 (additional_systems_agreement_ref): 1 additional system(s) (DR cluster)" in str(refused.value)


@pytest.mark.rule("C1")
async def test_workflow_refuses_additional_systems_without_agreement_and_bills_nothing_c1(st: Stack) -> None:
    h = await start_programme(st, additional_systems=["DR cluster"])
    result = await refused_result(st, h)
    assert result.outcome == "refused", result
    assert [(v.rule, v.field) for v in result.refusal] == [("C1", "additional_systems_agreement_ref")]
    assert "DR cluster" in result.refusal[0].message
    assert (await h.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert await extras_in_db(st, "acme") == []


@pytest.mark.rule("C1", "C3")
async def test_each_agreed_additional_system_is_a_billable_extra_c1(st: Stack) -> None:
    await start_programme(st, additional_systems=["DR cluster", "Archive CS"],
                          additional_systems_agreement_ref="AGR-SYS-7")
    await st.wait_enrolled("acme")

    async def extras() -> list[Any]:
        return (await st.status("acme")).extras

    on_programme = await eventually(extras, lambda x: len(x) >= 2, "extras on the programme")
    assert [(x.kind.value, x.rule, x.agreement_ref) for x in on_programme] == [
        ("additional_system", "C1", "AGR-SYS-7"), ("additional_system", "C1", "AGR-SYS-7")]
    assert "DR cluster" in on_programme[0].description and "Archive CS" in on_programme[1].description
    # The billing rows, in the system of record: one per system, for this period, with the agreement.
    rows = await eventually(lambda: extras_in_db(st, "acme"), lambda r: len(r) >= 2, "billable extra rows")
    assert sorted((r.kind, r.rule, r.agreement_ref, r.period) for r in rows) == [
        ("additional_system", "C1", "AGR-SYS-7", 1)] * 2
    assert sorted(r.description.split(" (C1)")[0] for r in rows) == [
        "Additional production system Archive CS", "Additional production system DR cluster"]


@pytest.mark.rule("C1")
async def test_a_programme_without_additional_systems_bills_no_extra_c1(st: Stack) -> None:
    h = await start_programme(st, additional_systems_agreement_ref="AGR-UNUSED")
    await st.wait_enrolled("acme")
    # The welcome mail goes out after the enrolment's extras would have been recorded.
    await st.sink.wait_for(lambda m: "Welcome" in str(m["Subject"]), timeout=15)
    assert (await st.status("acme")).extras == []
    assert await extras_in_db(st, "acme") == []
    assert (await h.describe()).status == WorkflowExecutionStatus.RUNNING


# ---- C15: the renewal rise fixed at enrolment ----------------------------------------------------
@pytest.mark.rule("C15")
def test_renewal_rise_at_enrolment_capped_at_ten_percent_c15() -> None:
    start = date(2024, 3, 4)
    over = check_enrolment(enrolment("acme", start, renewal_price_increase_percent=10.01), covering(start), POLICY)
    assert [(v.rule, v.field) for v in over] == [("C15", "renewal_price_increase_percent")], over
    assert "10.01 %" in over[0].message and "10 % cap" in over[0].message, over[0].message
    assert check_enrolment(enrolment("acme", start, renewal_price_increase_percent=10), covering(start), POLICY) == []
    # The cap is the policy's: a programme started with 5 % refuses 6 %.
    five = POLICY.model_copy(update={"max_price_increase_percent": 5})
    six = check_enrolment(enrolment("acme", start, renewal_price_increase_percent=6), covering(start), five)
    assert [v.rule for v in six] == ["C15"] and "5 % cap" in six[0].message


@pytest.mark.rule("C15")
async def test_workflow_refuses_a_renewal_rise_above_the_cap_at_enrolment_c15(st: Stack) -> None:
    h = await start_programme(st, renewal_price_increase_percent=12.5)
    result = await refused_result(st, h)
    assert result.outcome == "refused"
    assert [v.rule for v in result.refusal] == ["C15"]
    assert "12.5 %" in result.refusal[0].message and "10 % cap" in result.refusal[0].message
    s = await st.status("acme")
    assert s.phase == Phase.refused and "rule C15" in (s.outcome or "")


# ---- E1: a refusal names the dates ---------------------------------------------------------------
@pytest.mark.rule("E1")
async def test_workflow_refusal_for_maintenance_ending_inside_the_period_names_the_dates_e1(st: Stack) -> None:
    today = (await st.now()).date()
    ends = today + timedelta(days=100)
    await add_subscription(st.sessions, "acme", today - timedelta(days=1), ends)
    e = enrolment("acme", today)
    result = await refused_result(st, await st.start(e))
    assert result.outcome == "refused" and [v.rule for v in result.refusal] == ["E1"]
    message = result.refusal[0].message
    assert f"ends on {ends}" in message and f"the period {today} to {e.period_end}" in message, message
    s = await st.status("acme")
    assert s.phase == Phase.refused and f"ends on {ends}" in (s.outcome or "")


# ---- E2: the handbook accepted at enrolment ---------------------------------------------------------
@pytest.mark.rule("E2")
async def test_handbook_version_and_acceptance_recorded_at_enrolment_and_shown_e2(
    st: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await st.now()
    await start_programme(st)
    s = await st.wait_enrolled("acme")
    after = await st.now()
    # The version is the policy the programme was started with; accepted when the enrolment passed.
    assert s.handbook_version == HANDBOOK
    assert s.handbook_accepted_at is not None
    assert before - timedelta(seconds=1) <= s.handbook_accepted_at <= after + timedelta(seconds=1), (
        before, s.handbook_accepted_at, after)

    async def row() -> Any:
        async with st.sessions() as session:
            return await get_programme(session, "acme")

    r = await eventually(row, lambda r: r is not None and r.handbook_accepted_at is not None, "projection E2")
    assert r.handbook_version == HANDBOOK
    assert abs(r.handbook_accepted_at.replace(tzinfo=None) - s.handbook_accepted_at.replace(tzinfo=None)) \
        < timedelta(seconds=1)

    # Shown: `techconnect program status acme`, human and --json.
    async def client_for(_settings: Any) -> Any:
        return st.client

    buffer = io.StringIO()
    monkeypatch.setattr(runtime, "client_for", client_for)
    monkeypatch.setattr(runtime, "out", Console(file=buffer, width=300, color_system=None))
    await cli.program_status.__wrapped__("acme", as_json=False)  # type: ignore[attr-defined]
    shown = buffer.getvalue()
    assert f"handbook: {HANDBOOK}; accepted {s.handbook_accepted_at.isoformat()} (E2)" in shown, shown
    await cli.program_status.__wrapped__("acme", as_json=True)  # type: ignore[attr-defined]
    printed = capsys.readouterr().out
    assert HANDBOOK in printed and s.handbook_accepted_at.isoformat() in printed.replace("Z", "+00:00")

    # And told to the contacts: the welcome mail names the version they accepted.
    welcome = await st.sink.wait_for(lambda m: "Welcome" in str(m["Subject"]), timeout=15)
    assert HANDBOOK in welcome[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]


@pytest.mark.rule("E2")
async def test_a_refused_enrolment_accepts_no_handbook_e2(st: Stack) -> None:
    h = await start_programme(st, term_months=18)  # rule C2: no written agreement
    assert (await refused_result(st, h)).outcome == "refused"
    s = await st.status("acme")
    assert s.handbook_accepted_at is None, "nothing was bought or started: no acceptance"
