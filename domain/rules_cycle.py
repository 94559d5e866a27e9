"""Rules of a monthly cycle's Updates (D6, D7, C10): what MonthlyCycleWorkflow's validators and
re-checks ask. Pure functions returning the violations; `domain/refusal.refusal_text` words them."""

from __future__ import annotations

from datetime import date, timedelta

from domain.cycle import CycleStatus, HoldCall, RecordExtraCall, ScheduleCall
from domain.errors import RuleViolation
from domain.refusal import needs_offset, plain, violation
from domain.step_inputs import StepStatus
from domain.steps import spec


def month_label(month_start: date) -> str:
    """The month as messages name it, e.g. "February 2027"."""
    return month_start.strftime("%B %Y")


def check_cycle_step_open(status: CycleStatus, step: str) -> list[RuleViolation]:
    """The cycle's steps are done once each, one after the other."""
    st = next(s for s in status.steps if s.step == step)
    if st.status == StepStatus.done:
        return [plain(f"step {step} is already done")]
    if st.status != StepStatus.open:
        return [plain(f"step {step} is out of order: it waits for {', '.join(spec(step).waits_for)}")]
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
