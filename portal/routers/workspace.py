"""The customer's workspace (D10, A9): documents, the non-renewal notice (C16) and support requests (A4, C12).

Every route resolves the customer through `access.customer_in_reach` (404 when out of
reach) before reading anything else or calling Temporal.
"""

from __future__ import annotations

import logging
import mimetypes
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from domain.attachments import (
    ATTACHMENT_MAX_BYTES,
    MAX_ATTACHMENTS,
    ascii_filename,
    attachment_refused,
    clean_filename,
)
from domain.errors import RuleRefused
from domain.request import (
    AcceptResolution,
    AddComment,
    ApproveDispatch,
    AuthorRole,
    NewRequest,
    Priority,
    RejectResolution,
)
from domain.steps import spec
from portal import access, actions, forms, queries, timeline
from portal.access import Action, NotFound
from portal.auth import Principal, check_csrf, require_user
from portal.rendering import redirect, render
from portal.routers.common import programme_tz, refusal_errors, response_promise
from portal.state import get_state
from starter.errors import parse_model
from storage import pdfs
from storage import repositories as repo
from storage.repositories.attachments import add_upload, delete_attachments, get_attachment
from storage.users import Role

log = logging.getLogger("techconnect.portal")
# First downloads rendering or waiting for the PDF thread in this process before a new one is told to retry
# (storage/pdfs.py; a render takes about a second, a capped monthly report a few).
PDF_RENDERS_WAITING = 4
PDF_RETRY_AFTER_S = 10
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


# ---- customer workspace (D10, A9) -----------------------------------------------------------------


async def _workspace_context(session: AsyncSession, principal: Principal, customer_id: str,
                             minutes: int) -> dict[str, Any]:
    customer = await access.customer_in_reach(session, principal, customer_id)
    programme = queries.programme_view(customer.programme, customer.name) if customer.programme else None
    tz = programme_tz(customer)
    return {
        "customer": customer, "programme": programme,
        "workspace": await repo.get_workspace(session, customer_id),
        "documents": await queries.documents(session, customer_id, drafts=principal.is_staff),
        "requests": await queries.requests(session, customer_id),
        "sla_state": queries.sla_state, "kinds": queries.DOCUMENT_KINDS,
        "today": actions.today_in(str(tz)),
        "may_open": access.may(principal, Action.open_request),
        "may_give_notice": access.may(principal, Action.give_notice),
        "notice_fields": forms.CONTACT_NOTICE_FIELDS,
        **response_promise(customer, minutes),
    }


@router.get("/workspace/{customer_id}")
async def workspace(request: Request, customer_id: str, principal: Principal = Depends(require_user)) -> Response:
    state = get_state(request)
    async with state.sessions() as session:
        ctx = await _workspace_context(session, principal, customer_id, state.settings.policy.first_response_minutes)
    ctx["timeline"] = timeline.of_projection(ctx["customer"].programme, state.clock)  # the year at a glance
    return render(request, "workspace.html.j2", ctx, title=f"{ctx['customer'].name}: workspace")


# Before the HTML route: "{document_id}" alone would also match "7.pdf" (and refuse it as no integer).
@router.get("/workspace/{customer_id}/documents/{document_id}.pdf")
async def document_pdf(request: Request, customer_id: str, document_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                       principal: Principal = Depends(require_user)) -> Response:
    """D10/A9: the document as PDF, rendered on first download (or first mail) and kept (storage/pdfs.py)."""
    # The same checks as the HTML document's route, in the same order.
    async with get_state(request).sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        doc = await repo.get_document(session, document_id, customer_id=customer_id, drafts=principal.is_staff)
    if doc is None:
        raise NotFound("document")
    try:
        pdf = await pdfs.document_pdf(get_state(request).sessions, doc, max_in_flight=PDF_RENDERS_WAITING)
    except pdfs.PdfBusy as busy:  # a burst of first downloads: answer now rather than queue without end
        raise HTTPException(503, "PDFs are being prepared for other downloads; try again in a moment",
                            headers={"Retry-After": str(PDF_RETRY_AFTER_S)}) from busy
    # RFC 6266 as for a request's files; a "/" in a title is no path.
    name = clean_filename(doc.title.replace("/", "-"), "document") + ".pdf"
    disposition = f"attachment; filename=\"{ascii_filename(name)}\"; filename*=UTF-8''{quote(name, safe='')}"
    return Response(pdf, media_type=pdfs.PDF_CONTENT_TYPE, headers={
        "Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})


@router.get("/workspace/{customer_id}/documents/{document_id}")
async def document(request: Request, customer_id: str, document_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                   principal: Principal = Depends(require_user)) -> Response:
    async with get_state(request).sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
        doc = await repo.get_document(session, document_id, customer_id=customer_id, drafts=principal.is_staff)
    if doc is None:
        raise NotFound("document")
    return render(request, "document.html.j2", {"customer": customer, "doc": doc, "kinds": queries.DOCUMENT_KINDS},
                  title=doc.title)


@router.post("/workspace/{customer_id}/non-renewal")
async def give_notice(request: Request, customer_id: str, principal: Principal = Depends(require_user)) -> Response:
    """Rule C16: the customer's written non-renewal notice, dated today in the programme's time zone."""
    state = get_state(request)
    async with state.sessions() as session:
        ctx = await _workspace_context(session, principal, customer_id, state.settings.policy.first_response_minutes)
    ctx["timeline"] = timeline.of_projection(ctx["customer"].programme, state.clock)  # the year at a glance
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
        except RuleRefused as exc:
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
    state = get_state(request)
    async with state.sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
    access.require(principal, Action.open_request)
    return render(request, "request_new.html.j2", {
        "customer": customer, "fields": forms.REQUEST_FIELDS, "values": forms.default_values(forms.REQUEST_FIELDS),
        "errors": forms.FormErrors(), **response_promise(customer, state.settings.policy.first_response_minutes)},
        title="Open a request")


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
        except RuleRefused as exc:
            errors = refusal_errors(forms.REQUEST_FIELDS, exc)
    if tracking is None:
        return render(request, "request_new.html.j2", {
            "customer": customer, "fields": forms.REQUEST_FIELDS, "values": values, "errors": errors,
            **response_promise(customer, state.settings.policy.first_response_minutes)},
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
        "error": error, **response_promise(customer, state.settings.policy.first_response_minutes),
        "may_accept": access.may(principal, Action.answer_resolution),
        "may_comment": access.may(principal, Action.comment),
        "may_answer": access.may(principal, Action.answer_request),
        "priorities": [p.value for p in Priority],
        "may_approve_customer": access.may(principal, Action.approve_dispatch_customer),
        "may_approve_manager": access.may(principal, Action.approve_dispatch_manager),
    }, status=status, title=f"Request {tracking_number}")


@router.get("/workspace/{customer_id}/requests/{tracking_number}")
async def request_page(request: Request, customer_id: str, tracking_number: str,
                       principal: Principal = Depends(require_user)) -> Response:
    return await _request_page(request, principal, customer_id, tracking_number)


async def _request_update(request: Request, principal: Principal, customer_id: str, tracking_number: str,
                          action: Action, update: str, arg: BaseModel, done: str) -> Response:
    await _request_in_reach(request, principal, customer_id, tracking_number)
    access.require(principal, action)
    return await _send_update(request, principal, customer_id, tracking_number, update, arg, done)


async def _send_update(request: Request, principal: Principal, customer_id: str, tracking_number: str,
                       update: str, arg: BaseModel, done: str) -> Response:
    """The Update, once the caller has checked the reach (404) and the role (403): the page again with
    the refusal (409), or back to the request with `done`."""
    try:
        await actions.request_update(await get_state(request).temporal(), tracking_number, update, arg)
    except RuleRefused as exc:
        return await _request_page(request, principal, customer_id, tracking_number, error=exc.message, status=409)
    return redirect(request, f"/workspace/{customer_id}/requests/{tracking_number}", done)


@router.get("/workspace/{customer_id}/requests/{tracking_number}/attachments/{attachment_id}")
async def attachment(request: Request, customer_id: str, tracking_number: str,
                     attachment_id: int = Path(ge=1, le=access.MAX_ROW_ID),
                     principal: Principal = Depends(require_user)) -> Response:
    """A file of the request's thread, to download (never rendered in the portal's origin)."""
    await _request_in_reach(request, principal, customer_id, tracking_number)
    async with get_state(request).sessions() as session:
        row = await get_attachment(session, tracking_number, attachment_id)
    if row is None:
        raise NotFound("attachment")
    # RFC 6266: an ASCII name for every client, the stored name UTF-8-encoded for those that read it.
    disposition = f'attachment; filename="{ascii_filename(row.filename)}"; filename*=UTF-8\'\'{quote(row.filename)}'
    return Response(row.content, media_type="application/octet-stream", headers={
        "Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"})


@router.post("/workspace/{customer_id}/requests/{tracking_number}/accept")
async def accept_resolution(request: Request, customer_id: str, tracking_number: str,
                            principal: Principal = Depends(require_user)) -> Response:
    """A4: the request closes when the customer accepts the measures OT proposed."""
    return await _request_update(request, principal, customer_id, tracking_number, Action.answer_resolution,
                                 "accept_resolution", AcceptResolution(by=principal.email),
                                 "You accepted the proposed measures; the request is closed.")


async def _request_in_reach(request: Request, principal: Principal, customer_id: str, tracking_number: str) -> None:
    """404 for a customer out of reach or a request of another customer, before anything else is said."""
    async with get_state(request).sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
        if await queries.request_of(session, customer_id, tracking_number) is None:
            raise NotFound("request")


async def _form_update(request: Request, principal: Principal, customer_id: str, tracking_number: str,
                       update: str, model: type[BaseModel], data: dict[str, Any], done: str) -> Response:
    """An Update from a posted form, once the caller has checked the reach and the role: an invalid field
    is shown on the page (422), nothing is sent."""
    try:
        arg = parse_model(model, {"by": principal.actor, "via": "portal", **data}, "the form")
    except RuleRefused as exc:
        return await _request_page(request, principal, customer_id, tracking_number, error=exc.message, status=422)
    return await _send_update(request, principal, customer_id, tracking_number, update, arg, done)


def author_role(principal: Principal) -> AuthorRole:
    """Who writes in a request's thread: the customer's side, the TL, or staff (A4)."""
    if principal.role == Role.contact:
        return AuthorRole.customer
    return AuthorRole.technical_lead if principal.role == Role.tl else AuthorRole.staff


@router.post("/workspace/{customer_id}/requests/{tracking_number}/comment")
async def add_comment(request: Request, customer_id: str, tracking_number: str,
                      principal: Principal = Depends(require_user)) -> Response:
    """A4: a message to the thread; the other side is mailed; a customer's answer resumes a pending request."""
    form = await request.form()
    await _request_in_reach(request, principal, customer_id, tracking_number)
    access.require(principal, Action.comment)
    uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]
    files: list[tuple[str, str, bytes]] = []
    for f in uploads[:MAX_ATTACHMENTS + 1]:
        name = clean_filename(f.filename or "")
        content = await f.read(ATTACHMENT_MAX_BYTES + 1)
        given = f.content_type or "application/octet-stream"
        # Browsers send octet-stream for a file they do not know (a .log): go by its name then.
        kind = (mimetypes.guess_type(name)[0] or given) if given == "application/octet-stream" else given
        why = attachment_refused(name, kind, len(content)) or (
            f"at most {MAX_ATTACHMENTS} files a message" if len(uploads) > MAX_ATTACHMENTS else None)
        if why:
            return await _request_page(request, principal, customer_id, tracking_number, error=why, status=422)
        files.append((name, kind, content))
    async with get_state(request).sessions() as session, session.begin():
        stored = [await add_upload(session, tracking_number=tracking_number, filename=n, content_type=k, content=c)
                  for n, k, c in files]
    refs = [{"id": r.id, "filename": r.filename, "content_type": r.content_type, "size": r.size} for r in stored]
    response: Response | None = None
    try:
        response = await _form_update(
            request, principal, customer_id, tracking_number, "add_comment", AddComment,
            {"message": str(form.get("message", "")), "role": author_role(principal), "attachments": refs},
            "Your message is in the conversation; the other side is told.")
    finally:
        if stored and (response is None or response.status_code >= 400):  # not posted: nothing of it is kept
            async with get_state(request).sessions() as session, session.begin():
                await delete_attachments(session, [r.id for r in stored])
    assert response is not None
    return response


# OT's side of a request, from its page (A4, C12): the step and the form fields of its payload.
STAFF_REQUEST_STEPS: dict[str, tuple[str, ...]] = {
    "respond": ("message",), "pend": ("reason",), "resume": ("note",), "propose_resolution": ("measures",),
    "record_written_acceptance": ("reference",), "change_priority": ("priority", "reason"),
}


@router.post("/workspace/{customer_id}/requests/{tracking_number}/steps/{step}")
async def staff_request_step(request: Request, customer_id: str, tracking_number: str, step: str,
                             principal: Principal = Depends(require_user)) -> Response:
    """A support rep, manager, TL or ops answers: the first response stops the C12 clock; pend asks the
    customer something; resume; propose measures; record a written acceptance; change the priority."""
    await _request_in_reach(request, principal, customer_id, tracking_number)
    fields = STAFF_REQUEST_STEPS.get(step)
    if fields is None:
        return await _request_page(request, principal, customer_id, tracking_number, status=422,
                                   error=f"{step} is not a step of a request: {', '.join(STAFF_REQUEST_STEPS)}")
    access.require(principal, Action.answer_request)
    form = await request.form()
    return await _form_update(request, principal, customer_id, tracking_number, step, spec(step).payload,
                              {f: str(form.get(f, "")) for f in fields}, f"{spec(step).title}: done.")


@router.post("/workspace/{customer_id}/requests/{tracking_number}/reject")
async def reject_resolution(request: Request, customer_id: str, tracking_number: str,
                            principal: Principal = Depends(require_user)) -> Response:
    """A4: the customer rejects the proposed measures with a reason; the request is open again."""
    await _request_in_reach(request, principal, customer_id, tracking_number)
    access.require(principal, Action.answer_resolution)
    form = await request.form()
    return await _form_update(request, principal, customer_id, tracking_number, "reject_resolution",
                              RejectResolution, {"reason": str(form.get("reason", ""))},
                              "You rejected the proposed measures; the request is open again.")


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
