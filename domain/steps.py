"""The step registry: every Update a person sends to a programme, a monthly cycle or a request.

One `StepSpec` per Update says what it is called, which workflow takes it, the payload model, the
title people read, the handbook rules it serves and what it waits for. The workflows derive their
`complete_step` tables, the steps they track and the default due dates from it; the CLI's step
lists and the portal's forms can derive from `steps_of` and `spec`.

To add a step: a `StepSpec` here, its payload model (`domain/step_inputs.py`, `domain/cycle.py` or
`domain/request.py`), its Update and validator (`_validate_<name>`) in the workflow, its mail or
document template. The workflow refuses to load if the registry names an Update it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain import request, step_inputs
from domain.cycle import (
    ApproveReport,
    CycleStepName,
    HoldCall,
    RecordExtraCall,
    RecordExtraReport,
    ScheduleCall,
    SendBackReport,
)
from domain.step_inputs import StepInput, StepName


class Workflow(StrEnum):
    """Which workflow takes the Update: `program-<customer>`, its month `...-p<P>-m<MM>`, `request-<TN>`."""

    program = "program"
    cycle = "cycle"
    request = "request"


class DueFrom(StrEnum):
    """The date a tracked step's default due date counts from (the handbook's deliverable timings)."""

    period_start = "period_start"  # the onboarding deliverables (D4, D5, D8, D9)
    month_start = "month_start"  # the month's call is scheduled early in the month (D6)
    month_end = "month_end"  # ... and held within it (D6): due on the last day itself
    next_month = "next_month"  # the month's report is approved early the month after (D7)


@dataclass(frozen=True)
class StepSpec:
    name: str  # the Update's name, and the `step` of a `complete_step` signal
    workflow: Workflow
    payload: type[StepInput]
    title: str
    rules: tuple[str, ...]
    # Steps that must be done before this one opens (tracked steps only).
    waits_for: tuple[str, ...] = ()
    # A to-do of the workflow's status (`StepState`), with a due date, reminders and escalations.
    tracked: bool = False
    # Whether the `complete_step` signal route takes it (tools that can only signal).
    by_signal: bool = True
    # Where its default due date counts from, and the ProgramPolicy field giving how many business
    # days after that (none: due on that date itself). Every tracked step has one.
    due_from: DueFrom | None = None
    due_policy: str | None = None
    # The kickoff minutes' `AgreedDates` field that replaces its default due date (D4/A2).
    agreed_date: str | None = None

    def __post_init__(self) -> None:
        # Enum members in, plain strings kept: names are compared, sorted and printed as text.
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "waits_for", tuple(str(w) for w in self.waits_for))
        if self.tracked and self.due_from is None:
            raise ValueError(f"tracked step {self.name} needs due_from (its default due date)")

    @property
    def rule(self) -> str:
        """The deliverable a `StepState` and the reports show, e.g. "D4": the first of `rules`. Running
        programmes already carry this text in their status, so the annex rules are not added to it."""
        return self.rules[0]

    @property
    def citation(self) -> str:
        """Every rule the step serves, e.g. "D4, A2", as the portal's step form cites them."""
        return ", ".join(self.rules)


_P, _C, _R = Workflow.program, Workflow.cycle, Workflow.request
_PERIOD = DueFrom.period_start

STEPS: tuple[StepSpec, ...] = (
    # ---- programme (rules D4, D5, D8, D9 and the changes of a running programme)
    StepSpec(StepName.schedule_kickoff, _P, step_inputs.ScheduleKickoff,
             "Schedule the planning and review meeting", ("D4", "A2"),
             tracked=True, due_from=_PERIOD, due_policy="kickoff_schedule_business_days"),
    StepSpec(StepName.complete_kickoff, _P, step_inputs.CompleteKickoff,
             "Hold the planning and review meeting, file its minutes",
             ("D4", "A2"), waits_for=(StepName.schedule_kickoff,), tracked=True,
             due_from=_PERIOD, due_policy="kickoff_held_business_days"),
    StepSpec(StepName.deliver_communication_plan, _P, step_inputs.DeliverCommunicationPlan,
             "Deliver the communication plan",
             ("D5", "A3"), waits_for=(StepName.complete_kickoff,), tracked=True,
             due_from=_PERIOD, due_policy="communication_plan_business_days", agreed_date="communication_plan"),
    StepSpec(StepName.submit_site_inventory, _P, step_inputs.SubmitSiteInventory,
             "Submit the site inventory", ("D8", "A7"),
             waits_for=(StepName.complete_kickoff,), tracked=True, due_from=_PERIOD,
             due_policy="site_inventory_business_days",
             agreed_date="site_inventory"),
    StepSpec("update_site_inventory", _P, step_inputs.SubmitSiteInventory, "Update the site inventory", ("D8", "A7")),
    StepSpec(StepName.add_findings, _P, step_inputs.AddFindings, "Add GTS/TL configuration findings", ("D9", "A8"),
             waits_for=(StepName.submit_site_inventory,), tracked=True,
             due_from=_PERIOD, due_policy="configuration_analysis_business_days",
             agreed_date="configuration_analysis"),
    StepSpec(StepName.present_configuration_analysis, _P, step_inputs.PresentConfigurationAnalysis,
             "Present the configuration analysis", ("D9", "A8"), waits_for=(StepName.add_findings,), tracked=True,
             due_from=_PERIOD, due_policy="configuration_analysis_business_days",
             agreed_date="configuration_analysis"),
    StepSpec("reassign_technical_lead", _P, step_inputs.ReassignTechnicalLead, "Assign another Technical Lead", ("C7",),
             by_signal=False),
    StepSpec("add_contact", _P, step_inputs.AddContact, "Add a contact", ("C4",), by_signal=False),
    StepSpec("record_billable_extra", _P, step_inputs.RecordBillableExtra, "Record a billable extra", ("C3",)),
    StepSpec("propose_renewal_price", _P, step_inputs.ProposeRenewalPrice,
             "Propose the next period's price", ("C14", "C15"),
             by_signal=False),
    StepSpec("give_non_renewal_notice", _P, step_inputs.GiveNonRenewalNotice, "Record a non-renewal notice", ("C16",)),
    StepSpec("record_renewal_invoice_paid", _P, step_inputs.RecordInvoicePaid,
             "Record the renewal invoice paid", ("C14",),
             by_signal=False),
    StepSpec("agree_call_frequency", _P, step_inputs.AgreeCallFrequency,
             "Agree the follow-up call and report frequency", ("C10",), by_signal=False),
    # ---- monthly cycle (D6, D7, C10): one after the other
    StepSpec(CycleStepName.schedule_call, _C, ScheduleCall, "Schedule the monthly follow-up call", ("D6", "A5"),
             tracked=True, due_from=DueFrom.month_start, due_policy="call_schedule_business_days"),
    StepSpec(CycleStepName.hold_call, _C, HoldCall, "Hold the follow-up call, record its notes", ("D6", "A5"),
             waits_for=(CycleStepName.schedule_call,), tracked=True, due_from=DueFrom.month_end),
    StepSpec(CycleStepName.approve_report, _C, ApproveReport, "Approve the monthly follow-up report", ("D7", "A6"),
             waits_for=(CycleStepName.hold_call,), tracked=True, due_from=DueFrom.next_month,
             due_policy="report_approval_business_days"),
    StepSpec("send_back_report", _C, SendBackReport, "Send the monthly report back with comments", ("D7", "A6")),
    StepSpec("record_extra_call", _C, RecordExtraCall, "Record an extra call this month", ("C10",)),
    StepSpec("record_extra_report", _C, RecordExtraReport, "Record an extra report this cycle", ("C10",)),
    # ---- support request (A4, A6, C3, C12): the request's state decides what is allowed
    StepSpec("respond", _R, request.Respond, "Give the first response", ("C12",)),
    StepSpec("pend", _R, request.Pend, "Wait for the customer", ("A6",)),
    StepSpec("resume", _R, request.Resume, "Resume the request", ("A6",)),
    StepSpec("propose_resolution", _R, request.ProposeResolution, "Propose measures", ("A4",)),
    StepSpec("accept_resolution", _R, request.AcceptResolution, "Accept the proposed measures", ("A4",)),
    StepSpec("reject_resolution", _R, request.RejectResolution, "Reject the proposed measures", ("A4",)),
    StepSpec("record_written_acceptance", _R, request.RecordWrittenAcceptance,
             "Record the customer's written acceptance",
             ("A4",)),
    StepSpec("add_comment", _R, request.AddComment, "Add a message to the request's thread", ("A4",)),
    StepSpec("change_priority", _R, request.ChangePriority, "Change the priority agreed with the customer",
             ("A4",)),
    StepSpec("request_dispatch", _R, request.RequestDispatch, "Request an on-site dispatch", ("A4", "C3")),
    StepSpec("approve_dispatch", _R, request.ApproveDispatch, "Approve an on-site dispatch", ("A4",)),
    StepSpec("record_visit", _R, request.RecordVisit, "Record the on-site visit", ("A4", "C3")),
)

_BY_NAME: dict[str, StepSpec] = {s.name: s for s in STEPS}
if len(_BY_NAME) != len(STEPS):
    raise ValueError("two steps share a name in domain/steps.py")


def spec(name: str) -> StepSpec:
    """The step named `name`; KeyError if there is none."""
    return _BY_NAME[name]


def steps_of(workflow: Workflow) -> list[StepSpec]:
    """The workflow's Updates, in registry order (the CLI's and the portal's order)."""
    return [s for s in STEPS if s.workflow == workflow]


def tracked_steps(workflow: Workflow) -> list[StepSpec]:
    """The to-dos of the workflow's status, in the order they are done."""
    return [s for s in STEPS if s.workflow == workflow and s.tracked]


def signal_steps(workflow: Workflow) -> list[StepSpec]:
    """What the workflow's `complete_step` signal takes."""
    return [s for s in STEPS if s.workflow == workflow and s.by_signal]


def updates_of(workflow: Workflow) -> dict[str, type[StepInput]]:
    """Update name -> payload model (the CLI's PROGRAM_UPDATES / CYCLE_UPDATES)."""
    return {s.name: s.payload for s in steps_of(workflow)}


# The programme's tracked steps as the rest of the code has always read them.
STEP_TITLES: dict[StepName, str] = {StepName(s.name): s.title for s in tracked_steps(Workflow.program)}
STEP_RULES: dict[StepName, str] = {StepName(s.name): s.rule for s in tracked_steps(Workflow.program)}
STEP_DEPENDS_ON: dict[StepName, list[StepName]] = {
    StepName(s.name): [StepName(d) for d in s.waits_for] for s in tracked_steps(Workflow.program)
}
