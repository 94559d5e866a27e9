"""The portal's pages: customer workspace, TL inbox and step forms, operations pages, account.

Every route that takes an ID resolves it through `access.customer_in_reach` (404 when
out of reach) before reading anything else or calling Temporal.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.activities import AuditEntry
from domain.enrolment import Enrolment
from domain.program import GiveNonRenewalNotice, RecordBillableExtra
from domain.request import AcceptResolution, ApproveDispatch, NewRequest
from portal import access, actions, auth, forms, queries
from portal.access import Action, NotFound
from portal.auth import Principal, check_csrf, require_user
from portal.rendering import redirect, render
from portal.security import (
    WeakPassword,
    check_password_strength,
    digest,
    hash_password,
    new_api_token,
    verify_password,
)
from portal.state import PortalState, get_state
from storage import repositories as repo
from storage import users as users_repo
from storage.users import Role

log = logging.getLogger("techconnect.portal")
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

PHASES = ["enrolling", "onboarding", "running", "renewal", "closing", "closed", "refused"]


async def audit(state: PortalState, principal: Principal, action: str, customer_id: str,
                detail: dict[str, Any]) -> None:
    """An action the workflows do not record themselves (starting a programme). Steps, notices, extras and
    request actions are audited by their workflow, with `via="portal"` in the Update (interface "portal")."""
    async with state.sessions() as session, session.begin():
        await repo.append_audit(session, AuditEntry(at=repo.utcnow(), actor=principal.email, role=principal.role.value,
                                                    action=action, customer_id=customer_id, interface="portal",
                                                    detail=detail))


def _tz(programme_status: dict[str, Any] | None) -> ZoneInfo:
    name = ((programme_status or {}).get("calendar") or {}).get("timezone") or "UTC"
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


# ---- customer workspace (D10, A9) -----------------------------------------------------------------


async def _workspace_context(session: AsyncSession, principal: Principal, customer_id: str) -> dict[str, Any]:
    customer = await access.customer_in_reach(session, principal, customer_id)
    programme = queries.programme_view(customer.programme, customer.name) if customer.programme else None
    tz = _tz(customer.programme.status if customer.programme else None)
    return {
        "customer": customer, "programme": programme,
        "workspace": await repo.get_workspace(session, customer_id),
        "documents": await queries.documents(session, customer_id),
        "requests": await queries.requests(session, customer_id),
        "sla_state": queries.sla_state, "kinds": queries.DOCUMENT_KINDS,
        "today": actions.today_in(str(tz)),
        "may_open": access.may(principal, Action.open_request),
        "may_give_notice": access.may(principal, Action.give_notice),
        "notice_fields": forms.CONTACT_NOTICE_FIELDS,
    }


@router.get("/workspace/{customer_id}")
async def workspace(request: Request, customer_id: str, principal: Principal = Depends(require_user)) -> Response:
    async with get_state(request).sessions() as session:
        ctx = await _workspace_context(session, principal, customer_id)
    return render(request, "workspace.html.j2", ctx, title=f"{ctx['customer'].name}: workspace")


@router.get("/workspace/{customer_id}/documents/{document_id}")
async def document(request: Request, customer_id: str, document_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                   principal: Principal = Depends(require_user)) -> Response:
    async with get_state(request).sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
        doc = await repo.get_document(session, document_id, customer_id=customer_id)
    if doc is None:
        raise NotFound("document")
    return render(request, "document.html.j2", {"customer": customer, "doc": doc, "kinds": queries.DOCUMENT_KINDS},
                  title=doc.title)


@router.post("/workspace/{customer_id}/non-renewal")
async def give_notice(request: Request, customer_id: str, principal: Principal = Depends(require_user)) -> Response:
    """Rule C16: the customer's written non-renewal notice, dated today in the programme's time zone."""
    state = get_state(request)
    async with state.sessions() as session:
        ctx = await _workspace_context(session, principal, customer_id)
    access.require(principal, Action.give_notice)
    form = await request.form()
    values = forms.submitted_values(forms.CONTACT_NOTICE_FIELDS, form)
    errors = forms.FormErrors()
    if values.get("confirm") != "on":
        errors.add(forms.CONTACT_NOTICE_FIELDS, "confirm", "Tick the box to confirm the notice.")
    received_on = ctx["today"]
    reference = str(values.get("reference") or "").strip() or f"PORTAL-{received_on:%Y%m%d}-{principal.user_id}"
    if not errors:
        try:
            client = await state.temporal()
            await actions.complete_step(client, customer_id, "give_non_renewal_notice", principal.email,
                                        {"party": "customer", "received_on": received_on.isoformat(),
                                         "reference": reference})
        except actions.ActionRefused as exc:
            errors.top.append(exc.message)
    if errors:
        ctx.update(notice_values=values, notice_errors=errors)
        return render(request, "workspace.html.j2", ctx, status=409 if errors.top else 422,
                      title=f"{ctx['customer'].name}: workspace")
    return redirect(request, f"/workspace/{customer_id}",
                    f"Your non-renewal notice ({reference}) is recorded; the programme ends with this period.")


# ---- support requests (A4, C12) -------------------------------------------------------------------


@router.get("/workspace/{customer_id}/requests/new")
async def new_request_form(request: Request, customer_id: str,
                           principal: Principal = Depends(require_user)) -> Response:
    async with get_state(request).sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
    access.require(principal, Action.open_request)
    return render(request, "request_new.html.j2", {
        "customer": customer, "fields": forms.REQUEST_FIELDS, "values": forms.default_values(forms.REQUEST_FIELDS),
        "errors": forms.FormErrors()}, title="Open a request")


@router.post("/workspace/{customer_id}/requests/new")
async def new_request(request: Request, customer_id: str, principal: Principal = Depends(require_user)) -> Response:
    state = get_state(request)
    async with state.sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
    access.require(principal, Action.open_request)
    values = forms.submitted_values(forms.REQUEST_FIELDS, await request.form())
    model, errors = forms.parse(NewRequest, forms.REQUEST_FIELDS, values, extra={
        "customer_id": customer_id, "filed_by": principal.email, "channel": "portal"})
    tracking = None
    if model is not None:
        assert isinstance(model, NewRequest)
        try:
            tracking = await actions.open_request(await state.temporal(), state.settings, state.sessions, model)
        except actions.ActionRefused as exc:
            errors = forms.violation_errors(forms.REQUEST_FIELDS, exc.violations) if exc.violations \
                else forms.FormErrors(top=[exc.message])
    if tracking is None:
        return render(request, "request_new.html.j2", {"customer": customer, "fields": forms.REQUEST_FIELDS,
                                                       "values": values, "errors": errors},
                      status=422, title="Open a request")
    return redirect(request, f"/workspace/{customer_id}/requests/{tracking}",
                    f"Request {tracking} is open; your Technical Lead has been told.")


async def _request_page(request: Request, principal: Principal, customer_id: str, tracking_number: str,
                        *, error: str | None = None, status: int = 200) -> Response:
    state = get_state(request)
    async with state.sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
        row = await queries.request_of(session, customer_id, tracking_number)
        detail = await queries.request_detail(session, row) if row is not None else None
        if row is None and await repo.get_request(session, tracking_number) is not None:
            raise NotFound("request")  # another customer's request: not a word to Temporal
    live = None
    try:
        live = await actions.request_status(await state.temporal(), tracking_number)
    except Exception as exc:  # the page still shows what the database holds
        log.warning("no live status for %s: %s", tracking_number, exc)
    if live is not None and live.customer_id != customer_id:
        raise NotFound("request")
    if row is None and live is None:
        raise NotFound("request")
    return render(request, "request.html.j2", {
        "customer": customer, "row": row, "detail": detail, "live": live, "tracking_number": tracking_number,
        # The workflow's own state when it answers (the stored row follows it by a moment).
        "sla": queries.sla_of(live.state.value, live.first_response_deadline, live.first_response_at,
                              live.sla_breached) if live is not None else queries.sla_state(row) if row is not None
        else ("unknown", "muted"),
        "respond_by": (live.first_response_deadline if live is not None else None)
        or (row.first_response_deadline if row is not None else None),
        "error": error,
        "may_accept": access.may(principal, Action.answer_resolution),
        "may_approve_customer": access.may(principal, Action.approve_dispatch_customer),
        "may_approve_manager": access.may(principal, Action.approve_dispatch_manager),
    }, status=status, title=f"Request {tracking_number}")


@router.get("/workspace/{customer_id}/requests/{tracking_number}")
async def request_page(request: Request, customer_id: str, tracking_number: str,
                       principal: Principal = Depends(require_user)) -> Response:
    return await _request_page(request, principal, customer_id, tracking_number)


async def _request_update(request: Request, principal: Principal, customer_id: str, tracking_number: str,
                          action: Action, update: str, arg: BaseModel, done: str) -> Response:
    state = get_state(request)
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        row = await queries.request_of(session, customer_id, tracking_number)
    if row is None:
        raise NotFound("request")
    access.require(principal, action)
    try:
        await actions.request_update(await state.temporal(), tracking_number, update, arg)
    except actions.ActionRefused as exc:
        return await _request_page(request, principal, customer_id, tracking_number, error=exc.message, status=409)
    return redirect(request, f"/workspace/{customer_id}/requests/{tracking_number}", done)


@router.post("/workspace/{customer_id}/requests/{tracking_number}/accept")
async def accept_resolution(request: Request, customer_id: str, tracking_number: str,
                            principal: Principal = Depends(require_user)) -> Response:
    """A4: the request closes when the customer accepts the measures OT proposed."""
    return await _request_update(request, principal, customer_id, tracking_number, Action.answer_resolution,
                                 "accept_resolution", AcceptResolution(by=principal.email),
                                 "You accepted the proposed measures; the request is closed.")


@router.post("/workspace/{customer_id}/requests/{tracking_number}/approve-dispatch")
async def approve_dispatch(request: Request, customer_id: str, tracking_number: str,
                           principal: Principal = Depends(require_user)) -> Response:
    """A4: on-site support at extra cost needs the customer's and a support manager's approval."""
    customer_side = principal.role == Role.contact or (principal.role == Role.admin and (
        (await request.form()).get("party") == "customer"))
    action = Action.approve_dispatch_customer if customer_side else Action.approve_dispatch_manager
    party = "customer" if customer_side else "manager"
    return await _request_update(request, principal, customer_id, tracking_number, action, "approve_dispatch",
                                 ApproveDispatch(by=principal.email, party=party),
                                 f"On-site dispatch approved ({party}).")


# ---- TL inbox and step forms -------------------------------------------------------------------------


@router.get("/inbox")
async def inbox(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.inbox)
    state = get_state(request)
    tl = principal.technical_lead_id if principal.role == Role.tl else (request.query_params.get("tl") or None)
    rows = await actions.open_steps(await state.temporal(), tl)
    async with state.sessions() as session:
        reach = {c.id: c for c in await access.customers_in_reach(session, principal)}
    # Visibility finds the TL's workflows; the projection decides what the person may see.
    rows = [r for r in rows if r["customer_id"] in reach]
    for r in rows:
        r["customer_name"] = reach[r["customer_id"]].name
        r["may_complete"] = access.may_complete_step(principal, str(r["step"])) and r["step"] in forms.STEP_FORMS
    return render(request, "inbox.html.j2", {"rows": rows, "tl": tl, "today": date.today()},
                  title="Inbox")


def _step_form_or_404(step: str) -> forms.StepForm:
    form = forms.STEP_FORMS.get(step)
    if form is None:
        raise NotFound("step")
    return form


def _month(request: Request) -> int | None:
    raw = request.query_params.get("month")
    return int(raw) if raw and raw.isdigit() and len(raw) <= 4 else None


@router.get("/programmes/{customer_id}/steps/{step}")
async def step_form(request: Request, customer_id: str, step: str,
                    principal: Principal = Depends(require_user)) -> Response:
    state = get_state(request)
    async with state.sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
    spec = _step_form_or_404(step)
    if not access.may_complete_step(principal, step):
        raise access.Forbidden(f"a {principal.role_label} does not complete {step}")
    defaults: dict[str, Any] = {}
    for f in spec.fields:
        if f.kind == "date" and f.name == "held_on":
            defaults[f.name] = date.today().isoformat()
    if step == "add_findings":
        defaults["role"] = "tl" if principal.role == Role.tl else "gts"
    return render(request, "step_form.html.j2", {
        "customer": customer, "spec": spec, "month": _month(request), "tz": str(_tz(
            customer.programme.status if customer.programme else None)),
        "values": forms.default_values(spec.fields, defaults), "errors": forms.FormErrors()}, title=spec.title)


@router.post("/programmes/{customer_id}/steps/{step}")
async def complete_step(request: Request, customer_id: str, step: str,
                        principal: Principal = Depends(require_user)) -> Response:
    state = get_state(request)
    async with state.sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
    spec = _step_form_or_404(step)
    if not access.may_complete_step(principal, step):
        raise access.Forbidden(f"a {principal.role_label} does not complete {step}")
    model = actions.step_model(step)
    assert model is not None
    tz = _tz(customer.programme.status if customer.programme else None)
    values = forms.submitted_values(spec.fields, await request.form())
    parsed, errors = forms.parse(model, spec.fields, values, extra={"by": principal.actor}, tz=tz)
    month = _month(request)
    if parsed is not None:
        try:
            payload = parsed.model_dump(mode="json", exclude={"by"})
            await actions.complete_step(await state.temporal(), customer_id, step, principal.actor, payload, month)
        except actions.ActionRefused as exc:
            errors.top.append(exc.message)
    if parsed is None or errors:
        return render(request, "step_form.html.j2", {
            "customer": customer, "spec": spec, "month": month, "tz": str(tz), "values": values, "errors": errors},
            status=409 if parsed is not None else 422, title=spec.title)
    return redirect(request, "/inbox", f"{spec.title}: done for {customer.name}.")


# ---- programmes (TL and operations) -------------------------------------------------------------------


@router.get("/programmes")
async def programmes(request: Request, principal: Principal = Depends(require_user)) -> Response:
    if not (principal.role == Role.tl or access.may(principal, Action.ops_pages)):
        raise access.Forbidden("programmes are for Technical Leads and OpenText staff")
    q = request.query_params
    renewal, phase, tl = q.get("renewal") or "", q.get("phase") or "", q.get("tl") or ""
    overdue = q.get("overdue") == "on"
    filters: dict[str, Any] = {"phase": phase, "tl": tl, "renewal": renewal, "overdue": overdue}
    state = get_state(request)
    async with state.sessions() as session:
        ids = None
        if principal.role == Role.tl:
            ids = [c.id for c in await access.customers_in_reach(session, principal)]
        rows = await queries.programme_views(
            session, customer_ids=ids, phase=phase or None, tl=tl or None,
            renewal_within_days=int(renewal) if renewal.isdigit() and len(renewal) <= 5 else None, overdue=overdue)
        tls = await users_repo.list_users(session, role=Role.tl)
    return render(request, "programmes.html.j2", {
        "rows": rows, "filters": filters, "phases": PHASES, "tls": tls,
        "may_start": access.may(principal, Action.start_programme)}, title="Programmes")


@router.get("/programmes/{customer_id}")
async def programme(request: Request, customer_id: str, principal: Principal = Depends(require_user)) -> Response:
    state = get_state(request)
    customer: access.CustomerInReach | None = None
    async with state.sessions() as session:
        try:
            customer = await access.customer_in_reach(session, principal, customer_id)
        except NotFound:
            # Staff see every programme, also one started a moment ago whose rows are not written yet.
            if not principal.is_staff:
                raise
        extras = await queries.billable_extras(session, [customer_id])
    if principal.role == Role.contact:
        return redirect(request, f"/workspace/{customer_id}")
    live = None
    try:
        live = await actions.programme_status(await state.temporal(), customer_id)
    except Exception as exc:
        log.warning("no live status for %s: %s", customer_id, exc)
    if customer is None:
        if live is None:
            raise NotFound("programme")
        customer = access.CustomerInReach(customer_id, live.customer_name, None)
    view = queries.programme_view(customer.programme, customer.name) if customer.programme else None
    if live is None and view is None:
        raise NotFound("programme")
    steps_allowed = {s for s in forms.STEP_FORMS if access.may_complete_step(principal, s)}
    return render(request, "programme.html.j2", {
        "customer": customer, "live": live, "view": view, "extras": extras, "steps_allowed": steps_allowed,
        "workflow_id": live.workflow_id if live else view.workflow_id if view else ""}, title=customer.name)


# ---- operations --------------------------------------------------------------------------------------------


async def _tl_options(session: AsyncSession) -> list[tuple[str, str]]:
    tls = await users_repo.list_users(session, role=Role.tl)
    return [(u.technical_lead_id or "", f"{u.name} ({u.technical_lead_id})") for u in tls if u.active]


def _enrolment_fields(tl_options: list[tuple[str, str]]) -> tuple[forms.Field, ...]:
    return tuple(forms.Field(f.name, f.label, f.kind, f.help, f.required, (("", "Choose a Technical Lead"),
                                                                           *tl_options), width=f.width)
                 if f.name == "technical_lead" else f for f in forms.ENROLMENT_FIELDS)


@router.get("/ops/programmes/new")
async def start_form(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.start_programme)
    async with get_state(request).sessions() as session:
        fields = _enrolment_fields(await _tl_options(session))
    values = forms.default_values(fields, {"period_start": date.today().isoformat()})
    return render(request, "start.html.j2", {"fields": fields, "values": values, "errors": forms.FormErrors(),
                                             "groups": forms.ENROLMENT_GROUPS}, title="Start a programme")


@router.post("/ops/programmes/new")
async def start(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.start_programme)
    state = get_state(request)
    async with state.sessions() as session:
        fields = _enrolment_fields(await _tl_options(session))
        values = forms.submitted_values(fields, await request.form())
        tl_id = str(values.get("technical_lead") or "")
        tl_user = next((u for u in await users_repo.list_users(session, role=Role.tl)
                        if u.technical_lead_id == tl_id and tl_id), None)
    payload = forms.to_payload(fields, values)
    payload["technical_lead"] = ({"id": tl_user.technical_lead_id, "name": tl_user.name, "email": tl_user.email}
                                 if tl_user else {})
    errors = forms.FormErrors()
    enrolment: Enrolment | None = None
    try:
        enrolment = Enrolment.model_validate(payload)
    except ValidationError as exc:
        errors = forms.validation_errors(fields, exc)
    if tl_user is None:
        errors.fields["technical_lead"] = ["Choose the Technical Lead who leads this programme."]
    wid = None
    if enrolment is not None and not errors:
        try:
            wid = await actions.start_programme(await state.temporal(), state.settings, state.sessions, enrolment,
                                                principal.email)
        except actions.ActionRefused as exc:
            errors = forms.violation_errors(fields, exc.violations) if exc.violations else \
                forms.FormErrors(top=[exc.message])
    if wid is None or enrolment is None:
        return render(request, "start.html.j2", {"fields": fields, "values": values, "errors": errors,
                                                 "groups": forms.ENROLMENT_GROUPS}, status=422,
                      title="Start a programme")
    # The contacts get the workspace: a portal account each, signing in with a mailed link (D10, A9).
    async with state.sessions() as session, session.begin():
        for contact in enrolment.contacts():
            try:
                await users_repo.add_user(session, email=str(contact.email), name=contact.name, role=Role.contact,
                                          customer_id=enrolment.customer.id, exist_ok=True)
            except users_repo.UserError as exc:
                log.warning("no portal account for %s: %s", contact.email, exc)
    await audit(state, principal, "start_programme", enrolment.customer.id, {"workflow_id": wid})
    return redirect(request, f"/programmes/{enrolment.customer.id}",
                    f"Programme started: {wid}. The contacts get their welcome mail and workspace access.")


async def _customer_options(session: AsyncSession, principal: Principal) -> list[tuple[str, str]]:
    return [(c.id, f"{c.name} ({c.id})") for c in await access.customers_in_reach(session, principal)]


def _with_options(fields: tuple[forms.Field, ...], name: str,
                  options: list[tuple[str, str]]) -> tuple[forms.Field, ...]:
    return tuple(forms.Field(f.name, f.label, f.kind, f.help, f.required, (("", "Choose"), *options),
                             width=f.width) if f.name == name else f for f in fields)


async def _notices_page(request: Request, principal: Principal, *, values: dict[str, Any] | None = None,
                        errors: forms.FormErrors | None = None, status: int = 200) -> Response:
    async with get_state(request).sessions() as session:
        fields = _with_options(forms.OPS_NOTICE_FIELDS, "customer_id", await _customer_options(session, principal))
        programmes = await queries.programme_views(session)
        docs = await queries.notices(session)
    return render(request, "notices.html.j2", {
        "fields": fields, "values": values or forms.default_values(fields), "errors": errors or forms.FormErrors(),
        "programmes": programmes, "docs": docs, "may_record": access.may(principal, Action.record_notice)},
        status=status, title="Notices")


@router.get("/ops/notices")
async def notices(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.ops_pages)
    return await _notices_page(request, principal)


@router.post("/ops/notices")
async def record_notice(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.record_notice)
    values = forms.submitted_values(forms.OPS_NOTICE_FIELDS, await request.form())
    return await _submit_ops_step(request, principal, forms.OPS_NOTICE_FIELDS, values, dict(values),
                                  GiveNonRenewalNotice,
                                  "give_non_renewal_notice", _notices_page, "/ops/notices",
                                  "Non-renewal notice recorded")


async def _submit_ops_step(
    request: Request, principal: Principal, fields: Any, values: dict[str, Any], parse_values: dict[str, Any],
    model: type[Any], step: str, page: Any, back_to: str, done: str,
) -> Response:
    """One operations form posting one programme Update: reach check, parse, Update, page or redirect."""
    state = get_state(request)
    customer_id = str(values.get("customer_id") or "")
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
    parsed, errors = forms.parse(model, fields, parse_values, extra={"by": principal.email})
    if parsed is not None:
        try:
            await actions.complete_step(await state.temporal(), customer_id, step,
                                        principal.email, parsed.model_dump(mode="json", exclude={"by"}))
        except actions.ActionRefused as exc:
            errors.top.append(exc.message)
    if parsed is None or errors:
        response: Response = await page(request, principal, values=values, errors=errors,
                                        status=409 if parsed is not None else 422)
        return response
    return redirect(request, back_to, f"{done} for {customer_id}.")


async def _extras_page(request: Request, principal: Principal, *, values: dict[str, Any] | None = None,
                       errors: forms.FormErrors | None = None, status: int = 200) -> Response:
    async with get_state(request).sessions() as session:
        fields = _with_options(forms.EXTRA_FIELDS, "customer_id", await _customer_options(session, principal))
        extras = await queries.billable_extras(session)
    return render(request, "extras.html.j2", {
        "fields": fields, "values": values or forms.default_values(fields), "errors": errors or forms.FormErrors(),
        "extras": extras, "may_record": access.may(principal, Action.record_extra)}, status=status,
        title="Billable extras")


@router.get("/ops/extras")
async def extras(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.ops_pages)
    return await _extras_page(request, principal)


@router.post("/ops/extras")
async def record_extra(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.record_extra)
    values = forms.submitted_values(forms.EXTRA_FIELDS, await request.form())
    parse_values = dict(values)
    if not str(values.get("amount.amount") or "").strip():
        parse_values["amount.currency"] = ""  # no amount: no Money at all
    return await _submit_ops_step(request, principal, forms.EXTRA_FIELDS, values, parse_values, RecordBillableExtra,
                                  "record_billable_extra", _extras_page, "/ops/extras", "Billable extra recorded")


# ---- account: API tokens ----------------------------------------------------------------------------------


async def _account_page(request: Request, principal: Principal, new_token: str | None = None,
                        password_errors: forms.FormErrors | None = None, status: int = 200) -> Response:
    async with get_state(request).sessions() as session:
        tokens = await users_repo.list_api_tokens(session, principal.user_id)
        user = await users_repo.get_user(session, principal.user_id)
    return render(request, "account.html.j2", {
        "tokens": tokens, "new_token": new_token, "password_errors": password_errors,
        "has_password": bool(user and user.password_hash)}, status=status, title="Account")


@router.post("/account/password")
async def change_password(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """Change one's own password: the current one first (throttled like the sign-in), then the new one twice.

    Only in a signed-in browser session (an API token is not a sign-in), and only for someone who has a
    password: a contact who signs in by mailed link is given one by operations (`techconnect user
    password`), so a session taken over cannot set a password its owner does not know. Every other session
    of the user ends; this one stays.
    """
    if principal.via != "session":
        raise access.Forbidden("change the password from a signed-in browser session, not with an API token")
    form = await request.form()
    current = str(form.get("current_password") or "")
    new = str(form.get("new_password") or "")
    again = str(form.get("confirm_password") or "")
    errors = forms.FormErrors()
    state = get_state(request)
    now = repo.utcnow()
    address = auth.client_address(request)
    keys = (f"email:{principal.email}", f"ip:{address}")
    async with state.sessions() as session, session.begin():
        user = await users_repo.get_user(session, principal.user_id)
        if user is None:
            raise NotFound("user")
        if not user.password_hash:
            raise access.Forbidden("you sign in with a link mailed to you; operations can give you a password")
        throttle = await auth.password_throttle(session, principal.email, address, now)
        if throttle.refused:
            errors.top.append("Too many wrong passwords for this account: wait a few minutes and try again.")
            response = await _account_page(request, principal, password_errors=errors, status=429)
            response.headers["Retry-After"] = str(throttle.retry_after_s)
            return response
        # argon2 takes a few hundred milliseconds on purpose: off the event loop.
        if not await asyncio.to_thread(verify_password, user.password_hash, current):
            for key in keys:  # committed with the transaction: the throttle (and the sign-in's) sees it
                await users_repo.record_attempt(session, key, succeeded=False, now=now)
            errors.top.append("current_password: this is not your current password.")
        if new != again:
            errors.top.append("confirm_password: the two new passwords differ.")
        try:
            check_password_strength(new)
        except WeakPassword as exc:
            errors.top.append(f"new_password: {exc}.")
        if not errors and new == current:
            errors.top.append("new_password: choose a password other than the current one.")
        if errors:
            status = 401 if any(e.startswith("current_password") for e in errors.top) else 422
        else:
            await users_repo.set_password_hash(session, user.id, await asyncio.to_thread(hash_password, new))
            await users_repo.clear_failures(session, keys[0])
            ended = await users_repo.revoke_other_sessions(session, user.id, keep_id_hash=principal.session_hash)
    if errors:
        return await _account_page(request, principal, password_errors=errors, status=status)
    log.info("password changed by %s (%s); %d other session(s) ended", principal.email, principal.role, ended)
    return redirect(request, "/account", "Password changed. Your other sessions are signed out.")


@router.get("/account")
async def account(request: Request, principal: Principal = Depends(require_user)) -> Response:
    return await _account_page(request, principal)


@router.post("/account/tokens")
async def create_token(request: Request, principal: Principal = Depends(require_user)) -> Response:
    name = str((await request.form()).get("name") or "").strip()[:255] or "api"
    token, prefix = new_api_token()
    async with get_state(request).sessions() as session, session.begin():
        await users_repo.create_api_token(session, user_id=principal.user_id, name=name, token_hash=digest(token),
                                          prefix=prefix)
    return await _account_page(request, principal, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                       principal: Principal = Depends(require_user)) -> Response:
    async with get_state(request).sessions() as session, session.begin():
        if not await users_repo.revoke_api_token(session, token_id, user_id=principal.user_id):
            raise NotFound("token")
    return redirect(request, "/account", "Token revoked.")
