"""Who may see and do what. Every route that takes an ID goes through `customer_in_reach`.

- A customer contact sees their own customer's workspace, nothing else; once the programme has
  closed, only reads it (`Principal.closed`, rule D10) until its access ends (portal/auth.py).
- A Technical Lead sees the programmes they lead (`programmes.technical_lead_id`).
- GTS engineers, support managers, operations and admins see every customer.

A customer out of reach answers 404 exactly like one that does not exist, so
changing an ID in a URL tells nobody whether another customer exists (never 403).
An action the person may not take on a customer they *can* see answers 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal.auth import Principal
from storage.tables import CustomerRow, ProgrammeRow
from storage.users import Role

# Largest row ID the database holds (PostgreSQL `integer`): a larger one in a URL is a 422, not a driver error.
MAX_ROW_ID = 2_147_483_647


class NotFound(HTTPException):
    def __init__(self, what: str = "page") -> None:
        super().__init__(404, f"no such {what}")


class Forbidden(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(403, detail)


class Action(StrEnum):
    view = "view"
    open_request = "open_request"
    answer_resolution = "answer_resolution"  # accept or reject OT's proposed measures (A4)
    comment = "comment"  # a message to a request's thread (A4)
    answer_request = "answer_request"  # OT's side of a request: respond (C12), pend, resume, propose, priority (A4)
    desk = "desk"  # the queue of open requests across customers (C12)
    quarantine = "quarantine"  # mail replies that were not posted, with the reason (any customer's)
    approve_dispatch_customer = "approve_dispatch_customer"  # A4: the customer accepts the extra cost
    approve_dispatch_manager = "approve_dispatch_manager"  # A4: an OT support manager approves
    give_notice = "give_notice"  # C16, the customer's written notice
    record_notice = "record_notice"  # C16, ops record a notice from either party
    start_programme = "start_programme"
    record_extra = "record_extra"
    ops_pages = "ops_pages"
    inbox = "inbox"
    audit_log = "audit_log"  # who did what, from which interface (portal/audit.py)
    price_list = "price_list"  # OT's price list that prices billable extras (C3), read-only
    holiday_lists = "holiday_lists"  # OT's holiday lists that due dates and deadlines skip (A1), read-only


ALLOWED: dict[Action, frozenset[Role]] = {
    Action.view: frozenset(Role),
    Action.open_request: frozenset({Role.contact, Role.tl, Role.ops, Role.support_rep, Role.support_manager,
                                    Role.admin}),
    Action.answer_resolution: frozenset({Role.contact, Role.admin}),
    Action.comment: frozenset({Role.contact, Role.tl, Role.ops, Role.support_rep, Role.support_manager, Role.admin}),
    Action.answer_request: frozenset({Role.tl, Role.ops, Role.support_rep, Role.support_manager, Role.admin}),
    Action.desk: frozenset({Role.tl, Role.ops, Role.support_rep, Role.support_manager, Role.admin}),
    Action.quarantine: frozenset({Role.ops, Role.support_rep, Role.support_manager, Role.admin}),
    Action.approve_dispatch_customer: frozenset({Role.contact, Role.admin}),
    Action.approve_dispatch_manager: frozenset({Role.support_manager, Role.admin}),
    Action.give_notice: frozenset({Role.contact}),
    Action.record_notice: frozenset({Role.ops, Role.admin}),
    Action.start_programme: frozenset({Role.ops, Role.admin}),
    Action.record_extra: frozenset({Role.ops, Role.admin}),
    Action.ops_pages: frozenset({Role.ops, Role.admin, Role.support_manager, Role.gts}),
    Action.inbox: frozenset({Role.tl, Role.gts, Role.ops, Role.admin, Role.support_manager}),
    Action.audit_log: frozenset({Role.ops, Role.admin}),
    Action.price_list: frozenset({Role.ops, Role.admin}),
    Action.holiday_lists: frozenset({Role.ops, Role.admin}),
}

# Steps each role may complete (on a programme it can see). TLs complete every step of
# the programmes they lead; GTS add their configuration findings (A8).
STEP_ROLES: dict[Role, frozenset[str] | None] = {Role.tl: None, Role.admin: None,
                                                  Role.gts: frozenset({"add_findings"})}


def may(principal: Principal, action: Action) -> bool:
    if principal.closed is not None and action != Action.view:
        return False  # rule D10: a closed programme's contacts read their workspace, nothing more
    return principal.role in ALLOWED[action]


def require(principal: Principal, action: Action) -> None:
    if principal.closed is not None and action != Action.view:
        raise Forbidden(f"your programme closed on {principal.closed.closed_at:%Y-%m-%d}: the workspace is "
                        f"read-only until {principal.closed.access_ends_at:%Y-%m-%d %H:%M} UTC")
    if not may(principal, action):
        raise Forbidden(f"a {principal.role_label} may not do this ({action.value.replace('_', ' ')})")


def may_complete_step(principal: Principal, step: str) -> bool:
    if principal.role not in STEP_ROLES:
        return False
    allowed = STEP_ROLES[principal.role]
    return allowed is None or step in allowed


def require_step(principal: Principal, step: str) -> None:
    if not may_complete_step(principal, step):
        raise Forbidden(f"a {principal.role_label} does not complete {step}")


def require_programme_list(principal: Principal) -> None:
    """The programme lists: a Technical Lead's own, or every programme for OpenText staff."""
    if not (principal.role == Role.tl or may(principal, Action.ops_pages)):
        raise Forbidden("programmes are for Technical Leads and OpenText staff")


@dataclass(frozen=True)
class CustomerInReach:
    id: str
    name: str
    programme: ProgrammeRow | None


async def customer_in_reach(session: AsyncSession, principal: Principal, customer_id: str) -> CustomerInReach:
    """The customer, if this person may see it; 404 otherwise (also when it does not exist)."""
    customer = await session.get(CustomerRow, customer_id)
    programme = await session.get(ProgrammeRow, customer_id, populate_existing=True)
    name = customer.name if customer else (programme.status.get("customer_name") if programme else None)
    if principal.role == Role.contact:
        if principal.customer_id != customer_id:
            raise NotFound("workspace")
        # Their own workspace exists for them even before the programme has written a row.
        return CustomerInReach(customer_id, str(name or customer_id), programme)
    if customer is None and programme is None:
        raise NotFound("customer")
    if principal.role == Role.tl and (programme is None or programme.technical_lead_id != principal.technical_lead_id):
        raise NotFound("customer")
    return CustomerInReach(customer_id, str(name or customer_id), programme)


async def customers_in_reach(session: AsyncSession, principal: Principal) -> list[CustomerInReach]:
    """Every customer this person may see, by name."""
    if principal.role == Role.contact:
        return [await customer_in_reach(session, principal, principal.customer_id or "")]
    stmt = (select(CustomerRow, ProgrammeRow).outerjoin(ProgrammeRow, ProgrammeRow.customer_id == CustomerRow.id)
            .order_by(CustomerRow.name))
    if principal.role == Role.tl:
        stmt = stmt.where(ProgrammeRow.technical_lead_id == principal.technical_lead_id)
    rows = (await session.execute(stmt)).all()
    return [CustomerInReach(c.id, c.name, p) for c, p in rows]


@dataclass(frozen=True)
class CustomerName:
    id: str
    name: str


async def customer_names_in_reach(session: AsyncSession, principal: Principal) -> list[CustomerName]:
    """`customers_in_reach` without the programmes' state: the choices of a filter (one light query)."""
    if principal.role == Role.contact:
        c = await customer_in_reach(session, principal, principal.customer_id or "")
        return [CustomerName(c.id, c.name)]
    stmt = select(CustomerRow.id, CustomerRow.name).order_by(CustomerRow.name)
    if principal.role == Role.tl:
        stmt = stmt.join(ProgrammeRow, ProgrammeRow.customer_id == CustomerRow.id).where(
            ProgrammeRow.technical_lead_id == principal.technical_lead_id)
    return [CustomerName(i, n) for i, n in (await session.execute(stmt)).all()]
