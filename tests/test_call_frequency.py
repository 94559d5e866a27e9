"""Rule C10: one follow-up call and one report a month are included unless another frequency is agreed
(with its agreement reference); a call or report beyond the agreed ones is a billable extra.

Pure: the cycles a period gets at a frequency (`plan_cycles`, `replan_cycles`, `cycle_bounds`) and the
enrolment check. On the time-skipping server: a quarterly programme (4 cycles, each covering its
quarter and reporting on it), another frequency agreed for the coming months (`agree_call_frequency`),
and an extra report billed once however often it is sent, retried or replayed."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from activities.db import DatabaseActivities
from domain.activities import ExtraRecord
from domain.calendar import add_months, period_end_date
from domain.cycle import CycleStatus
from domain.enrolment import MaintenanceSubscription, check_enrolment
from domain.naming import monthly_cycle_workflow_id
from domain.policy import ProgramPolicy
from domain.program import CycleSummary, PeriodPlan, Phase, ProgramResult, ProgramStatus
from domain.rules_cycle import check_call_frequency_change, cycle_bounds, plan_cycles, replan_cycles
from domain.step_inputs import AgreeCallFrequency
from storage.repositories import list_billable_extras, list_documents
from testing.enrolment import enrolment
from tests.clock import settled
from tests.cycles import drafted
from tests.harness import Stack, add_subscription, eventually
from tests.test_cli_offline import START, Offline, enrolment_doc, registry, run  # noqa: F401 (run: the fixture)
from tests.test_program_lifecycle import run_cycle
from tests.test_program_refusals import assert_no_trace
from tests.test_program_timing import begin, cycle_status, first_cycle_running
from worker import workflow_runner
from workflows.monthly_cycle import MonthlyCycleWorkflow

PARIS = ZoneInfo("Europe/Paris")


# ---- pure: the cycles of a period ---------------------------------------------------------------------
def plan_of(period_start: date, term_months: int = 12) -> PeriodPlan:
    """A period's plan as the calendar activity makes it (the instants at 09:00 UTC: any hour does)."""
    starts = [add_months(period_start, i) for i in range(term_months)]
    end = period_end_date(period_start, term_months)

    def at(d: date) -> datetime:
        return datetime.combine(d, time(9), UTC)

    return PeriodPlan(period=1, period_start=period_start, period_end=end, period_start_at=at(period_start),
                      period_end_at=datetime.combine(end + timedelta(days=1), time(0), UTC),
                      renewal_notice_on=end - timedelta(days=100), renewal_notice_at=at(end - timedelta(days=100)),
                      non_renewal_deadline=end - timedelta(days=90),
                      non_renewal_deadline_end_at=at(end - timedelta(days=90)),
                      non_renewal_reminder_on=end - timedelta(days=104),
                      non_renewal_reminder_at=at(end - timedelta(days=104)),
                      month_starts=starts, month_start_ats=[at(d) for d in starts])


@pytest.mark.rule("C10")
def test_monthly_gives_exactly_the_cycles_the_programme_always_had() -> None:
    plan = plan_of(date(2027, 1, 15))
    cycles = plan_cycles("acme", 1, plan, 1)
    # What ProgramWorkflow.run built before rule C10's frequency: running programmes replay unchanged.
    assert cycles == [CycleSummary(month=i + 1, starts_on=d, workflow_id=monthly_cycle_workflow_id("acme", 1, i + 1))
                      for i, d in enumerate(plan.month_starts)]
    bounds = [cycle_bounds(plan, c) for c in cycles]
    assert [b[0] for b in bounds] == plan.month_start_ats
    assert [b[1] for b in bounds] == [s - timedelta(days=1) for s in plan.month_starts[1:]] + [plan.period_end]
    assert [b[2] for b in bounds] == [*plan.month_start_ats[1:], plan.period_end_at]


@pytest.mark.rule("C10")
def test_quarterly_gives_four_cycles_of_three_months_and_a_shorter_last_one_when_it_does_not_divide() -> None:
    plan = plan_of(date(2027, 1, 15))
    quarterly = plan_cycles("acme", 1, plan, 3)
    assert [(c.month, c.months, c.starts_on) for c in quarterly] == [
        (1, 3, date(2027, 1, 15)), (4, 3, date(2027, 4, 15)), (7, 3, date(2027, 7, 15)), (10, 3, date(2027, 10, 15))]
    assert [cycle_bounds(plan, c)[1] for c in quarterly] == [
        date(2027, 4, 14), date(2027, 7, 14), date(2027, 10, 14), date(2028, 1, 14)]
    assert cycle_bounds(plan, quarterly[-1])[2] == plan.period_end_at
    # Our decision: a frequency that does not divide the term is accepted, the last cycle is shorter.
    five = plan_cycles("acme", 1, plan, 5)
    assert [(c.month, c.months) for c in five] == [(1, 5), (6, 5), (11, 2)]
    assert cycle_bounds(plan, five[-1])[1:] == (plan.period_end, plan.period_end_at)
    assert [(c.month, c.months) for c in plan_cycles("acme", 1, plan, 12)] == [(1, 12)]


@pytest.mark.rule("C10")
def test_replanning_keeps_the_started_cycles_and_plans_from_the_first_month_they_leave() -> None:
    plan = plan_of(date(2027, 1, 1))
    cycles = plan_cycles("acme", 1, plan, 1)
    cycles[0].status, cycles[1].status = "done", "running"
    quarterly = replan_cycles(cycles, "acme", 1, plan, 3)
    assert quarterly[:2] == cycles[:2]
    assert [(c.month, c.months, c.status) for c in quarterly] == [
        (1, 1, "done"), (2, 1, "running"), (3, 3, "scheduled"), (6, 3, "scheduled"), (9, 3, "scheduled"),
        (12, 1, "scheduled")]
    assert quarterly[2].workflow_id == "program-acme-p1-m03"
    quarterly[2].status = "running"  # months 3 to 5 started: monthly again from month 6
    assert [(c.month, c.months) for c in replan_cycles(quarterly, "acme", 1, plan, 1)] == [
        (1, 1), (2, 1), (3, 3), (6, 1), (7, 1), (8, 1), (9, 1), (10, 1), (11, 1), (12, 1)]


def enrolment_for(months: int, ref: str | None = None, term_months: int = 12) -> Any:
    return enrolment("acme", date(2027, 1, 4), call_frequency_months=months, call_frequency_agreement_ref=ref,
                     term_months=term_months, written_agreement_ref="AGR-TERM" if term_months != 12 else None)


@pytest.mark.rule("C10")
def test_enrolment_refuses_another_frequency_without_its_agreement() -> None:
    sub = MaintenanceSubscription(id="SMP-acme", customer_id="acme", start=date(2026, 1, 1), end=date(2030, 1, 1))
    policy = ProgramPolicy()
    refused = check_enrolment(enrolment_for(3), sub, policy)
    assert [(v.rule, v.field) for v in refused] == [("C10", "call_frequency_agreement_ref")]
    assert "every 3 months" in refused[0].message
    assert check_enrolment(enrolment_for(3, "  "), sub, policy)[0].rule == "C10"  # blank is no reference
    assert check_enrolment(enrolment_for(3, "AGR-Q-1"), sub, policy) == []
    assert check_enrolment(enrolment_for(1), sub, policy) == []  # monthly: the handbook's default
    assert check_enrolment(enrolment_for(5, "AGR-5", term_months=12), sub, policy) == []  # shorter last cycle
    with pytest.raises(ValueError, match="call_frequency_months"):
        enrolment_for(13, "AGR")  # at most yearly


@pytest.mark.rule("C10")
def test_agreeing_a_frequency_needs_a_live_programme_and_the_agreement() -> None:
    e = enrolment_for(1)
    status = ProgramStatus(customer_id="acme", customer_name="Acme", workflow_id="program-acme", period=1,
                           phase=Phase.running, calendar=e.calendar, technical_lead=e.technical_lead,
                           annual_fee=e.annual_fee)
    agree = AgreeCallFrequency(by="ops", months=3, agreement_ref="AGR-Q")
    assert check_call_frequency_change(status, agree, period_over=False) == []
    blank = check_call_frequency_change(status, agree.model_copy(update={"agreement_ref": " "}), False)
    assert [(v.rule, v.field) for v in blank] == [("C10", "agreement_ref")]
    over = check_call_frequency_change(status, agree, period_over=True)
    assert over[0].rule == "C10" and "period 1 has ended" in over[0].message
    for phase in (Phase.enrolling, Phase.refused, Phase.closed):
        refused = check_call_frequency_change(status.model_copy(update={"phase": phase}), agree, False)
        assert refused[0].rule == "C10" and phase.value in refused[0].message


# ---- the command line -------------------------------------------------------------------------------
@pytest.mark.rule("C10")
def test_the_cli_refuses_a_frequency_without_its_agreement_before_connecting(run: Offline) -> None:  # noqa: F811
    registry(run, f"SMP-acme,acme,{START - timedelta(days=1)},{START + timedelta(days=800)},2")
    start = run("program", "start", "--file", str(run.write("q.json", enrolment_doc(call_frequency_months=3))))
    assert start.exit_code == 2 and "rule C10" in start.stderr, start.output
    assert "call_frequency_agreement_ref" in start.stderr
    blank = run("program", "call-frequency", "acme", "--months", "3", "--agreement-ref", " ")
    assert blank.exit_code == 2 and "rule C10" in blank.stderr, blank.output
    too_long = run("program", "call-frequency", "acme", "--months", "13", "--agreement-ref", "AGR")
    assert too_long.exit_code == 2
    report = run("step", "extra-report", "acme", "--on", "not-a-day", "--description", "d", "--agreement-ref", "A",
                 "--by", "tl-alice")
    assert report.exit_code == 2 and "not a date" in report.stderr


# ---- on the time-skipping server --------------------------------------------------------------------
async def today(st: Stack) -> date:
    return (await st.now()).astimezone(PARIS).date()


async def not_started(st: Stack, workflow_id: str) -> bool:
    try:
        await st.client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return False


@pytest.mark.rule("C10", "D6", "D7")
async def test_a_quarterly_programme_has_four_cycles_each_covering_and_reporting_on_its_quarter(st: Stack) -> None:
    handle, s = await begin(st, "acme", call_frequency_months=3, call_frequency_agreement_ref="AGR-Q-2027")
    assert s.plan is not None
    plan = s.plan
    assert (s.call_frequency_months, s.call_frequency_agreement_ref) == (3, "AGR-Q-2027")
    assert [(c.month, c.months, c.starts_on) for c in s.cycles] == [
        (m, 3, plan.month_starts[m - 1]) for m in (1, 4, 7, 10)]

    for n, c in enumerate(s.cycles):
        first = c.month - 1
        await st.sleep_until(plan.month_start_ats[first] + timedelta(hours=2))
        await settled(handle, st.env)  # the month start handled: the cycle is started or not, no race
        now = await st.status("acme")
        assert [x.status for x in now.cycles][n] == "running", now.cycles
        assert all(x.status == "scheduled" for x in now.cycles[n + 1:]), now.cycles
        cs = await cycle_status(st, c.workflow_id)
        last = plan.month_starts[first + 3] - timedelta(days=1) if first + 3 < 12 else plan.period_end
        assert (cs.month_start, cs.month_end) == (plan.month_starts[first], last)
        if n == 0:
            # The quarter's second and third months start no cycle of their own.
            for month in (2, 3):
                await st.sleep_until(plan.month_start_ats[month - 1] + timedelta(hours=2))
                await settled(handle, st.env)
                assert await not_started(st, monthly_cycle_workflow_id("acme", 1, month))
            # Work done in the quarter's third month is in the quarter's report (its data spans the quarter).
            await handle.execute_update("schedule_kickoff", {
                "by": "tl-alice", "meeting_at": (await st.now() + timedelta(days=2)).isoformat()},
                result_type=ProgramStatus)
            await settled(handle, st.env)  # the projection the report reads is saved
        done = await run_cycle(st, c.workflow_id, c.starts_on)
        assert done.done and done.report_document_id is not None

    async with st.sessions() as session:
        reports = await list_documents(session, "acme", kind="monthly_report")
    spans = [(r.data["month_start"], r.data["month_end"]) for r in sorted(reports, key=lambda r: r.id)]
    assert spans == [(plan.month_starts[m - 1].isoformat(),
                      (plan.month_starts[m + 2] - timedelta(days=1) if m + 2 < 12 else plan.period_end).isoformat())
                     for m in (1, 4, 7, 10)]
    first_report = min(reports, key=lambda r: r.id)
    done_in_quarter = first_report.data["sections"]["deliverables"]["done_this_month"]
    assert "Schedule the planning and review meeting" in done_in_quarter
    mailed = await st.sink.wait_for(lambda m: "follow-up report" in str(m["Subject"]), count=4, timeout=30)
    assert len(mailed) == 4
    assert " to " in str(mailed[0]["Subject"])  # e.g. "January 2028 to March 2028"
    await settled(handle, st.env)
    # The last quarter's report is drafted after the period ended (D7): the four cycles are asked themselves.
    assert [(await cycle_status(st, c.workflow_id)).done for c in s.cycles] == [True] * 4

    # The agreement carries into the next period (its enrolment is this one's, continued as new).
    await st.sleep_until(plan.period_end_at + timedelta(hours=1))
    renewed = await eventually(lambda: st.status("acme"), lambda x: x.period == 2, "the next period", timeout=30)
    assert renewed.period == 2, renewed.outcome
    assert (renewed.call_frequency_months, renewed.call_frequency_agreement_ref) == (3, "AGR-Q-2027")
    assert [(c.month, c.months, c.workflow_id) for c in renewed.cycles] == [
        (m, 3, monthly_cycle_workflow_id("acme", 2, m)) for m in (1, 4, 7, 10)]


@pytest.mark.rule("C10")
async def test_a_quarterly_enrolment_without_its_agreement_is_refused_by_the_workflow(st: Stack) -> None:
    start = await today(st)
    await add_subscription(st.sessions, "acme", start - timedelta(days=30), start + timedelta(days=800))
    handle = await st.start(enrolment("acme", start, call_frequency_months=3))
    result = ProgramResult.model_validate(await handle.result())
    assert result.outcome == "refused"
    assert [(v.rule, v.field) for v in result.refusal] == [("C10", "call_frequency_agreement_ref")]


@pytest.mark.rule("C10")
async def test_another_frequency_agreed_changes_the_coming_cycles_only(st: Stack) -> None:
    s, first = await first_cycle_running(st, "acme")
    assert s.plan is not None
    plan = s.plan
    handle = st.client.get_workflow_handle(s.workflow_id)

    async def agree(months: int, ref: str) -> ProgramStatus:
        result: ProgramStatus = await handle.execute_update(
            "agree_call_frequency", {"by": "ops-olga", "months": months, "agreement_ref": ref, "reason": "asked"},
            result_type=ProgramStatus)
        return result

    before = (await settled(handle, st.env)).events
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await agree(3, "  ")
    assert "rule C10" in str(refused.value.cause) and "agreement_ref" in str(refused.value.cause)
    await assert_no_trace(handle, before)

    quarterly = await agree(3, "AGR-Q-7")
    assert (quarterly.call_frequency_months, quarterly.call_frequency_agreement_ref) == (3, "AGR-Q-7")
    # Month 1's cycle runs on as it started; months 2 to 12 are planned again, a quarter each, the last shorter.
    assert quarterly.cycles[0] == s.cycles[0].model_copy(update={"status": "running"})
    assert [(c.month, c.months, c.status) for c in quarterly.cycles] == [
        (1, 1, "running"), (2, 3, "scheduled"), (5, 3, "scheduled"), (8, 3, "scheduled"), (11, 2, "scheduled")]

    await st.sleep_until(plan.month_start_ats[1] + timedelta(hours=2))
    await settled(handle, st.env)
    second = await cycle_status(st, monthly_cycle_workflow_id("acme", 1, 2))
    assert (second.month_start, second.month_end) == (plan.month_starts[1], plan.month_starts[4] - timedelta(days=1))
    assert (await cycle_status(st, first.id)).month_end == plan.month_starts[1] - timedelta(days=1)
    await st.sleep_until(plan.month_start_ats[2] + timedelta(hours=2))
    await settled(handle, st.env)
    assert await not_started(st, monthly_cycle_workflow_id("acme", 1, 3)), "month 3 is in the quarter of month 2"

    # Monthly again: the quarter under way (months 2 to 4) stays; months 5 to 12 get one cycle each.
    monthly = await agree(1, "AGR-M-8")
    assert [(c.month, c.months, c.status) for c in monthly.cycles] == [
        (1, 1, "running"), (2, 3, "running")] + [(m, 1, "scheduled") for m in range(5, 13)]
    assert monthly.call_frequency_months == 1 and monthly.call_frequency_agreement_ref == "AGR-M-8"
    await st.sleep_until(plan.month_start_ats[4] + timedelta(hours=2))
    await settled(handle, st.env)
    fifth = await cycle_status(st, monthly_cycle_workflow_id("acme", 1, 5))
    assert (fifth.month_start, fifth.month_end) == (plan.month_starts[4], plan.month_starts[5] - timedelta(days=1))
    assert await not_started(st, monthly_cycle_workflow_id("acme", 1, 4))


@pytest.mark.rule("C10")
async def test_an_extra_report_is_billed_once_however_often_it_is_sent_retried_or_replayed(st: Stack) -> None:
    s, cycle = await first_cycle_running(st, "acme")
    assert s.plan is not None
    month_start = s.plan.month_starts[0]

    async def cupd(name: str, payload: dict[str, Any]) -> CycleStatus:
        result: CycleStatus = await cycle.execute_update(name, {"by": "tl-alice", **payload},
                                                         result_type=CycleStatus)
        return result

    extra = {"delivered_on": (month_start + timedelta(days=10)).isoformat(), "description": "Patch readiness review",
             "agreement_ref": "AGR-REP-1"}
    # The cycle's own report is drafted after the month ends (D7): a report delivered before it is the extra one.
    call_at = datetime.combine(month_start + timedelta(days=7), time(14), PARIS)
    await cupd("schedule_call", {"call_at": call_at.isoformat()})
    await cupd("hold_call", {"held_on": (month_start + timedelta(days=7)).isoformat(), "attendees": ["Carol"],
                             "notes": "Reviewed."})

    recorded = await cupd("record_extra_report", extra)
    assert recorded.extra_reports == 1
    # The same again: by Update (a double click) refused; by signal, kept as a rejection; neither billed.
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await cupd("record_extra_report", extra)
    assert "rule C10" in str(err.value.cause) and "recorded already" in str(err.value.cause)
    await cycle.signal("complete_step", {"step": "record_extra_report", "by": "tl-alice", "payload": extra})
    rejected = await eventually(lambda: cycle_status(st, cycle.id), lambda c: len(c.rejections) == 1,
                                "the signal's refusal kept")
    assert "recorded already" in rejected.rejections[0].reason
    # Two at once with another agreement: both may pass the validator; the re-check under the lock refuses one.
    again = {**extra, "agreement_ref": "AGR-REP-2"}
    raced = await asyncio.gather(cupd("record_extra_report", again), cupd("record_extra_report", again),
                                 return_exceptions=True)
    assert len([r for r in raced if isinstance(r, WorkflowUpdateFailedError)]) == 1, raced
    assert max(r.extra_reports for r in raced if isinstance(r, CycleStatus)) == 2

    async def rows() -> list[tuple[str, str, str]]:
        async with st.sessions() as session:
            return [(r.kind, r.rule, r.agreement_ref) for r in await list_billable_extras(session, "acme")]

    billed = [("extra_report", "C10", "AGR-REP-1"), ("extra_report", "C10", "AGR-REP-2")]
    assert await rows() == billed

    # The activity retried (its first attempt wrote the row, its answer was lost): no second row.
    events = [e async for e in cycle.fetch_history_events()]
    scheduled = [e.activity_task_scheduled_event_attributes for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                 and e.activity_task_scheduled_event_attributes.activity_type.name == "record_billable_extra"]
    assert len(scheduled) == 2
    [first] = await st.client.data_converter.decode(scheduled[0].input.payloads, [ExtraRecord])
    assert first.idempotency_key == f"{cycle.id}:extra-report-1"
    ack = await DatabaseActivities(st.sessions).record_billable_extra(first)
    assert ack.detail.endswith("already recorded")
    assert await rows() == billed

    await drafted(st, cycle)
    done = await cupd("approve_report", {})
    assert done.done and done.extra_reports == 2
    # Replayed (a worker restarted, a cache eviction): the same commands, nothing run again.
    await Replayer(workflows=[MonthlyCycleWorkflow], data_converter=st.client.data_converter,
                   workflow_runner=workflow_runner()).replay_workflow(await cycle.fetch_history())
    assert await rows() == billed
