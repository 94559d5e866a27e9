"""The JSON API under /api (OpenAPI at /api/openapi.json, docs at /api/docs; models in portal/schemas.py).

Authentication: `Authorization: Bearer <token>` (tokens from /account or `techconnect
user token`), or the portal's session cookie plus an `X-CSRF-Token` header for
unsafe methods. The same access rules as the pages: another customer's IDs answer 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from domain.enrolment import Enrolment
from domain.errors import RuleRefused
from domain.inbox import PAGE_SIZE
from domain.request import AcceptResolution, ApproveDispatch, NewRequest
from portal import access, actions, audit, queries
from portal.access import Action, NotFound
from portal.auth import Principal, check_csrf, require_user
from portal.routers.common import programme_tz
from portal.schemas import (
    ApprovalIn,
    AuditEntryOut,
    AuditPage,
    CustomerOut,
    DeskItem,
    DispatchOut,
    DocumentBody,
    DocumentOut,
    InboxItem,
    Me,
    NoticeIn,
    Opened,
    OpenRequestIn,
    ProgrammeOut,
    Refusal,
    RequestDetailOut,
    RequestOut,
    SlaEventOut,
    StatusChangeOut,
    StepDone,
)
from portal.state import get_state
from starter import inbox as lists
from storage import repositories as repo
from storage.repositories import as_utc
from storage.users import Role

_bearer = HTTPBearer(auto_error=False, description="An API token: /account in the portal, or "
                                                   "`techconnect user token EMAIL`")


async def api_user(request: Request,
                   _credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Principal:
    return await require_user(request)


router = APIRouter(prefix="/api", dependencies=[Depends(check_csrf)])

REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"model": Refusal, "description": "A rule refused the request; `detail` names it"}}


def _refused(exc: RuleRefused) -> HTTPException:
    return HTTPException(409, {"detail": exc.message,
                               "violations": [v.model_dump() for v in exc.violations]})


# ---- routes ----------------------------------------------------------------------------------------------------


@router.get("/me", response_model=Me)
async def me(principal: Principal = Depends(api_user)) -> Me:
    return Me(id=principal.user_id, email=principal.email, name=principal.name, role=principal.role,
              customer_id=principal.customer_id, technical_lead_id=principal.technical_lead_id)


@router.get("/customers", response_model=list[CustomerOut])
async def customers(request: Request, principal: Principal = Depends(api_user)) -> list[CustomerOut]:
    state = get_state(request)
    async with state.sessions() as session:
        found = await access.customers_in_reach(session, principal)
    return [CustomerOut(id=c.id, name=c.name, phase=c.programme.phase if c.programme else None,
                        technical_lead_id=c.programme.technical_lead_id if c.programme else None,
                        workflow_id=c.programme.workflow_id if c.programme else None,
                        temporal_url=state.workflow_url(c.programme.workflow_id)
                        if c.programme and principal.is_staff else None) for c in found]


@router.get("/customers/{customer_id}", response_model=CustomerOut, responses={404: {"description": "Not found"}})
async def customer(request: Request, customer_id: str, principal: Principal = Depends(api_user)) -> CustomerOut:
    state = get_state(request)
    async with state.sessions() as session:
        c = await access.customer_in_reach(session, principal, customer_id)
    return CustomerOut(id=c.id, name=c.name, phase=c.programme.phase if c.programme else None,
                       technical_lead_id=c.programme.technical_lead_id if c.programme else None,
                       workflow_id=c.programme.workflow_id if c.programme else None)


@router.get("/customers/{customer_id}/documents", response_model=list[DocumentOut])
async def documents(request: Request, customer_id: str, principal: Principal = Depends(api_user)) -> list[DocumentOut]:
    """The workspace's documents (D10, A9), newest first."""
    async with get_state(request).sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        rows = await queries.documents(session, customer_id)
    return [DocumentOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/customers/{customer_id}/documents/{document_id}", response_model=DocumentBody)
async def document(request: Request, customer_id: str, document_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                   principal: Principal = Depends(api_user)) -> DocumentBody:
    async with get_state(request).sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        row = await repo.get_document(session, document_id, customer_id=customer_id, drafts=principal.is_staff)
    if row is None:
        raise NotFound("document")
    return DocumentBody.model_validate(row, from_attributes=True)


def _request_out(state: Any, principal: Principal, row: Any) -> dict[str, Any]:
    data = queries.request_json(row)
    data["temporal_url"] = state.workflow_url(f"request-{row.tracking_number}") if principal.is_staff else None
    return data


@router.get("/customers/{customer_id}/requests", response_model=list[RequestOut])
async def requests(request: Request, customer_id: str, principal: Principal = Depends(api_user)) -> list[RequestOut]:
    state = get_state(request)
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        rows = await queries.requests(session, customer_id)
    return [RequestOut.model_validate(_request_out(state, principal, r)) for r in rows]


@router.post("/customers/{customer_id}/requests", response_model=Opened, status_code=201, responses=REFUSED)
async def open_request(request: Request, customer_id: str, body: OpenRequestIn,
                       principal: Principal = Depends(api_user)) -> Opened:
    """Open a support request (A4): a tracking number, the TL told, the one-hour first-response clock (C12)."""
    state = get_state(request)
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
    access.require(principal, Action.open_request)
    new = NewRequest(customer_id=customer_id, filed_by=principal.email, channel="portal", **body.model_dump())
    try:
        number = await actions.open_request(await state.temporal(), state.settings, state.sessions, new)
    except RuleRefused as exc:
        raise _refused(exc) from None
    wid = f"request-{number}"
    return Opened(tracking_number=number, workflow_id=wid, temporal_url=state.workflow_url(wid))


async def _own_request(request: Request, principal: Principal, customer_id: str, tracking_number: str) -> Any:
    async with get_state(request).sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        row = await queries.request_of(session, customer_id, tracking_number)
        if row is None:
            raise NotFound("request")
        return row, await queries.request_detail(session, row)


@router.get("/customers/{customer_id}/requests/{tracking_number}", response_model=RequestDetailOut)
async def request_detail(request: Request, customer_id: str, tracking_number: str,
                         principal: Principal = Depends(api_user)) -> RequestDetailOut:
    """A request with its status history (A4), SLA events (C12) and on-site dispatches."""
    row, detail = await _own_request(request, principal, customer_id, tracking_number)
    data = _request_out(get_state(request), principal, row)
    data["history"] = [StatusChangeOut.model_validate(h, from_attributes=True) for h in detail.history]
    data["sla_events"] = [SlaEventOut.model_validate(e, from_attributes=True) for e in detail.sla_events]
    data["dispatches"] = [DispatchOut.model_validate(d, from_attributes=True) for d in detail.dispatches]
    return RequestDetailOut.model_validate(data)


@router.post("/customers/{customer_id}/requests/{tracking_number}/accept-resolution", responses=REFUSED)
async def accept_resolution(request: Request, customer_id: str, tracking_number: str,
                            principal: Principal = Depends(api_user)) -> dict[str, Any]:
    """A4: the customer accepts the measures OT proposed; the request closes."""
    await _own_request(request, principal, customer_id, tracking_number)
    access.require(principal, Action.answer_resolution)
    try:
        status = await actions.request_update(await get_state(request).temporal(), tracking_number,
                                              "accept_resolution", AcceptResolution(by=principal.email))
    except RuleRefused as exc:
        raise _refused(exc) from None
    return status.model_dump(mode="json")


@router.post("/customers/{customer_id}/requests/{tracking_number}/approve-dispatch", responses=REFUSED)
async def approve_dispatch(request: Request, customer_id: str, tracking_number: str, body: ApprovalIn | None = None,
                           principal: Principal = Depends(api_user)) -> dict[str, Any]:
    """A4: approve an on-site dispatch (its extra cost)."""
    await _own_request(request, principal, customer_id, tracking_number)
    if principal.role == Role.contact:
        party = "customer"
    elif principal.role == Role.support_manager:
        party = "manager"
    else:
        party = (body.party if body else None) or "manager"
    access.require(principal, Action.approve_dispatch_customer if party == "customer"
                   else Action.approve_dispatch_manager)
    try:
        status = await actions.request_update(await get_state(request).temporal(), tracking_number,
                                              "approve_dispatch", ApproveDispatch(by=principal.email, party=party))
    except RuleRefused as exc:
        raise _refused(exc) from None
    return status.model_dump(mode="json")


@router.post("/customers/{customer_id}/non-renewal-notice", responses=REFUSED)
async def non_renewal_notice(request: Request, customer_id: str, body: NoticeIn,
                             principal: Principal = Depends(api_user)) -> StepDone:
    """Rule C16: the customer's written notice, dated today in the programme's time zone; refused as late after the
    deadline (period end minus 90 days), with the date in the message."""
    state = get_state(request)
    async with state.sessions() as session:
        c = await access.customer_in_reach(session, principal, customer_id)
    access.require(principal, Action.give_notice)
    today = actions.today_in(str(programme_tz(c)))
    reference = (body.reference or "").strip() or f"PORTAL-{today:%Y%m%d}-{principal.user_id}"
    try:
        result = await actions.complete_step(await state.temporal(), customer_id, "give_non_renewal_notice",
                                             principal.email, {"party": "customer", "received_on": today.isoformat(),
                                                               "reference": reference})
    except RuleRefused as exc:
        raise _refused(exc) from None
    return StepDone.model_validate(result)


@router.get("/programmes", response_model=list[ProgrammeOut])
async def programmes(request: Request, response: Response, principal: Principal = Depends(api_user),
                     phase: str | None = None, tl: str | None = None,
                     renewal_within_days: int | None = Query(None, ge=0, le=36_500),
                     overdue: bool = False,
                     page: int = Query(1, ge=1, le=1_000_000, description="Page of 50, from 1")) -> list[ProgrammeOut]:
    """Programmes by customer ID, a page of 50 (the whole list's size in the `X-Total-Count` header)."""
    access.require_programme_list(principal)
    state = get_state(request)
    chosen: dict[str, Any] = {"phase": phase, "tl": tl, "renewal_within_days": renewal_within_days,
                              "overdue": overdue,
                              "led_by": principal.technical_lead_id if principal.role == Role.tl else None}
    async with state.sessions() as session:
        views = await queries.programme_views(session, **chosen, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        response.headers["X-Total-Count"] = str(await queries.count_programmes(session, **chosen))
    return [ProgrammeOut.model_validate({**v.as_json(), "temporal_url": state.workflow_url(v.workflow_id)})
            for v in views]


@router.post("/programmes", response_model=CustomerOut, status_code=201, responses=REFUSED)
async def start_programme(request: Request, enrolment: Enrolment,
                          principal: Principal = Depends(api_user)) -> CustomerOut:
    """Enrol a customer (the enrolment file of docs/design.md); the rules (E1, C2, C4, C5, C8, C9) are checked first."""
    access.require(principal, Action.start_programme)
    state = get_state(request)
    try:
        wid = await actions.start_programme(await state.temporal(), state.settings, state.sessions, enrolment,
                                            principal.email)
    except RuleRefused as exc:
        raise _refused(exc) from None
    return CustomerOut(id=enrolment.customer.id, name=enrolment.customer.name, workflow_id=wid,
                       technical_lead_id=enrolment.technical_lead.id, temporal_url=state.workflow_url(wid))


@router.get("/programmes/{customer_id}")
async def programme(request: Request, customer_id: str, principal: Principal = Depends(api_user)) -> dict[str, Any]:
    """The programme's live state (the workflow's `get_status` query)."""
    state = get_state(request)
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
    status = await actions.programme_status(await state.temporal(), customer_id)
    if status is None:
        raise NotFound("programme")
    return status.model_dump(mode="json")


@router.post("/programmes/{customer_id}/steps/{step}", response_model=StepDone, responses=REFUSED)
async def complete_step(request: Request, customer_id: str, step: str, payload: dict[str, Any],
                        principal: Principal = Depends(api_user),
                        month: int | None = Query(None, ge=1, le=1200)) -> StepDone:
    """Complete a step with its Update (the payload is the step's model, without `by`)."""
    state = get_state(request)
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
    model = actions.step_model(step)
    if model is None:
        raise NotFound("step")
    access.require_step(principal, step)
    try:
        model.model_validate({**payload, "by": principal.actor})
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None
    try:
        result = await actions.complete_step(await state.temporal(), customer_id, step, principal.actor, payload,
                                             month)
    except RuleRefused as exc:
        raise _refused(exc) from None
    return StepDone.model_validate(result)


@router.get("/inbox", response_model=list[InboxItem])
async def inbox(request: Request, response: Response, principal: Principal = Depends(api_user),
                page: int = Query(1, ge=1, le=1_000_000, description="Page of 50, from 1")) -> list[InboxItem]:
    """Open steps, overdue first: `techconnect step list` for the person asking, a page of 50 (the whole
    list's size in the `X-Total-Count` header)."""
    access.require(principal, Action.inbox)
    state = get_state(request)
    own = principal.role == Role.tl
    found = await lists.open_steps(state.settings, tl=principal.technical_lead_id if own else None, page=page,
                                   sessions=state.sessions,
                                   customers_led_by=principal.technical_lead_id if own else None)
    response.headers["X-Total-Count"] = str(found.total)
    return [InboxItem.model_validate({**e.step.model_dump(), "temporal_url": state.workflow_url(e.step.workflow_id)})
            for e in found.items]


@router.get("/desk", response_model=list[DeskItem])
async def desk(request: Request, response: Response, principal: Principal = Depends(api_user),
               priority: str | None = Query(None, max_length=16), state: str | None = Query(None, max_length=16),
               page: int = Query(1, ge=1, le=1_000_000, description="Page of 50, from 1")) -> list[DeskItem]:
    """The support desk's queue, the portal's `/desk`: late first, then the clocks that run out soonest, a page of 50
    (the whole queue's size in the `X-Total-Count` header). A TL's is the programmes they lead."""
    access.require(principal, Action.desk)
    async with get_state(request).sessions() as session:
        found = await queries.desk_queue(session, None, priority=priority, state=state,
                                         led_by=principal.technical_lead_id if principal.role == Role.tl else None,
                                         offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    response.headers["X-Total-Count"] = str(found.total)
    return [DeskItem(tracking_number=d.row.tracking_number, customer_id=d.row.customer_id,
                     customer_name=d.customer_name, technical_lead_id=d.technical_lead_id, priority=d.row.priority,
                     state=d.row.state, summary=d.row.summary, opened_at=as_utc(d.row.opened_at),
                     first_response_deadline=as_utc(d.row.first_response_deadline)
                     if d.row.first_response_deadline else None, sla=d.sla[0], late=d.late) for d in found.rows]


@router.get("/audit", response_model=AuditPage, responses={404: {"description": "No such customer"}})
async def audit_api(
    request: Request,
    principal: Principal = Depends(api_user),
    customer_id: str | None = Query(None, max_length=63, description="Only this customer"),
    actor: str | None = Query(None, max_length=128, description="Actor contains this text (any case)"),
    action: str | None = Query(None, max_length=64, description="Exactly this action, e.g. accept_resolution"),
    interface: str | None = Query(None, max_length=32, description="cli, portal, temporal or signal"),
    limit: int = Query(audit.PAGE_SIZE, ge=1, le=audit.MAX_LIMIT),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> AuditPage:
    """The audit log, newest first (operations and admins)."""
    f = audit.AuditFilters.of(customer_id, actor, action, interface)
    async with get_state(request).sessions() as session:
        await audit.allowed(session, principal, f.customer_id)
        rows, total = await audit.entries(session, f, limit=limit, offset=offset)
    return AuditPage(total=total, limit=limit, offset=offset, entries=[AuditEntryOut(
        id=r.id, at=as_utc(r.at), actor=r.actor, role=r.role, action=r.action, customer_id=r.customer_id,
        interface=r.interface, detail=r.detail or {}) for r in rows])
