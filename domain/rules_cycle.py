"""Rules of a monthly cycle's Updates (D6, D7, C10): what MonthlyCycleWorkflow's validators and
re-checks ask. Pure functions returning the violations; `domain/refusal.refusal_text` words them.

Also the period's cycles at the agreed follow-up frequency (C10): `plan_cycles`, `replan_cycles`,
`cycle_bounds`, and the check of a frequency agreed during the period."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from domain.cycle import (
    ApproveReport,
    CycleStatus,
    HoldCall,
    RecordExtraCall,
    RecordExtraReport,
    ScheduleCall,
    SendBackReport,
)
from domain.errors import RuleViolation
from domain.naming import monthly_cycle_workflow_id
from domain.program import CycleSummary, PeriodPlan, ProgramStatus
from domain.refusal import needs_offset, plain, violation
from domain.rules_program import NOT_LIVE_PHASES
from domain.step_inputs import AgreeCallFrequency, StepStatus
from domain.steps import spec


def month_label(month_start: date) -> str:
    """The month as messages name it, e.g. "February 2027"."""
    return month_start.strftime("%B %Y")


def cycle_label(month_start: date, month_end: date, months: int) -> str:
    """The cycle as messages name it: its month, or its months when it covers several (C10), e.g.
    "January 2027 to March 2027"."""
    if months == 1:
        return month_label(month_start)
    return f"{month_label(month_start)} to {month_label(month_end)}"


def check_cycle_step_open(status: CycleStatus, step: str) -> list[RuleViolation]:
    """The cycle's steps are done once each, one after the other."""
    st = next(s for s in status.steps if s.step == step)
    if st.status == StepStatus.done:
        return [plain(f"step {step} is already done")]
    if st.status == StepStatus.missed:
        return [violation("D6", f"step {step} was missed: the month ended without it, and its report says so; "
                                f"if the call did take place, send the report back with its date (held_on) and "
                                f"its notes (call_notes)")]
    if step == "approve_report" and status.month_end_report and status.report_document_id is None:
        return [violation("D7", f"the report is drafted after the month ends, at "
                                f"{status.report_draft_at.isoformat() if status.report_draft_at else 'the month end'}; "
                                f"there is nothing to approve yet")]
    if st.status != StepStatus.open:
        return [plain(f"step {step} is out of order: it waits for {', '.join(spec(step).waits_for)}")]
    return []


def check_send_back_open(status: CycleStatus) -> list[RuleViolation]:
    """Rule D7: a month-end draft waiting for the TL's approval may be sent back with comments."""
    if not status.month_end_report:
        return [violation("D7", "this cycle's report was drafted when the call was held (before month-end "
                                "reports); approve it, or record an extra report")]
    return check_cycle_step_open(status, "approve_report")


def check_send_back(status: CycleStatus, inp: SendBackReport, month_start: date) -> list[RuleViolation]:
    """Rule D7, and D6 for a call recorded late: its date needs its notes, within reach of the month."""
    refused = check_send_back_open(status)
    if refused or inp.held_on is None:
        return refused
    if status.call_held_on is not None:
        return [violation("D6", f"the call is recorded already, held on {status.call_held_on}; correct its notes "
                                f"with call_notes", "held_on")]
    if not (inp.call_notes or "").strip():
        return [violation("D6", "a call recorded late needs its notes (call_notes)", "call_notes")]
    if inp.held_on < month_start - timedelta(days=31) or inp.held_on > status.month_end + timedelta(days=31):
        return [violation("D6", f"held_on {inp.held_on} is not in or near the cycle's months "
                                f"({month_label(month_start)} to {month_label(status.month_end)})", "held_on")]
    return []


def check_approval_version(status: CycleStatus, inp: ApproveReport) -> list[RuleViolation]:
    """Rule D7: the TL approves the draft they read; a newer one was drafted since (sent back meanwhile)."""
    if inp.version is not None and status.month_end_report and inp.version != status.report_version:
        return [violation("D7", f"version {inp.version} of the report was sent back; version {status.report_version} "
                                f"is the current draft: read it before approving", "version")]
    return []


def check_call_time(inp: ScheduleCall) -> list[RuleViolation]:
    return needs_offset(inp.call_at, "call_at", "2027-02-10T10:00:00+01:00")


def check_call_date(inp: HoldCall, month_start: date) -> list[RuleViolation]:
    if inp.held_on < month_start - timedelta(days=31):
        return [plain(f"held_on {inp.held_on} is long before the month {month_label(month_start)}", "held_on")]
    return []


def extra_call_key(inp: RecordExtraCall) -> str:
    """Rule C10: one extra call per day and agreement (a double click records it once)."""
    return f"{inp.held_on.isoformat()} {inp.agreement_ref.strip()}"


def extra_call_recorded(inp: RecordExtraCall, month_start: date) -> RuleViolation:
    return violation("C10", f"an extra call held on {inp.held_on} under {inp.agreement_ref} is recorded already "
                            f"for {month_label(month_start)}; a second one that day needs its own agreement reference",
                     "agreement_ref")


def check_extra_call(status: CycleStatus, inp: RecordExtraCall, month_start: date) -> list[RuleViolation]:
    """Rule C10: one call a month is included; a second one is a billable extra, recorded once."""
    if status.done:
        # The cycle is ending: an Update accepted now could land after the final signal to the
        # programme and be lost. The programme takes it instead.
        return [violation("C10", f"the {month_label(month_start)} cycle is closed; record the extra call on the "
                                 f"programme with record_billable_extra (kind extra_call)")]
    hold = next(s for s in status.steps if s.step == "hold_call")
    if hold.status != StepStatus.done:
        return [violation("C10", "the month's included call has not been held yet; record it with hold_call")]
    if extra_call_key(inp) in status.extra_call_keys:
        return [extra_call_recorded(inp, month_start)]
    return []


def extra_report_key(inp: RecordExtraReport) -> str:
    """Rule C10: one extra report per day and agreement (a double click records it once)."""
    return f"{inp.delivered_on.isoformat()} {inp.agreement_ref.strip()}"


def extra_report_recorded(inp: RecordExtraReport, month_start: date) -> RuleViolation:
    return violation("C10", f"an extra report delivered on {inp.delivered_on} under {inp.agreement_ref} is recorded "
                            f"already for the cycle of {month_label(month_start)}; a second one that day needs its "
                            f"own agreement reference", "agreement_ref")


def check_extra_report(status: CycleStatus, inp: RecordExtraReport, month_start: date) -> list[RuleViolation]:
    """Rule C10: the cycle's report is included; another one is a billable extra, recorded once. As for an
    extra call, the included one comes first: its draft exists once the call is held."""
    if status.done:
        # As for an extra call: an Update accepted now could be lost as the cycle ends.
        return [violation("C10", f"the {month_label(month_start)} cycle is closed; record the extra report on the "
                                 f"programme with record_billable_extra (kind extra_report)")]
    # With month-end reports (D7) the included report is the one drafted after the month: a report delivered
    # before it is the extra one. Before them, the included draft was made at the call and came first.
    if status.report_document_id is None and not status.month_end_report:
        return [violation("C10", "the cycle's included report is not drafted yet: it is drafted when the call is "
                                 "held (hold_call)")]
    if extra_report_key(inp) in status.extra_report_keys:
        return [extra_report_recorded(inp, month_start)]
    return []


# ---- rule C10: the period's cycles at the agreed frequency ----------------------------------------
def plan_cycles(customer_id: str, period: int, plan: PeriodPlan, months: int,
                from_month: int = 1) -> list[CycleSummary]:
    """Rule C10: the follow-up cycles of the period from its month `from_month` (1-based) on. Each starts on a
    month start of the plan and covers `months` months: to the day before the next cycle's start, or to the
    period end. When `months` does not divide the months left, the last cycle is shorter (it ends with the
    period). Monthly (1) gives one cycle a month, numbered by month, as always."""
    starts = plan.month_starts
    return [CycleSummary(month=m, months=min(months, len(starts) - m + 1), starts_on=starts[m - 1],
                         workflow_id=monthly_cycle_workflow_id(customer_id, period, m))
            for m in range(from_month, len(starts) + 1, months)]


def first_month_not_started(cycles: list[CycleSummary]) -> int:
    """The first month of the period that no started cycle (running, done or missed) covers."""
    return max((c.month + c.months for c in cycles if c.status != "scheduled"), default=1)


def replan_cycles(cycles: list[CycleSummary], customer_id: str, period: int, plan: PeriodPlan,
                  months: int) -> list[CycleSummary]:
    """Rule C10, another frequency agreed during the period: the cycles started stay as they are; those not
    started yet are planned again, `months` months each, from the first month no started cycle covers."""
    started = [c for c in cycles if c.status != "scheduled"]
    return started + plan_cycles(customer_id, period, plan, months, first_month_not_started(cycles))


def cycle_bounds(plan: PeriodPlan, cycle: CycleSummary) -> tuple[datetime, date, datetime]:
    """When the cycle starts (its first month's start instant), its last day (inclusive), and when the
    next cycle starts (the period end instant after the last one)."""
    first, after = cycle.month - 1, cycle.month - 1 + cycle.months
    if after < len(plan.month_starts):
        return plan.month_start_ats[first], plan.month_starts[after] - timedelta(days=1), plan.month_start_ats[after]
    return plan.month_start_ats[first], plan.period_end, plan.period_end_at


def check_call_frequency_change(status: ProgramStatus, inp: AgreeCallFrequency,
                                period_over: bool) -> list[RuleViolation]:
    """Rule C10: another follow-up frequency is agreed for the coming months of a live programme, always
    with the reference of its agreement (going back to monthly too: it changes what was agreed)."""
    if period_over:
        return [violation("C10", f"no follow-up frequency can be agreed now: period {status.period} has ended")]
    if status.phase in NOT_LIVE_PHASES:
        return [violation("C10", f"no follow-up frequency can be agreed: the programme is {status.phase.value}")]
    if not inp.agreement_ref.strip():
        return [violation("C10", f"a follow-up call and report every {inp.months} month(s) needs the reference of "
                                 f"the agreement with the customer (agreement_ref)", "agreement_ref")]
    return []
