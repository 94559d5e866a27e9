"""The programme's year at a glance (domain/timeline.py, templates/portal/_timeline.svg.j2): pure, so every
date here is given, not read from a clock. The portal's pages and the browser: tests/test_portal_timeline.py."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from pydantic_core import to_jsonable_python

from activities.report_builders import final_report_context
from activities.templating import make_template_environment
from domain.calendar import add_months
from domain.program import Phase, RenewalState
from domain.step_inputs import StepStatus
from domain.timeline import Mark, Timeline, day_label, fraction, programme_timeline, step_mark
from portal.rendering import environment
from tests.timeline_status import OVERDUE_STEP, status_in_month_five

TODAY = date(2026, 12, 3)  # any day: the programme is built around it


def marks(t: Timeline) -> dict[str, Mark | None]:
    return {lane.key: lane.mark for lane in t.lanes}


def every_x(t: Timeline) -> list[float]:
    xs = [m.x for lane in t.lanes for m in lane.markers] + [tick.x for tick in t.months]
    return xs + ([t.today_x] if t.today_x is not None else [])


@pytest.mark.parametrize(("status", "due", "today", "over", "expected"), [
    (StepStatus.done, TODAY - timedelta(days=30), TODAY, False, Mark.done),  # done late is still done
    (StepStatus.done, TODAY, TODAY, True, Mark.done),
    (StepStatus.open, TODAY + timedelta(days=1), TODAY, False, Mark.open),  # not yet due
    (StepStatus.open, TODAY, TODAY, False, Mark.open),  # due today: not overdue before the day is over
    (StepStatus.open, TODAY - timedelta(days=1), TODAY, False, Mark.overdue),
    (StepStatus.waiting, TODAY - timedelta(days=1), TODAY, False, Mark.overdue),  # late whatever it waits for
    (StepStatus.open, None, TODAY, False, Mark.open),  # no date to judge it by
    (StepStatus.open, TODAY - timedelta(days=1), None, False, Mark.open),  # no today: nothing judged late
    (StepStatus.missed, TODAY + timedelta(days=5), TODAY, False, Mark.missed),  # skipped (taken over late)
    (StepStatus.open, TODAY + timedelta(days=5), TODAY, True, Mark.missed),  # the period is over without it
])
def test_one_function_classifies_a_deliverable(status: StepStatus, due: date | None, today: date | None,
                                               over: bool, expected: Mark) -> None:
    assert step_mark(status, due, today, over) == expected


@pytest.mark.rule("D10", "A9")
def test_month_five_shows_the_overdue_step_the_calls_the_rule_dates_and_today() -> None:
    status = status_in_month_five("webco", TODAY)
    assert status.plan is not None
    t = programme_timeline(status, TODAY)
    assert t is not None
    assert marks(t) == {
        "schedule_kickoff": Mark.done, "complete_kickoff": Mark.done, "deliver_communication_plan": Mark.done,
        "submit_site_inventory": Mark.done, "add_findings": Mark.done, OVERDUE_STEP: Mark.overdue,
        "calls": None, "renewal_notice": None, "non_renewal_deadline": None}
    assert t.counts == {Mark.done: 5, Mark.open: 0, Mark.overdue: 1, Mark.missed: 0}
    overdue = next(lane for lane in t.lanes if lane.key == OVERDUE_STEP).markers
    due = TODAY - timedelta(days=21)
    assert [(m.mark, m.on, m.label) for m in overdue] == [(Mark.overdue, due, f"overdue, due {day_label(due)}")]
    # A done step sits at the day it was done, late or not, and says so.
    plan_step = next(lane for lane in t.lanes if lane.key == "deliver_communication_plan").markers[0]
    assert plan_step.on == status.plan.period_start + timedelta(days=47) and plan_step.label.endswith("(late)")
    # Today: a line in month five, at its share of the period.
    start, end = status.plan.period_start, status.plan.period_end
    assert t.today_x is not None and t.today_x == pytest.approx((TODAY - start).days / (end - start).days)
    assert t.months[4].x < t.today_x < t.months[5].x
    assert t.today_label == f"Today {day_label(TODAY)}"
    # The month's calls: four held (at their held day), the fifth still to hold.
    calls = next(lane for lane in t.lanes if lane.key == "calls").markers
    assert [m.mark for m in calls] == [Mark.done] * 4 + [Mark.open]
    assert [m.on for m in calls[:4]] == [c.call_held_on for c in status.cycles[:4]]
    # C14 and C16: the plan's dates until the renewal state exists, each in its own lane.
    rules = {lane.key: lane.markers[0] for lane in t.lanes if lane.key in ("renewal_notice", "non_renewal_deadline")}
    assert rules["renewal_notice"].on == status.plan.renewal_notice_on
    assert rules["non_renewal_deadline"].on == status.plan.non_renewal_deadline
    assert rules["non_renewal_deadline"].x == pytest.approx(fraction(status.plan.non_renewal_deadline, start, end))
    assert all(0.0 <= x <= 1.0 for x in every_x(t))
    assert len(t.months) == 12 and t.months[0].x == 0.0


@pytest.mark.parametrize("days", [-400, -1, 0, 1, 180, 364, 365, 366, 900])
def test_positions_stay_inside_the_period_whatever_the_day(days: int) -> None:
    status = status_in_month_five("webco", TODAY)
    assert status.plan is not None
    today = status.plan.period_start + timedelta(days=days)
    t = programme_timeline(status, today)
    assert t is not None
    assert all(0.0 <= x <= 1.0 for x in every_x(t))
    inside = status.plan.period_start <= today <= status.plan.period_end
    assert (t.today_x is not None) == inside
    if today > status.plan.period_end:  # over: what is not done will not be done in this period
        assert marks(t)[OVERDUE_STEP] == Mark.missed
        assert next(lane for lane in t.lanes if lane.key == "calls").markers[-1].mark == Mark.missed


def test_the_renewal_state_gives_the_dates_once_it_exists_and_a_programme_not_planned_has_no_timeline() -> None:
    status = status_in_month_five("webco", TODAY)
    assert status.plan is not None
    notice_on = status.plan.renewal_notice_on + timedelta(days=2)
    status.renewal = RenewalState(
        notice_on=notice_on, notice_sent=True, non_renewal_deadline=status.plan.non_renewal_deadline,
        non_renewal_deadline_end_at=status.plan.non_renewal_deadline_end_at, reminder_on=notice_on)
    t = programme_timeline(status, notice_on + timedelta(days=1))
    assert t is not None
    notice = next(lane for lane in t.lanes if lane.key == "renewal_notice").markers[0]
    assert notice.on == notice_on and notice.label == f"{day_label(notice_on)}, sent"
    assert programme_timeline(status.model_copy(update={"plan": None}), TODAY) is None


def test_fraction_clamps_and_survives_an_empty_period() -> None:
    start, end = date(2027, 1, 1), date(2027, 12, 31)
    assert fraction(start, start, end) == 0.0 and fraction(end, start, end) == 1.0
    assert fraction(start - timedelta(days=9), start, end) == 0.0
    assert fraction(end + timedelta(days=9), start, end) == 1.0
    assert fraction(start, start, start) == 0.0


def test_the_svg_draws_every_lane_with_titles_a_legend_and_no_css_variables() -> None:
    t = programme_timeline(status_in_month_five("webco", TODAY), TODAY)
    assert t is not None
    svg = environment().get_template("portal/_timeline.svg.j2").render(timeline=t)
    assert svg.lstrip().startswith("<svg") and 'role="img"' in svg
    for lane in t.lanes:
        assert f'data-lane="{lane.key}"' in svg
    assert re.search(rf'data-lane="{OVERDUE_STEP}" data-mark="overdue">', svg)
    assert f"overdue, due {day_label(TODAY - timedelta(days=21))}" in svg
    assert svg.count("<title") == 1 + sum(len(lane.markers) for lane in t.lanes) + 1  # the picture, markers, today
    assert "data-legend" in svg and f'data-today="{TODAY.isoformat()}"' in svg
    assert "var(" not in svg and "foreignObject" not in svg and "<script" not in svg
    # The document's environment (no autoescape for .svg.j2, the JSON form of the model) draws the same picture.
    doc_svg = make_template_environment().get_template("portal/_timeline.svg.j2").render(
        timeline=to_jsonable_python(t.model_dump(mode="json")))
    assert doc_svg.strip() == svg.strip()


def test_text_in_the_svg_is_escaped_in_a_page_and_in_a_document() -> None:
    status = status_in_month_five("webco", TODAY)
    status.steps[0].title = 'Kickoff <script>alert("x")</script> & co'
    t = programme_timeline(status, TODAY)
    assert t is not None
    for env in (environment(), make_template_environment()):
        svg = env.get_template("portal/_timeline.svg.j2").render(timeline=t)
        assert "<script>" not in svg and "Kickoff &lt;script&gt;" in svg


@pytest.mark.rule("A9")
def test_the_final_report_carries_the_timeline_without_a_today_line_and_with_what_was_missed() -> None:
    status = status_in_month_five("webco", TODAY).model_copy(update={"phase": Phase.closing})
    ctx = to_jsonable_python(final_report_context(status))
    assert ctx["timeline"]["today_x"] is None
    assert {lane["key"]: lane["mark"] for lane in ctx["timeline"]["lanes"]}[OVERDUE_STEP] == "missed"
    ctx.update(customer_id="webco", period=1, title="Final report, period 1")
    html = make_template_environment().get_template("documents/final_report.html.j2").render(**ctx)
    assert html.count("<svg") == 1 and 'data-mark="missed"' in html and "data-today" not in html
    assert 'viewBox="0 0 720 ' in html  # narrower than the portal's: larger text on an A4 page


def test_a_period_starting_on_the_last_day_of_a_month_keeps_twelve_ticks_in_order() -> None:
    status = status_in_month_five("webco", add_months(date(2027, 1, 31), 4) + timedelta(days=10))
    t = programme_timeline(status, TODAY)
    assert t is not None
    xs = [tick.x for tick in t.months]
    assert xs == sorted(xs) and len(set(xs)) == 12


@pytest.mark.rule("D7", "D6")
def test_a_cycle_done_without_its_call_is_a_missed_call_not_a_held_one() -> None:
    """Month-end reports: a cycle is "done" when its report is out, with or without the call (D7)."""
    status = status_in_month_five("webco", TODAY)
    # The second month's cycle ended without a call ("No call held this month"); the others as before.
    status.cycles[1] = status.cycles[1].model_copy(update={"status": "done", "call_held_on": None})
    t = programme_timeline(status, TODAY)
    assert t is not None
    calls = next(lane for lane in t.lanes if lane.key == "calls").markers
    assert [m.mark for m in calls] == [Mark.done, Mark.missed, Mark.done, Mark.done, Mark.open]
    assert "call missed" in calls[1].title and "held" not in calls[1].title
    assert calls[1].on == status.cycles[1].starts_on
    assert f"3 of {len(calls)} calls held" in t.title
