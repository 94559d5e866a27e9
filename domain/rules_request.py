"""Rules of a support request (A4, A6, C3, C12, C13): the opening check and what
SupportRequestWorkflow's validators and re-checks ask. Pure functions returning the violations;
`domain/refusal.refusal_text` words them. Times in messages are the programme's local time."""

from __future__ import annotations

from datetime import datetime

from domain.enrolment import Contact
from domain.errors import RuleViolation
from domain.local_time import format_local, local_date
from domain.refusal import plain, violation
from domain.request import (
    AcceptResolution,
    AddComment,
    ApproveDispatch,
    AuthorRole,
    ChangePriority,
    Dispatch,
    DispatchState,
    NewRequest,
    Pend,
    ProposeResolution,
    RecordVisit,
    RecordWrittenAcceptance,
    RejectResolution,
    RequestDispatch,
    RequestState,
    RequestStatus,
    Respond,
    Resume,
)

# Dispatches that still hold the request's on-site support: one at a time.
ACTIVE_DISPATCH = (DispatchState.requested, DispatchState.approved, DispatchState.booked)


def check_customisation(new: NewRequest) -> list[RuleViolation]:
    """Rule C13: customisations of OT products are not covered without a separate agreement."""
    if new.customisation and not (new.agreement_ref or "").strip():
        return [violation("C13", "customisations of OT products are not covered; a request marked as customisation "
                                 "needs the reference of a separate agreement (agreement_ref)", "agreement_ref")]
    return []


def party_label(party: str) -> str:
    return "customer's" if party == "customer" else "OT support manager's"


def approval_expired(n: int, party: str, due: datetime, timezone: str) -> str:
    """Rule A4: why a dispatch without both approvals in time is refused (kept on the dispatch)."""
    return (f"rule A4: dispatch #{n} refused: the {party_label(party)} approval was not given by its deadline "
            f"{format_local(due, timezone)}; nothing is billed")


def check_live(status: RequestStatus, action: str) -> list[RuleViolation]:
    if status.state == RequestState.closed:
        why = status.closure or status.refusal
        return [plain(f"{action} refused: request {status.tracking_number} is closed" + (f" ({why})" if why else ""))]
    return []


def current_dispatch(status: RequestStatus) -> tuple[int, Dispatch] | None:
    """The latest dispatch and its number (1-based), if any was requested."""
    return (len(status.dispatches), status.dispatches[-1]) if status.dispatches else None


def _live_dispatch(status: RequestStatus, action: str) -> tuple[int, Dispatch] | list[RuleViolation]:
    """The request's latest dispatch, numbered, for a step on it; else why the step is refused."""
    if v := check_live(status, action):
        return v
    current = current_dispatch(status)
    if current is None:
        return [plain(f"{action} refused: no on-site dispatch was requested for {status.tracking_number}")]
    return current


def check_no_open_visit(status: RequestStatus, action: str) -> list[RuleViolation]:
    """Rules A4, C3: an approved or booked visit is recorded (and billed) before the request closes."""
    for n, d in enumerate(status.dispatches, 1):
        if d.state in (DispatchState.approved, DispatchState.booked):
            return [plain(f"{action} refused: on-site dispatch #{n} is {d.state.value}"
                          + (f" (booking {d.booking_ref})" if d.booking_ref else "")
                          + "; record its visit (record_visit) first so its cost is billed (rule A4, C3)")]
    return []


def check_respond(status: RequestStatus, inp: Respond, timezone: str) -> list[RuleViolation]:
    if v := check_live(status, "respond"):
        return v
    if status.first_response_at is not None:
        return [plain(f"request {status.tracking_number} was answered already by {status.first_response_by} at "
                      f"{format_local(status.first_response_at, timezone)}; the first-response clock (C12) has "
                      f"stopped")]
    return []


def check_pend(status: RequestStatus, inp: Pend) -> list[RuleViolation]:
    if v := check_live(status, "pend"):
        return v
    if status.state == RequestState.pending:
        return [plain(f"request {status.tracking_number} is already pending: {status.pending_reason}")]
    return []


def check_resume(status: RequestStatus, inp: Resume) -> list[RuleViolation]:
    if v := check_live(status, "resume"):
        return v
    if status.state != RequestState.pending:
        return [plain(f"request {status.tracking_number} is {status.state.value}, not pending: nothing to resume")]
    if status.proposal is not None:
        return [plain(f"the measures proposed by {status.proposal.proposed_by} await the customer's answer: "
                      f"accept_resolution or reject_resolution")]
    return []


def check_propose(status: RequestStatus, inp: ProposeResolution, timezone: str) -> list[RuleViolation]:
    if v := check_live(status, "propose_resolution"):
        return v
    p = status.proposal
    if p is not None:
        return [plain(f"measures proposed by {p.proposed_by} at {format_local(p.proposed_at, timezone)} already "
                      f"await the customer's answer")]
    return []


def check_accept(status: RequestStatus, inp: AcceptResolution) -> list[RuleViolation]:
    """Rule A4: the request closes when the customer accepts measures OT proposed."""
    if v := check_live(status, "accept_resolution"):
        return v
    if status.proposal is None:
        return [violation("A4", f"request {status.tracking_number} has no proposed measures to accept; it closes "
                                f"only when OT proposes measures (propose_resolution) and the customer accepts "
                                f"them, or ops record the customer's written acceptance")]
    return check_no_open_visit(status, "accept_resolution")


def check_reject(status: RequestStatus, inp: RejectResolution) -> list[RuleViolation]:
    if v := check_live(status, "reject_resolution"):
        return v
    if status.proposal is None:
        return [plain(f"request {status.tracking_number} has no proposed measures to reject")]
    return []


def check_written_acceptance(status: RequestStatus, inp: RecordWrittenAcceptance) -> list[RuleViolation]:
    """Rule A4: or ops record the customer's written acceptance."""
    return check_live(status, "record_written_acceptance") or check_no_open_visit(status, "record_written_acceptance")


def check_change_priority(status: RequestStatus, inp: ChangePriority) -> list[RuleViolation]:
    """Rule A4: the priority is agreed with the customer; a change names its reason and changes something."""
    if v := check_live(status, "change_priority"):
        return v
    if inp.priority == status.priority:
        return [plain(f"request {status.tracking_number} is {status.priority.value} priority already", "priority")]
    if not inp.reason.strip():
        return [violation("A4", "a priority change needs the reason agreed with the customer", "reason")]
    return []


def check_comment(status: RequestStatus, inp: AddComment, contacts: list[Contact],
                  technical_lead_id: str) -> list[RuleViolation]:
    """Rule A4: the request is followed with the customer; a message comes from a contact of this
    customer, the request's TL, or staff (whose role the face has checked), while it is not closed."""
    if v := check_live(status, "add_comment"):
        return v
    if not inp.message.strip():
        return [plain("a message needs some text", "message")]
    if inp.role == AuthorRole.customer and inp.by.strip().lower() not in {str(c.email).lower() for c in contacts}:
        return [violation("A4", f"{inp.by} is not a contact of customer {status.customer_id}", "by")]
    if inp.role == AuthorRole.technical_lead and inp.by != technical_lead_id:
        return [violation("A4", f"{inp.by} is not the Technical Lead of request {status.tracking_number}", "by")]
    return []


def check_request_dispatch(status: RequestStatus, inp: RequestDispatch) -> list[RuleViolation]:
    """Rule A4: one on-site dispatch at a time."""
    if v := check_live(status, "request_dispatch"):
        return v
    for n, d in enumerate(status.dispatches, 1):
        if d.state in ACTIVE_DISPATCH:
            return [plain(f"request_dispatch refused: dispatch #{n} is still {d.state.value}")]
    return []


def check_approve_dispatch(status: RequestStatus, inp: ApproveDispatch, now: datetime,
                           timezone: str) -> list[RuleViolation]:
    """Rule A4: the customer and an OT support manager each approve once, within their deadline."""
    current = _live_dispatch(status, "approve_dispatch")
    if isinstance(current, list):
        return current
    n, d = current
    if d.state == DispatchState.refused:
        return [plain(d.refusal) if d.refusal else violation("A4", f"dispatch #{n} was refused")]
    if d.state != DispatchState.requested:
        return [plain(f"dispatch #{n} is {d.state.value} already; no approval is pending")]
    approved_by, due = ((d.customer_approved_by, d.customer_approval_due_at) if inp.party == "customer"
                        else (d.manager_approved_by, d.manager_approval_due_at))
    if approved_by is not None:
        return [plain(f"the {party_label(inp.party)} approval of dispatch #{n} was given by {approved_by}")]
    if now >= due:
        return [violation("A4", f"the {party_label(inp.party)} approval of dispatch #{n} is late: its deadline was "
                                f"{format_local(due, timezone)}; the dispatch is refused and nothing is billed")]
    return []


def check_visit(status: RequestStatus, inp: RecordVisit, timezone: str) -> list[RuleViolation]:
    """Rule A4: only a booked visit (both approvals in) is recorded, in the estimate's currency."""
    current = _live_dispatch(status, "record_visit")
    if isinstance(current, list):
        return current
    n, d = current
    if d.state != DispatchState.booked:
        return [plain(f"record_visit refused: dispatch #{n} is {d.state.value}; only a booked visit "
                      f"(both approvals in) can be recorded")]
    requested_on = local_date(d.requested_at, timezone)
    if inp.visit_on < requested_on:
        return [plain(f"visit_on {inp.visit_on} is before dispatch #{n} was requested ({requested_on})", "visit_on")]
    if inp.actual_cost is not None and inp.actual_cost.currency != d.estimated_cost.currency:
        return [plain(f"actual_cost is in {inp.actual_cost.currency}; the agreed estimate is in "
                      f"{d.estimated_cost.currency}", "actual_cost.currency")]
    return []
