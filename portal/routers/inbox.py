"""The inbox of Technical Leads and the desk: open steps across their programmes, and the step forms.

A step form posts the step's Update (the model of `actions.step_model`); who may complete
which step is `access.STEP_ROLES`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from domain.errors import RuleRefused
from portal import access, actions, forms
from portal.access import Action, NotFound
from portal.auth import Principal, check_csrf, require_user
from portal.rendering import redirect, render
from portal.routers.common import page_number, programme_tz
from portal.state import get_state
from starter import inbox as lists
from storage import repositories as repo
from storage.repositories.documents import MONTHLY_REPORT_DRAFT
from storage.users import Role

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


@router.get("/inbox")
async def inbox(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """A page of 50 open steps from the inbox projection (issue 16), overdue first."""
    access.require(principal, Action.inbox)
    state = get_state(request)
    own = principal.role == Role.tl
    tl = principal.technical_lead_id if own else (request.query_params.get("tl") or "").strip()[:128] or None
    page = page_number(request.query_params.get("page"))
    # A TL sees the steps of the programmes they lead now; staff everyone's.
    found = await lists.open_steps(state.settings, tl=tl, page=page, sessions=state.sessions,
                                   customers_led_by=principal.technical_lead_id if own else None)
    rows = [{**e.step.model_dump(), "customer_name": e.customer_name,
             "may_complete": access.may_complete_step(principal, e.step.step) and e.step.step in forms.STEP_FORMS}
            for e in found.items]
    return render(request, "inbox.html.j2", {
        "rows": rows, "tl": tl, "today": date.today(), "total": found.total, "overdue": found.overdue,
        "page": page, "pages": lists.page_count(found.total), "query": {"tl": tl} if tl and not own else {},
    }, title="Inbox")


async def _step_in_reach(request: Request, principal: Principal, customer_id: str,
                         step: str) -> tuple[access.CustomerInReach, forms.StepForm]:
    """The customer (404 out of reach), then the step's form (404 without one), then the role (403)."""
    async with get_state(request).sessions() as session:
        customer = await access.customer_in_reach(session, principal, customer_id)
    spec = forms.STEP_FORMS.get(step)
    if spec is None:
        raise NotFound("step")
    access.require_step(principal, step)
    return customer, spec


# The steps deciding on a month-end report (D7): their forms list the drafts.
REPORT_REVIEW_STEPS = frozenset({"approve_report", "send_back_report"})


def _month(request: Request) -> int | None:
    raw = request.query_params.get("month")
    return int(raw) if raw and raw.isdigit() and len(raw) <= 4 else None


@router.get("/programmes/{customer_id}/steps/{step}")
async def step_form(request: Request, customer_id: str, step: str,
                    principal: Principal = Depends(require_user)) -> Response:
    customer, spec = await _step_in_reach(request, principal, customer_id, step)
    defaults: dict[str, Any] = {}
    for f in spec.fields:
        if f.kind == "date" and f.name == "held_on":
            defaults[f.name] = date.today().isoformat()
    if step == "add_findings":
        defaults["role"] = "tl" if principal.role == Role.tl else "gts"
    drafts: list[Any] = []
    if step in REPORT_REVIEW_STEPS:
        # Rule D7: the TL reads the drafts waiting for a decision (newest first) before approving or sending back.
        async with get_state(request).sessions() as session:
            drafts = sorted(await repo.list_documents(session, customer_id, kind=MONTHLY_REPORT_DRAFT, drafts=True),
                            key=lambda d: d.id, reverse=True)[:3]
    return render(request, "step_form.html.j2", {
        "customer": customer, "spec": spec, "month": _month(request), "tz": str(programme_tz(customer)),
        "values": forms.default_values(spec.fields, defaults), "errors": forms.FormErrors(), "drafts": drafts},
        title=spec.title)


@router.post("/programmes/{customer_id}/steps/{step}")
async def complete_step(request: Request, customer_id: str, step: str,
                        principal: Principal = Depends(require_user)) -> Response:
    customer, spec = await _step_in_reach(request, principal, customer_id, step)
    model = actions.step_model(step)
    assert model is not None
    tz = programme_tz(customer)
    values = forms.submitted_values(spec.fields, await request.form())
    parsed, errors = forms.parse(model, spec.fields, values, extra={"by": principal.actor}, tz=tz)
    month = _month(request)
    if parsed is not None:
        try:
            payload = parsed.model_dump(mode="json", exclude={"by"})
            await actions.complete_step(await get_state(request).temporal(), customer_id, step, principal.actor,
                                        payload, month)
        except RuleRefused as exc:
            errors.top.append(exc.message)
    if parsed is None or errors:
        return render(request, "step_form.html.j2", {
            "customer": customer, "spec": spec, "month": month, "tz": str(tz), "values": values, "errors": errors},
            status=409 if parsed is not None else 422, title=spec.title)
    return redirect(request, "/inbox", f"{spec.title}: done for {customer.name}.")
