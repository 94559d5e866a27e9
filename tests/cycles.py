"""Waiting for a monthly cycle's month-end report (rule D7), shared by the tests that run cycles to the end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import WorkflowHandle

from domain.cycle import CycleStatus
from domain.step_inputs import StepStatus
from tests.harness import Stack, eventually

PARIS = ZoneInfo("Europe/Paris")


async def drafted(st: Stack, cycle: WorkflowHandle[Any, Any]) -> CycleStatus:
    """The server's clock moved to the first business hour after the cycle's months, where its report is drafted
    (D7); returns the cycle's status once the draft is filed and its approval open."""
    s: CycleStatus = await eventually(lambda: cycle.query("get_status", result_type=CycleStatus),
                                      lambda c: c.report_draft_at is not None, "the cycle's dates scheduled",
                                      timeout=30)
    assert s.month_end_report and s.report_draft_at is not None, s
    assert s.report_draft_at.astimezone(PARIS).date() > s.month_end, "drafted after the month, not in it"
    await st.sleep_until(s.report_draft_at + timedelta(minutes=1))
    done: CycleStatus = await eventually(
        lambda: cycle.query("get_status", result_type=CycleStatus),
        lambda c: c.report_document_id is not None and c.steps[2].status == StepStatus.open,
        "the month-end draft filed and its approval open", timeout=30)
    return done
