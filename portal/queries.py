"""What the portal reads from the database (the system of record), shaped for pages and the API.

The programme projection (`programmes.status`) is the workflow's last saved state;
requests, their status history and SLA events come from the tables the request
workflow writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.naming import request_workflow_id
from domain.request import AttachmentRef, AuthorRole, Message
from storage import repositories as repo
from storage.repositories import as_utc
from storage.repositories.common import AnySelect, where_given
from storage.tables import (
    BillableExtraRow,
    CustomerRow,
    DocumentRow,
    OpenStepRow,
    ProgrammeRow,
    SupportRequestRow,
)

DOCUMENT_KINDS: dict[str, str] = {
    "welcome": "Welcome",
    "kickoff_minutes": "Meeting minutes",
    "communication_plan": "Communication plan",
    "site_inventory": "Site inventory",
    "configuration_findings": "Configuration findings",
    "analysis_presentation": "Analysis presentation",
    "monthly_report": "Monthly report",
    "monthly_report_draft": "Monthly report draft (staff only, D7)",
    "renewal_notice": "Notice",
    "non_renewal_notice": "Notice",
    "final_report": "Final report",
}


def _date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


class ProgrammeFacts(BaseModel):
    # The columns a page and the API both show, declared once; the API's ProgrammeOut extends it (its field
    # order, and so its JSON, starts with these).
    customer_id: str
    customer_name: str
    workflow_id: str
    period: int
    phase: str
    technical_lead_id: str
    period_start: date | None
    period_end: date | None
    non_renewal_deadline: date | None


class ProgrammeView(ProgrammeFacts):
    """A programme as the pages show it, from its projection row."""

    technical_lead_name: str
    open_steps: list[dict[str, Any]] = Field(default_factory=list)
    overdue_steps: list[dict[str, Any]] = Field(default_factory=list)
    non_renewal: dict[str, Any] | None = None
    renewal_notice_sent: bool = False
    updated_at: datetime | None = None

    @property
    def days_to_end(self) -> int | None:
        return (self.period_end - date.today()).days if self.period_end else None

    def as_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id, "customer_name": self.customer_name, "workflow_id": self.workflow_id,
            "period": self.period, "phase": self.phase, "technical_lead_id": self.technical_lead_id,
            "period_start": self.period_start, "period_end": self.period_end,
            "non_renewal_deadline": self.non_renewal_deadline,
            "open_steps": [s["step"] for s in self.open_steps],
            "overdue_steps": [s["step"] for s in self.overdue_steps],
            "non_renewal": self.non_renewal,
        }


class ProgrammeFields(Protocol):
    """What a programme's view reads of its projection row: a `ProgrammeRow`, or a row of `_LISTED_COLUMNS`."""

    customer_id: str
    workflow_id: str
    period: int
    phase: str
    technical_lead_id: str
    period_start: date | None
    period_end: date | None
    status: dict[str, Any]
    updated_at: datetime


@dataclass
class _Listed:
    """A programme as a list reads it (see `programme_views`)."""

    customer_id: str
    workflow_id: str
    period: int
    phase: str
    technical_lead_id: str
    period_start: date | None
    period_end: date | None
    status: dict[str, Any]
    updated_at: datetime


# What a list shows of a programme, read as columns and as the parts of its status `programme_view` reads, not as
# ORM rows with the whole status: a page of 50 builds no entities and decodes a third of the JSON (issue 16: the
# programme list's p95 at 1,000 programmes; the cycles' and the plan's details stay in the database).
_LISTED_COLUMNS = (ProgrammeRow.customer_id, ProgrammeRow.workflow_id, ProgrammeRow.period, ProgrammeRow.phase,
                   ProgrammeRow.technical_lead_id, ProgrammeRow.period_start, ProgrammeRow.period_end,
                   ProgrammeRow.updated_at)
_LISTED_STATUS = (ProgrammeRow.status["technical_lead"],
                  ProgrammeRow.status["steps"], ProgrammeRow.status["renewal"],
                  ProgrammeRow.status[("plan", "non_renewal_deadline")])


def _listed(row: Any) -> tuple[_Listed, str]:
    (customer_id, workflow_id, period, phase, tl, start, end, updated_at, lead, steps, renewal,
     plan_deadline, customer_name) = row
    status = {"technical_lead": lead, "steps": steps or [], "renewal": renewal,
              "plan": {"non_renewal_deadline": plan_deadline}}
    return _Listed(customer_id, workflow_id, period, phase, tl, start, end, status, updated_at), customer_name


def programme_view(row: ProgrammeFields, customer_name: str) -> ProgrammeView:
    status: dict[str, Any] = row.status or {}
    plan = status.get("plan") or {}
    renewal = status.get("renewal") or {}
    steps = [s for s in status.get("steps", []) if isinstance(s, dict)]
    open_steps = [s for s in steps if s.get("status") == "open"]
    return ProgrammeView(
        customer_id=row.customer_id, customer_name=customer_name,
        workflow_id=row.workflow_id, period=row.period, phase=row.phase, technical_lead_id=row.technical_lead_id,
        technical_lead_name=str((status.get("technical_lead") or {}).get("name", row.technical_lead_id)),
        period_start=row.period_start, period_end=row.period_end,
        non_renewal_deadline=_date(renewal.get("non_renewal_deadline") or plan.get("non_renewal_deadline")),
        open_steps=open_steps, overdue_steps=[s for s in open_steps if s.get("escalated")],
        non_renewal=renewal.get("non_renewal"), renewal_notice_sent=bool(renewal.get("notice_sent")),
        updated_at=as_utc(row.updated_at) if row.updated_at else None,
    )


def _programme_filters(stmt: AnySelect, *, customer_ids: list[str] | None, phase: str | None, tl: str | None,
                       led_by: str | None, renewal_within_days: int | None, overdue: bool) -> AnySelect:
    if customer_ids is not None:
        stmt = stmt.where(ProgrammeRow.customer_id.in_(customer_ids))
    if phase:
        stmt = stmt.where(ProgrammeRow.phase == phase)
    if tl:
        stmt = stmt.where(ProgrammeRow.technical_lead_id == tl)
    if led_by:
        stmt = stmt.where(ProgrammeRow.technical_lead_id == led_by)
    if renewal_within_days is not None:
        stmt = stmt.where(ProgrammeRow.period_end.is_not(None),
                          ProgrammeRow.period_end <= date.today() + timedelta(days=renewal_within_days))
    if overdue:
        # The inbox projection knows which of the programme's own steps are overdue (issue 16).
        stmt = stmt.where(select(OpenStepRow.step).where(OpenStepRow.workflow_id == ProgrammeRow.workflow_id,
                                                         OpenStepRow.overdue).exists())
    return stmt


async def programme_views(
    session: AsyncSession, *, customer_ids: list[str] | None = None, phase: str | None = None, tl: str | None = None,
    led_by: str | None = None, renewal_within_days: int | None = None, overdue: bool = False,
    offset: int = 0, limit: int | None = None,
) -> list[ProgrammeView]:
    """Programmes for the operations pages, with their filters, by customer ID (`limit` rows from `offset`)."""
    stmt = _programme_filters(
        select(*_LISTED_COLUMNS, *_LISTED_STATUS, CustomerRow.name)
        # Every programme has its customer row: a foreign key, enforced on SQLite too (storage/db.py).
        .join(CustomerRow, CustomerRow.id == ProgrammeRow.customer_id),
        customer_ids=customer_ids, phase=phase, tl=tl, led_by=led_by, renewal_within_days=renewal_within_days,
        overdue=overdue)
    stmt = stmt.order_by(ProgrammeRow.customer_id).offset(offset).limit(limit)
    return [programme_view(*_listed(row)) for row in (await session.execute(stmt)).all()]


async def count_programmes(
    session: AsyncSession, *, customer_ids: list[str] | None = None, phase: str | None = None, tl: str | None = None,
    led_by: str | None = None, renewal_within_days: int | None = None, overdue: bool = False,
) -> int:
    stmt = _programme_filters(select(func.count()).select_from(ProgrammeRow), customer_ids=customer_ids, phase=phase,
                              tl=tl, led_by=led_by, renewal_within_days=renewal_within_days, overdue=overdue)
    return int(await session.scalar(stmt) or 0)


async def documents(session: AsyncSession, customer_id: str, *, drafts: bool = False) -> list[DocumentRow]:
    """Newest first: what a contact opens the workspace for (staff also see drafts waiting for approval, D7)."""
    rows = await repo.list_documents(session, customer_id, drafts=drafts)
    return sorted(rows, key=lambda d: (as_utc(d.created_at), d.id), reverse=True)


def sla_state(row: SupportRequestRow, now: datetime | None = None) -> tuple[str, str]:
    """(label, tone) of the first-response clock (C12) of a stored request."""
    return sla_of(row.state, row.first_response_deadline, row.first_response_at, row.sla_breached, now)


def sla_of(state: str, deadline: datetime | None, responded_at: datetime | None, breached: bool,
           now: datetime | None = None) -> tuple[str, str]:
    now = now or datetime.now(UTC)
    if responded_at is not None:
        return ("responded late", "bad") if breached else ("met", "good")
    if breached:
        return "breached", "bad"
    if state == "closed":
        return "closed", "muted"
    if deadline is not None:
        left = as_utc(deadline) - now
        minutes = int(left.total_seconds() // 60)
        if minutes < 0:
            return "breached", "bad"
        return f"running, {minutes} min left", "warn" if minutes <= 15 else "info"
    return "not started", "muted"


def request_json(row: SupportRequestRow) -> dict[str, Any]:
    label, _ = sla_state(row)
    return {
        "tracking_number": row.tracking_number, "customer_id": row.customer_id, "kind": row.kind,
        "priority": row.priority, "summary": row.summary, "state": row.state, "opened_at": as_utc(row.opened_at),
        "first_response_deadline": as_utc(row.first_response_deadline) if row.first_response_deadline else None,
        "first_response_at": as_utc(row.first_response_at) if row.first_response_at else None,
        "sla_breached": row.sla_breached, "sla": label, "filed_by": row.filed_by, "closure": row.closure,
    }


async def requests(session: AsyncSession, customer_id: str) -> list[SupportRequestRow]:
    rows = await repo.list_requests(session, customer_id=customer_id)
    return sorted(rows, key=lambda r: as_utc(r.opened_at), reverse=True)


@dataclass
class DeskRow:
    """One open request in the support desk's queue (C12): its clock, its customer and TL."""

    row: SupportRequestRow
    customer_name: str
    technical_lead_id: str
    sla: tuple[str, str]  # (label, tone) of the first-response clock

    @property
    def late(self) -> bool:
        """Breached, or the deadline passed without a response (marked; first when still unanswered)."""
        return self.sla[1] == "bad"

    @property
    def workflow_id(self) -> str:
        return request_workflow_id(self.row.tracking_number)


DESK_STATES = ("open", "pending")


@dataclass
class DeskPage:
    rows: list[DeskRow]
    total: int  # requests in the whole queue
    late: int  # of which late (breached, or past the deadline unanswered)


def _desk_filters(stmt: AnySelect, customer_ids: list[str] | None, customer: str | None, priority: str | None,
                  state: str | None, tl: str | None, led_by: str | None) -> AnySelect:
    stmt = (stmt.outerjoin(CustomerRow, CustomerRow.id == SupportRequestRow.customer_id)
            .outerjoin(ProgrammeRow, ProgrammeRow.customer_id == SupportRequestRow.customer_id)
            .where(SupportRequestRow.state.in_([state] if state in DESK_STATES else DESK_STATES)))
    if customer_ids is not None:
        stmt = stmt.where(SupportRequestRow.customer_id.in_(customer_ids))
    if led_by is not None:
        stmt = stmt.where(ProgrammeRow.technical_lead_id == led_by)
    return where_given(stmt, (SupportRequestRow.customer_id, customer), (SupportRequestRow.priority, priority),
                       (ProgrammeRow.technical_lead_id, tl))


async def desk_queue(session: AsyncSession, customer_ids: list[str] | None, *, customer: str | None = None,
                     priority: str | None = None, state: str | None = None, tl: str | None = None,
                     led_by: str | None = None, now: datetime | None = None, offset: int = 0,
                     limit: int | None = None) -> DeskPage:
    """The requests not closed across customers, ordered in SQL: the unanswered late ones first, then the
    clocks that run out soonest, then the answered ones (a late answer stays marked), oldest first; one query
    for the page, one for the counts. `customer_ids` None: every customer; `led_by`: a TL's programmes."""
    now = now or datetime.now(UTC)
    r = SupportRequestRow
    deadline = r.first_response_deadline
    waiting = (r.first_response_at.is_(None)) & deadline.is_not(None)
    late = or_(r.sla_breached, waiting & (deadline < now))
    rank = case((waiting & late, 0), (waiting, 1), else_=2)
    stmt = _desk_filters(select(r, CustomerRow.name, ProgrammeRow.technical_lead_id), customer_ids, customer,
                         priority, state, tl, led_by)
    stmt = (stmt.order_by(rank, case((rank < 2, deadline), else_=r.opened_at), r.tracking_number)
            .offset(offset).limit(limit).execution_options(populate_existing=True))
    found = [DeskRow(row, str(name or row.customer_id), str(tl_id or ""), sla_state(row, now))
             for row, name, tl_id in (await session.execute(stmt)).all()]
    counted = _desk_filters(select(func.count(), func.count().filter(late)).select_from(r), customer_ids,
                            customer, priority, state, tl, led_by)
    total, late_count = (await session.execute(counted)).one()
    return DeskPage(found, int(total or 0), int(late_count or 0))


async def request_of(session: AsyncSession, customer_id: str, tracking_number: str) -> SupportRequestRow | None:
    """`customer_id` must own the request: nobody reads another customer's request by its number."""
    row = await repo.get_request(session, tracking_number)
    return row if row is not None and row.customer_id == customer_id else None


@dataclass
class RequestDetail:
    row: SupportRequestRow
    history: list[Any]
    sla_events: list[Any]
    dispatches: list[Any]
    messages: list[Message]  # the conversation (A4), oldest first


async def request_detail(session: AsyncSession, row: SupportRequestRow) -> RequestDetail:
    messages = [Message(seq=m.seq, at=m.at, by=m.by, role=AuthorRole(m.role), via=m.via, text=m.text,
                        attachments=[AttachmentRef.model_validate(a) for a in m.attachments or []])
                for m in await repo.list_messages(session, row.tracking_number)]
    return RequestDetail(row=row, history=await repo.list_status_changes(session, row.tracking_number),
                         sla_events=await repo.list_sla_events(session, tracking_number=row.tracking_number),
                         dispatches=await repo.list_dispatches(session, tracking_number=row.tracking_number),
                         messages=messages)


async def billable_extras(session: AsyncSession, customer_ids: list[str] | None = None) -> list[BillableExtraRow]:
    stmt = (select(BillableExtraRow).order_by(BillableExtraRow.recorded_at.desc(), BillableExtraRow.id.desc())
            .execution_options(populate_existing=True))
    if customer_ids is not None:
        stmt = stmt.where(BillableExtraRow.customer_id.in_(customer_ids))
    return list((await session.execute(stmt)).scalars())


async def notices(session: AsyncSession, customer_ids: list[str] | None = None) -> list[DocumentRow]:
    """Renewal and non-renewal notices filed in workspaces (C14, C16), newest first."""
    stmt = (select(DocumentRow).where(DocumentRow.kind.in_(["renewal_notice", "non_renewal_notice"]))
            .order_by(DocumentRow.created_at.desc(), DocumentRow.id.desc()))
    if customer_ids is not None:
        stmt = stmt.where(DocumentRow.customer_id.in_(customer_ids))
    return list((await session.execute(stmt)).scalars())
