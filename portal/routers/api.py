"""The JSON API under /api (OpenAPI at /api/openapi.json, docs at /api/docs; models in portal/schemas.py).

Authentication: `Authorization: Bearer <token>` (tokens from /account or `techconnect
user token`), or the portal's session cookie plus an `X-CSRF-Token` header for
unsafe methods. The same access rules as the pages: another customer's IDs answer 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from domain.enrolment import Enrolment
from domain.errors import RuleRefused
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
async def programmes(request: Request, principal: Principal = Depends(api_user),
                     phase: str | None = None, tl: str | None = None,
                     renewal_within_days: int | None = Query(None, ge=0, le=36_500),
                     overdue: bool = False) -> list[ProgrammeOut]:
    access.require_programme_list(principal)
    state = get_state(request)
    async with state.sessions() as session:
        ids = [c.id for c in await access.customers_in_reach(session, principal)] \
            if principal.role == Role.tl else None
        views = await queries.programme_views(session, customer_ids=ids, phase=phase, tl=tl,
                                              renewal_within_days=renewal_within_days, overdue=overdue)
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
async def inbox(request: Request, principal: Principal = Depends(api_user)) -> list[InboxItem]:
    """Open steps, overdue first: `techconnect step list` for the person asking."""
    access.require(principal, Action.inbox)
    state = get_state(request)
    tl = principal.technical_lead_id if principal.role == Role.tl else None
    rows = await actions.open_steps(await state.temporal(), tl)
    async with state.sessions() as session:
        reach = {c.id for c in await access.customers_in_reach(session, principal)}
    return [InboxItem.model_validate({**r, "temporal_url": state.workflow_url(str(r["workflow_id"]))})
            for r in rows if r["customer_id"] in reach]


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
