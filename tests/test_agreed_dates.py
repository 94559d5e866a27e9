"""Agreed dates count (rules D4, A2, D6, C10): the kickoff meeting's agreed date is when holding it is due,
and the minutes' call schedule (a day of the month for the calls, the follow-up report frequency) shapes
the cycles started after them.

Pure: the call day within a cycle's first month (clamped for short months) and the A2 check of the
minutes' call schedule. On the time-skipping server: a kickoff agreed 20 business days out is not escalated
at the default 15 business days, only once its own day has passed unheld; minutes agreeing call day 20 and
a frequency give the next cycles their call on the 20th, and the next period keeps the day."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Replayer

from domain.calendar import BusinessCalendar, add_business_days, add_months
from domain.cycle import CycleStatus
from domain.due_dates import call_day_in_month
from domain.naming import monthly_cycle_workflow_id
from domain.program import ProgramStatus
from domain.rules_program import check_agreed_dates
from domain.step_inputs import AgreedDates, CompleteKickoff, StepStatus
from tests.calendar_positions import public_holidays
from tests.clock import settled
from tests.harness import Stack, eventually
from tests.test_program_refusals import assert_no_trace
from tests.test_program_timing import begin, cycle_status, escalation_for, first_cycle_running, matching, today
from worker import workflow_runner
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import ProgramWorkflow
from workflows.program_steps import PATCH_KICKOFF_DATE_IS_DUE_DATE

PARIS = ZoneInfo("Europe/Paris")
HOLD_KICKOFF = "Hold the planning and review meeting"


# ---- pure ---------------------------------------------------------------------------------------------
@pytest.mark.rule("D6", "A2")
def test_the_call_day_falls_in_the_cycles_first_month_clamped_to_short_months() -> None:
    assert call_day_in_month(date(2027, 1, 1), date(2027, 1, 31), 20) == date(2027, 1, 20)
    assert call_day_in_month(date(2027, 2, 1), date(2027, 2, 28), 31) == date(2027, 2, 28)
    assert call_day_in_month(date(2028, 2, 1), date(2028, 2, 29), 31) == date(2028, 2, 29)  # leap year
    assert call_day_in_month(date(2027, 4, 1), date(2027, 4, 30), 31) == date(2027, 4, 30)
    # A period started mid-month: its months run from the 15th to the 14th, the day is the one in that span.
    assert call_day_in_month(date(2027, 1, 15), date(2027, 2, 14), 20) == date(2027, 1, 20)
    assert call_day_in_month(date(2027, 1, 15), date(2027, 2, 14), 10) == date(2027, 2, 10)
    # Several months (C10): the day of the first month; a period's last, shorter month caps it.
    assert call_day_in_month(date(2027, 1, 15), date(2027, 4, 14), 10) == date(2027, 2, 10)
    assert call_day_in_month(date(2027, 1, 31), add_months(date(2027, 1, 31), 1) - timedelta(days=1), 30) == \
        date(2027, 2, 27)


@pytest.mark.rule("A2")
def test_the_minutes_call_schedule_is_checked_naming_the_field() -> None:
    def minutes(**agreed: Any) -> CompleteKickoff:
        return CompleteKickoff(by="tl-alice", held_on=date(2027, 1, 20), attendees=["Carol"], minutes="m",
                               agreed_dates=AgreedDates(**agreed))

    end = date(2027, 12, 31)
    assert check_agreed_dates(minutes(call_day_of_month=1, report_frequency_months=12), end) == []
    assert check_agreed_dates(minutes(call_day_of_month=31, report_frequency_months=1), end) == []
    for day in (0, 32, -5):
        [v] = check_agreed_dates(minutes(call_day_of_month=day), end)
        assert (v.rule, v.field) == ("A2", "agreed_dates.call_day_of_month")
        assert "agreed_dates.call_day_of_month" in str(v) and "1 to 31" in str(v)
    [v] = check_agreed_dates(minutes(report_frequency_months=13), end)
    assert (v.rule, v.field) == ("A2", "agreed_dates.report_frequency_months") and "C10" in v.message
    # Every problem at once, the dates' first: all or nothing.
    both = check_agreed_dates(minutes(communication_plan=date(2026, 1, 1), call_day_of_month=40), end)
    assert [v.field for v in both] == ["agreed_dates.communication_plan", "agreed_dates.call_day_of_month"]


# ---- on the time-skipping server ----------------------------------------------------------------------
def business_days_after(start: date, days: int, cal: BusinessCalendar) -> date:
    """`days` business days after `start` on the programme calendar (weekdays, the country's holidays)."""
    return add_business_days(start, days, cal, public_holidays(cal.country, start.year, start.year + 1))


async def schedule_kickoff(st: Stack, meeting_at: datetime) -> ProgramStatus:
    result: ProgramStatus = await st.client.get_workflow_handle("program-acme").execute_update(
        "schedule_kickoff", {"by": "tl-alice", "meeting_at": meeting_at.isoformat(), "attendance": "on-site"},
        result_type=ProgramStatus)
    return result


@pytest.mark.rule("D4", "A2")
async def test_the_agreed_kickoff_date_is_when_holding_it_is_due(st: Stack) -> None:
    handle, s = await begin(st, "acme")
    default = s.step("complete_kickoff")
    assert default is not None and default.due_at is not None and default.due_on is not None
    start = await today(st)
    meeting_day = business_days_after(start, 20, s.calendar)
    assert meeting_day > default.due_on  # later than the default 15 business days

    scheduled = await schedule_kickoff(st, datetime.combine(meeting_day, time(10), PARIS))
    held = scheduled.step("complete_kickoff")
    assert held is not None and held.status == StepStatus.open
    assert held.due_on == meeting_day
    assert held.due_at is not None and held.due_at.astimezone(PARIS) == datetime.combine(meeting_day, time(17), PARIS)
    assert held.remind_at is not None and held.remind_at < held.due_at

    # The default due instant passes: no escalation (the agreed date counts).
    escalated = escalation_for(HOLD_KICKOFF)
    await st.sleep_until(default.due_at + timedelta(hours=1))
    await settled(handle, st.env)
    assert matching(st, escalated) == [], "escalated at the default due date, not the agreed one"
    # The day before the meeting, late in the evening: still none.
    await st.sleep_until(datetime.combine(meeting_day - timedelta(days=1), time(23), PARIS))
    await settled(handle, st.env)
    assert matching(st, escalated) == []
    before = (await st.status("acme")).step("complete_kickoff")
    assert before is not None and not before.escalated and before.due_on == meeting_day

    # The meeting day ends, not held: the manager and ops hear of it, once.
    await st.sleep_until(held.due_at + timedelta(minutes=1))
    [mail] = await st.sink.wait_for(escalated, timeout=10)
    assert st.policy.support_manager_mailbox in str(mail.get("Cc", "")) and st.policy.ops_mailbox in str(
        mail.get("Cc", ""))
    await settled(handle, st.env)
    assert len(matching(st, escalated)) == 1
    after = (await st.status("acme")).step("complete_kickoff")
    assert after is not None and after.escalated

    # The new command is behind its patch marker, and the run replays.
    history = await handle.fetch_history()
    sequence = [kind for e in history.events if (kind := marker_or_activity(e))]
    assert sequence.count("marker") == 1, sequence
    assert sequence[sequence.index("marker") + 1] == "schedule_deadlines", sequence
    await Replayer(workflows=[ProgramWorkflow], data_converter=st.client.data_converter,
                   workflow_runner=workflow_runner()).replay_workflow(history)


def marker_or_activity(e: HistoryEvent) -> str:
    """"marker" for this change's patch marker, an activity's type when one is scheduled, else ""."""
    if e.HasField("marker_recorded_event_attributes"):
        return "marker" if PATCH_KICKOFF_DATE_IS_DUE_DATE.encode() in e.SerializeToString() else "other marker"
    if e.HasField("activity_task_scheduled_event_attributes"):
        return e.activity_task_scheduled_event_attributes.activity_type.name
    return ""


async def hold_call_due(st: Stack, workflow_id: str) -> tuple[CycleStatus, date]:
    # The cycle's due dates come from an activity: wait for them rather than race it.
    cs = await eventually(lambda: cycle_status(st, workflow_id), lambda c: c.steps[1].due_on is not None,
                          f"{workflow_id}'s due dates scheduled", timeout=30)
    hold = next(x for x in cs.steps if x.step == "hold_call")
    assert hold.due_on is not None
    return cs, hold.due_on


@pytest.mark.rule("D6", "A2", "C10")
async def test_the_minutes_call_day_and_frequency_shape_the_next_cycles(st: Stack) -> None:
    s, first = await first_cycle_running(st, "acme")
    assert s.plan is not None
    plan = s.plan
    handle = st.client.get_workflow_handle(s.workflow_id)
    held_on = await today(st)
    await schedule_kickoff(st, await st.now() + timedelta(hours=1))

    async def complete(**agreed: Any) -> ProgramStatus:
        result: ProgramStatus = await handle.execute_update("complete_kickoff", {
            "by": "tl-alice", "held_on": held_on.isoformat(), "attendees": ["Carol Diaz"], "minutes": "Agreed.",
            "agreed_dates": agreed}, result_type=ProgramStatus)
        return result

    for bad in ({"call_day_of_month": 32}, {"call_day_of_month": 0}):
        before = (await settled(handle, st.env)).events
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await complete(**bad, report_frequency_months=2)
        assert "rule A2" in str(refused.value.cause) and "agreed_dates.call_day_of_month" in str(refused.value.cause)
        await assert_no_trace(handle, before)
    still = await st.status("acme")
    assert still.call_day_of_month is None and still.step("complete_kickoff").status == StepStatus.open  # type: ignore[union-attr]

    done = await complete(call_day_of_month=20, report_frequency_months=2)
    assert done.call_day_of_month == 20
    assert (done.call_frequency_months, done.call_frequency_agreement_ref) == (2, f"kickoff minutes {held_on}")
    assert [(c.month, c.months, c.status) for c in done.cycles] == [
        (1, 1, "running"), *((m, 2, "scheduled") for m in (2, 4, 6, 8, 10)), (12, 1, "scheduled")]

    # The cycle started before the minutes keeps its default: the call held by the month's last day.
    cs1, due1 = await hold_call_due(st, first.id)
    assert due1 == cs1.month_end == plan.month_starts[1] - timedelta(days=1)

    # The cycles started after: the call is due on the 20th of their first month.
    for month in (2, 4):
        await st.sleep_until(plan.month_start_ats[month - 1] + timedelta(hours=2))
        await settled(handle, st.env)
        cs, due = await hold_call_due(st, monthly_cycle_workflow_id("acme", 1, month))
        assert due.day == 20, (month, due)
        assert plan.month_starts[month - 1] <= due < plan.month_starts[month], (month, due)
        assert cs.month_end == plan.month_starts[month + 1] - timedelta(days=1)  # two months (C10)

    # The next period keeps the agreed call day and frequency.
    await st.sleep_until(plan.period_end_at + timedelta(hours=1))
    renewed = await eventually(lambda: st.status("acme"), lambda x: x.period == 2, "the next period", timeout=30)
    assert renewed.call_day_of_month == 20 and renewed.call_frequency_months == 2
    assert renewed.plan is not None
    p2 = renewed.plan
    await st.sleep_until(p2.month_start_ats[0] + timedelta(hours=2))
    await eventually(lambda: st.status("acme"), lambda x: x.cycles[0].status == "running", "period 2's first cycle")
    _, due = await hold_call_due(st, monthly_cycle_workflow_id("acme", 2, 1))
    assert due.day == 20 and p2.month_starts[0] <= due < p2.month_starts[1]

    await Replayer(workflows=[MonthlyCycleWorkflow], data_converter=st.client.data_converter,
                   workflow_runner=workflow_runner()).replay_workflow(
        await st.client.get_workflow_handle(monthly_cycle_workflow_id("acme", 1, 2)).fetch_history())
