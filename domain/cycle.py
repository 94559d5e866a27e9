"""One follow-up cycle of the programme: call and written report (D6, D7, A5, A6, C10).

A cycle is one month, or the months agreed with the customer (rule C10: `CycleInput.month_start` to
`month_end` then span them all)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from domain.calendar import BusinessCalendar
from domain.enrolment import Contact, TechnicalLead
from domain.policy import ProgramPolicy
from domain.step_inputs import Rejection, StepInput, StepState, TechnicalLeadChange


class CycleStepName(StrEnum):
    schedule_call = "schedule_call"  # D6/A5
    hold_call = "hold_call"  # D6/A5
    approve_report = "approve_report"  # D7/A6


class CycleInput(BaseModel):
    customer_id: str
    customer_name: str
    parent_workflow_id: str
    period: int
    month: int  # 1-based within the period: the cycle's first month
    month_start: date
    month_end: date  # inclusive; with another agreed frequency (C10), the last day of its last month
    months: int = 1  # rule C10: the months the cycle covers (the agreed frequency)
    # Rule D6/A2: the call day agreed in the kickoff minutes; the call is due that day of the first month.
    # None (cycles started before any was agreed): due by the month's last day, as always.
    call_day_of_month: int | None = Field(default=None, ge=1, le=31)
    calendar: BusinessCalendar
    technical_lead: TechnicalLead
    contacts: list[Contact]
    policy: ProgramPolicy = Field(default_factory=ProgramPolicy)
    # A month long gone when the programme was taken over: nothing is mailed for it.
    stale: bool = False


class ScheduleCall(StepInput):
    call_at: datetime
    duration_minutes: int = Field(default=60, ge=15, le=480)
    dial_in: str = ""
    agenda: str = "Open and closed issues, tasks, coming events and changes, planning (A5)"


class HoldCall(StepInput):
    held_on: date
    attendees: list[str] = Field(min_length=1)
    notes: str = Field(min_length=1)


class ApproveReport(StepInput):
    # Rule D7: kept with the report's history (CycleStatus.report_reviews) and shown to staff.
    comments: str = ""
    # The draft version read: an approval of version 1 racing a send-back that made version 2 is refused.
    # None approves the current draft (the command line, cycles before month-end reports).
    version: int | None = Field(default=None, ge=1)


class SendBackReport(StepInput):
    """Rule D7/A6: the TL sends the month-end draft back; it is drafted again and the comments are kept."""

    comments: str = Field(min_length=1)
    # What the call's notes should say in the next draft, when the comments are about them.
    call_notes: str | None = None
    # Rule D6: the call did take place but was recorded too late (the month's steps were marked missed):
    # its date, with `call_notes`, and the next draft reports it held.
    held_on: date | None = None


class ReportReview(BaseModel):
    """One decision of the TL on one draft of the month's report (D7), oldest first."""

    version: int
    decision: Literal["sent_back", "approved"]
    by: str
    at: datetime
    comments: str = ""


class RecordExtraCall(StepInput):
    """Rule C10: a second call or report in the same month is a billable extra."""

    held_on: date
    notes: str = Field(min_length=1)
    agreement_ref: str = Field(min_length=1)


class RecordExtraReport(StepInput):
    """Rule C10: a follow-up report beyond the cycle's included one is a billable extra."""

    delivered_on: date
    description: str = Field(min_length=1)
    agreement_ref: str = Field(min_length=1)


class CycleStatus(BaseModel):
    workflow_id: str
    customer_id: str
    period: int
    month: int
    month_start: date
    month_end: date
    steps: list[StepState]
    # Rule C7: who is reminded of the cycle's steps now (the programme's TL, moved by a reassignment).
    technical_lead_id: str = ""
    call_at: datetime | None = None
    call_held_on: date | None = None
    call_notes: str | None = None
    report_document_id: int | None = None
    report_summary: str | None = None
    # Rule D7 (month-end reports): the draft is generated at the first business hour after the cycle's
    # months end (`report_draft_at`), covering all of it; each draft is a new version, and only the approved
    # one reaches the workspace. False for cycles started before (their draft was made when the call was held).
    month_end_report: bool = False
    report_draft_at: datetime | None = None
    report_version: int = 0
    report_reviews: list[ReportReview] = Field(default_factory=list)
    no_call_held: bool = False  # the months ended without the included call: the report says so
    extra_calls: int = 0
    extra_call_keys: list[str] = Field(default_factory=list)  # "<held_on> <agreement_ref>" of each, C10
    extra_reports: int = 0
    extra_report_keys: list[str] = Field(default_factory=list)  # "<delivered_on> <agreement_ref>" of each, C10
    done: bool = False
    rejections: list[Rejection] = Field(default_factory=list)  # refused `complete_step` signals
    technical_lead_changes: list[TechnicalLeadChange] = Field(default_factory=list)  # rule C7


class CycleResult(BaseModel):
    month: int
    call_held_on: date | None
    report_document_id: int | None
    extra_calls: int
    extra_reports: int = 0


class CycleCallHeld(BaseModel):
    """Signal from a monthly cycle to its programme as the call is recorded (D6): with month-end reports the
    cycle completes after its month, after the period for the last one, and the final report counts calls."""

    period: int
    month: int
    held_on: date


class CycleCompleted(BaseModel):
    """Signal from a monthly cycle to its programme (works across continue-as-new)."""

    period: int
    month: int
    call_held_on: date | None = None
    report_document_id: int | None = None
    extra_calls: int = 0
    extra_reports: int = 0
