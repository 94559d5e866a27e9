"""The programme's year at a glance (D10, A9): what the timeline of the workspace, the programme page
and the final report draws.

Pure: the programme's state and the date it is judged at go in, lanes and markers with their
positions as fractions of the period (0 = its first day, 1 = its last) come out. The SVG is drawn
by `templates/portal/_timeline.svg.j2`, which does no date maths of its own, so a page and a
document show the same picture. "Today" is given by the caller (the portal's clock in the
programme's time zone), never read here.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from domain.local_time import local_date
from domain.program import CycleSummary, PeriodPlan, Phase, ProgramStatus
from domain.step_inputs import StepState, StepStatus


class Mark(StrEnum):
    """How a dated item stands: the legend's four colours."""

    done = "done"
    open = "open"  # not done, not yet due
    overdue = "overdue"  # not done, its due date has passed, the period goes on
    missed = "missed"  # not done and never will be in time: skipped (taken over late) or the period is over


# Short lane labels: the registry's titles are sentences, too long for a lane at the portal's width.
SHORT_LABELS: dict[str, str] = {
    "schedule_kickoff": "Kickoff scheduled",
    "complete_kickoff": "Kickoff held",
    "deliver_communication_plan": "Communication plan",
    "submit_site_inventory": "Site inventory",
    "add_findings": "Configuration findings",
    "present_configuration_analysis": "Analysis presented",
}
_ENDED = frozenset({Phase.closing, Phase.closed})


def day_label(d: date) -> str:
    """"4 Jan 2027", as the portal's `day` filter writes a date."""
    return f"{d.day} {d:%b %Y}"


def step_mark(status: StepStatus, due_on: date | None, today: date | None, period_over: bool) -> Mark:
    """The one classification of a dated deliverable: done; missed when the workflow skipped it or the
    period is over without it; overdue when it is not done and its due date is before `today`; else open
    (not yet due, or no date to judge it by). A step still waiting for another is judged by its date alike."""
    if status == StepStatus.done:
        return Mark.done
    if status == StepStatus.missed or period_over:
        return Mark.missed
    if due_on is not None and today is not None and due_on < today:
        return Mark.overdue
    return Mark.open


class Marker(BaseModel):
    on: date
    x: float = Field(ge=0.0, le=1.0)
    mark: Mark | None = None  # None: a date of the calendar (a rule's date), not something to do
    label: str  # short text drawn beside it ("" for none)
    title: str  # the whole sentence: the SVG <title> a screen reader and a hover read
    anchor: Literal["start", "end"] = "start"  # which side of the marker its label is drawn


class Lane(BaseModel):
    key: str  # the step name, "calls", "renewal_notice", "non_renewal_deadline"
    label: str
    rule: str
    mark: Mark | None = None  # the lane's own state (a deliverable's), for data-* attributes and the test
    markers: list[Marker] = Field(default_factory=list)


class Tick(BaseModel):
    on: date
    x: float = Field(ge=0.0, le=1.0)
    label: str


class Timeline(BaseModel):
    period: int
    period_start: date
    period_end: date
    start_label: str
    end_label: str
    today: date | None = None
    today_x: float | None = Field(default=None, ge=0.0, le=1.0)  # None: no today line (outside the period)
    today_label: str = ""
    months: list[Tick] = Field(default_factory=list)
    lanes: list[Lane] = Field(default_factory=list)
    counts: dict[Mark, int] = Field(default_factory=dict)  # deliverables by mark, for the legend and the summary
    title: str = ""


def fraction(d: date, start: date, end: date) -> float:
    """Where `d` falls in [start, end], clamped to 0..1 (a date before or after the period sits at its edge)."""
    span = (end - start).days
    if span <= 0:
        return 0.0
    return min(1.0, max(0.0, (d - start).days / span))


def _anchor(x: float) -> Literal["start", "end"]:
    # Past two thirds of the width a label goes to the marker's left, so it stays inside the picture.
    return "end" if x > 0.66 else "start"


def _step_lane(step: StepState, plan: PeriodPlan, timezone: str, today: date | None, over: bool) -> Lane:
    """A deliverable's lane: one marker, at the day it was done, else at its due date."""
    done_on = local_date(step.done_at, timezone) if step.done_at else None
    mark = step_mark(step.status, step.due_on, today, over)
    on = done_on if mark == Mark.done and done_on is not None else step.due_on
    lane = Lane(key=step.step, label=SHORT_LABELS.get(step.step, step.title), rule=step.rule, mark=mark)
    if on is None:
        return lane  # no date yet (waiting for another step): the lane says so with its label alone
    late = " (late)" if step.late else ""
    due = f"due {day_label(step.due_on)}" if step.due_on else "no due date"
    label = f"done {day_label(on)}{late}" if mark == Mark.done else (
        "due " if mark == Mark.open else f"{mark.value}, due ") + day_label(on)
    title = f"{step.title} ({step.rule}): {mark.value}{late}; {due}" + (
        f", done {day_label(done_on)}" if done_on else "")
    x = fraction(on, plan.period_start, plan.period_end)
    lane.markers.append(Marker(on=on, x=x, mark=mark, label=label, title=title, anchor=_anchor(x)))
    return lane


def _cycle_end(plan: PeriodPlan, cycle: CycleSummary) -> date:
    after = cycle.month - 1 + cycle.months
    return plan.month_starts[after] - timedelta(days=1) if after < len(plan.month_starts) else plan.period_end


def _call_marker(plan: PeriodPlan, cycle: CycleSummary, today: date | None, over: bool) -> Marker:
    """A cycle's call (D6): at its held date once held, else at its month's start, judged by the cycle's last day.

    Only a held call is done: a cycle is also "done" when its month ended without the call (the month-end
    report says "No call held this month"), and that call was missed."""
    held = cycle.call_held_on
    if held is not None:
        mark = Mark.done
    elif cycle.status in ("done", "missed") or over:
        mark = Mark.missed
    elif today is not None and _cycle_end(plan, cycle) < today:
        mark = Mark.overdue
    else:
        mark = Mark.open
    on = held or cycle.starts_on
    months = f"month {cycle.month}" if cycle.months == 1 else f"months {cycle.month}-{cycle.month + cycle.months - 1}"
    if held is not None:
        what = f"call held {day_label(held)}"
    else:
        state = {Mark.open: "call to hold", Mark.overdue: "call overdue",
                 Mark.missed: "call missed"}[mark]
        what = f"{state} (due by {day_label(_cycle_end(plan, cycle))})"
    report = "; report filed" if cycle.report_document_id is not None else ""
    x = fraction(on, plan.period_start, plan.period_end)
    return Marker(on=on, x=x, mark=mark, label="", title=f"Follow-up call (D6), {months}: {what}{report}",
                  anchor=_anchor(x))


def _rule_lanes(status: ProgramStatus, plan: PeriodPlan, today: date | None) -> list[Lane]:
    renewal = status.renewal
    notice_on = renewal.notice_on if renewal else plan.renewal_notice_on
    deadline = renewal.non_renewal_deadline if renewal else plan.non_renewal_deadline
    sent = bool(renewal and renewal.notice_sent)
    nx, dx = fraction(notice_on, plan.period_start, plan.period_end), fraction(deadline, plan.period_start,
                                                                                plan.period_end)
    notice_text = "sent" if sent else "passed" if today is not None and notice_on < today else "planned"
    given = renewal.non_renewal if renewal else None
    if given is not None:
        deadline_text = f"notice given {day_label(given.received_on)}"
    elif today is not None and deadline < today:
        deadline_text = "passed"
    else:
        deadline_text = "last day for notice"
    return [
        Lane(key="renewal_notice", label="Renewal notice", rule="C14", markers=[Marker(
            on=notice_on, x=nx, label=f"{day_label(notice_on)}, {notice_text}", anchor=_anchor(nx),
            title=f"Renewal notice (C14) on {day_label(notice_on)}: {notice_text}")]),
        Lane(key="non_renewal_deadline", label="Non-renewal deadline", rule="C16", markers=[Marker(
            on=deadline, x=dx, label=f"{day_label(deadline)}, {deadline_text}", anchor=_anchor(dx),
            title=f"Non-renewal deadline (C16): written notice up to and including {day_label(deadline)}; "
                  f"{deadline_text}")]),
    ]


def programme_timeline(status: ProgramStatus, today: date | None) -> Timeline | None:
    """The timeline of the programme's current period as of `today` (its own local date); None before the
    period is planned. `today` None (a final report written at the close) draws no today line and judges
    nothing overdue; a closing or closed programme's unfinished deliverables are missed."""
    plan = status.plan
    if plan is None:
        return None
    start, end = plan.period_start, plan.period_end
    over = status.phase in _ENDED or (today is not None and today > end)
    tz = status.calendar.timezone
    lanes = [_step_lane(s, plan, tz, today, over) for s in status.steps]
    calls = [_call_marker(plan, c, today, over) for c in status.cycles]
    held = sum(1 for m in calls if m.mark == Mark.done)
    lanes.append(Lane(key="calls", label="Follow-up calls", rule="D6", markers=calls))
    lanes += _rule_lanes(status, plan, today)
    # "24 Aug": the years are in the period's dates beside the axis; a year on a tick would run into the next.
    months = [Tick(on=m, x=fraction(m, start, end), label=f"{m.day} {m:%b}") for m in plan.month_starts]
    counts = {mark: sum(1 for lane in lanes[:len(status.steps)] if lane.mark == mark) for mark in Mark}
    inside = today is not None and start <= today <= end
    summary = ", ".join(f"{n} {mark.value}" for mark, n in counts.items() if n)
    return Timeline(
        period=plan.period, period_start=start, period_end=end, start_label=day_label(start),
        end_label=day_label(end), today=today,
        today_x=fraction(today, start, end) if inside and today is not None else None,
        today_label=f"Today {day_label(today)}" if inside and today is not None else "",
        months=months, lanes=lanes, counts=counts,
        title=f"Period {plan.period}, {day_label(start)} to {day_label(end)}: deliverables {summary or 'none'}; "
              f"{held} of {len(calls)} calls held",
    )
