"""Operations: the programme lists and pages (also a Technical Lead's own), starting a programme,
notices (C14, C16), billable extras and the audit log (portal/audit.py).

Every route that takes a customer ID resolves it through `access.customer_in_reach` (404 when
out of reach) before reading anything else or calling Temporal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.activities import AuditEntry
from domain.enrolment import Enrolment
from domain.errors import RuleRefused, RuleViolation
from domain.holidays import describe_list
from domain.inbox import PAGE_SIZE
from domain.prices import iso_day, price_on
from domain.program import ProgramStatus
from domain.step_inputs import (
    EXTRA_RULES,
    BillableExtraKind,
    GiveNonRenewalNotice,
    RecordBillableExtra,
    check_billable_extra,
)
from portal import access, actions, audit, forms, queries, timeline
from portal.access import Action, NotFound
from portal.auth import Principal, check_csrf, require_user
from portal.rendering import redirect, render
from portal.routers.common import page_number, refusal_errors
from portal.state import PortalState, get_state
from starter.inbox import page_count
from storage import ledger
from storage import repositories as repo
from storage import users as users_repo
from storage.repositories import holidays as holiday_repo
from storage.repositories.prices import entry_of
from storage.users import Role

log = logging.getLogger("techconnect.portal")
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])

PHASES = ["enrolling", "onboarding", "running", "renewal", "closing", "closed", "refused"]


async def _record_audit(state: PortalState, principal: Principal, action: str, customer_id: str,
                        detail: dict[str, Any]) -> None:
    """An action the workflows do not record themselves (starting a programme). Steps, notices, extras and
    request actions are audited by their workflow, with `via="portal"` in the Update (interface "portal")."""
    async with state.sessions() as session, session.begin():
        await repo.append_audit(session, AuditEntry(at=repo.utcnow(), actor=principal.email, role=principal.role.value,
                                                    action=action, customer_id=customer_id, interface="portal",
                                                    detail=detail))


# ---- programmes (Technical Leads and OpenText staff) ---------------------------------------------------


@router.get("/programmes")
async def programmes(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require_programme_list(principal)
    q = request.query_params
    renewal, phase, tl = q.get("renewal") or "", q.get("phase") or "", q.get("tl") or ""
    overdue = q.get("overdue") == "on"
    filters: dict[str, Any] = {"phase": phase, "tl": tl, "renewal": renewal, "overdue": overdue}
    page = page_number(q.get("page"))
    state = get_state(request)
    async with state.sessions() as session:
        # A page of 50 and the total, filtered in SQL (issue 16); a TL sees the programmes they lead.
        chosen: dict[str, Any] = {
            "phase": phase or None, "tl": tl or None, "overdue": overdue,
            "led_by": principal.technical_lead_id if principal.role == Role.tl else None,
            "renewal_within_days": int(renewal) if renewal.isdigit() and len(renewal) <= 5 else None}
        rows = await queries.programme_views(session, **chosen, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        total = await queries.count_programmes(session, **chosen)
        tls = await users_repo.list_users(session, role=Role.tl)
    return render(request, "programmes.html.j2", {
        "rows": rows, "filters": filters, "phases": PHASES, "tls": tls, "total": total, "page": page,
        "pages": page_count(total), "query": {k: ("on" if v is True else v) for k, v in filters.items() if v},
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
    holidays = await _holiday_line(state, live) if live else None
    return render(request, "programme.html.j2", {
        "customer": customer, "live": live, "view": view, "extras": extras, "steps_allowed": steps_allowed,
        "holidays": holidays, "may_see_holidays": access.may(principal, Action.holiday_lists),
        "plain_quantity": ledger.plain_quantity,
        # The year at a glance: the live state when the workflow answers, else the stored projection.
        "timeline": timeline.of_status(live, state.clock) if live else timeline.of_projection(customer.programme,
                                                                                                state.clock),
        "workflow_id": live.workflow_id if live else view.workflow_id if view else ""}, title=customer.name)


async def _holiday_line(state: PortalState, live: ProgramStatus) -> tuple[str, str]:
    """Rule A1: the region whose published holiday list the programme's deadlines use, and a line saying what it
    holds for the years of the current period (every year when no period is planned yet)."""
    region = live.calendar.holiday_list_region
    async with state.sessions() as session:
        head = await holiday_repo.get_holiday_list(session, region)
        years = await holiday_repo.list_holiday_years(session, region)
    if live.plan is not None:
        span = range(live.plan.period_start.year, live.plan.period_end.year + 1)
        years = [y for y in years if y.year in span] or years
    return region, describe_list(region, head.version if head else None, years)


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
        except RuleRefused as exc:
            errors = refusal_errors(fields, exc)
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
    await _record_audit(state, principal, "start_programme", enrolment.customer.id, {"workflow_id": wid})
    return redirect(request, f"/programmes/{enrolment.customer.id}",
                    f"Programme started: {wid}. The contacts get their welcome mail and workspace access.")


# ---- notices and billable extras: a list, and a form that posts one programme Update ----------------------


@dataclass(frozen=True)
class _OpsForm:
    template: str
    title: str
    fields: tuple[forms.Field, ...]
    record: Action  # who may post the form; everyone with the operations pages sees the list
    step: str
    model: type[BaseModel]
    path: str  # the list's page; the form posts to it and comes back to it
    done: str
    listing: Callable[[AsyncSession], Awaitable[dict[str, Any]]]
    prepare: Callable[[dict[str, Any]], dict[str, Any]] = dict  # the submitted values, as the model parses them
    rules: Callable[[BaseModel], list[RuleViolation]] | None = None  # checked beside the fields before Temporal


async def _notice_listing(session: AsyncSession) -> dict[str, Any]:
    return {"programmes": await queries.programme_views(session), "docs": await queries.notices(session)}


async def _extra_listing(session: AsyncSession) -> dict[str, Any]:
    extras = await queries.billable_extras(session)
    return {"extras": extras, "totals": ledger.ledger_totals(extras), "plain_quantity": ledger.plain_quantity}


def _extra_rules(model: BaseModel) -> list[RuleViolation]:
    """Rule C3 before Temporal: the agreement, and the reason an amount overrides the price list."""
    assert isinstance(model, RecordBillableExtra)
    return check_billable_extra(model.kind, model.agreement_ref, model.amount, model.override_reason)


def _extra_values(values: dict[str, Any]) -> dict[str, Any]:
    parse_values = dict(values)
    if not str(values.get("amount.amount") or "").strip():
        parse_values["amount.currency"] = ""  # no amount: no Money at all
    return parse_values


NOTICES = _OpsForm("notices.html.j2", "Notices", forms.OPS_NOTICE_FIELDS, Action.record_notice,
                   "give_non_renewal_notice", GiveNonRenewalNotice, "/ops/notices", "Non-renewal notice recorded",
                   _notice_listing)
EXTRAS = _OpsForm("extras.html.j2", "Billable extras", forms.EXTRA_FIELDS, Action.record_extra,
                  "record_billable_extra", RecordBillableExtra, "/ops/extras", "Billable extra recorded",
                  _extra_listing, _extra_values, _extra_rules)


async def _customer_options(session: AsyncSession, principal: Principal) -> list[tuple[str, str]]:
    return [(c.id, f"{c.name} ({c.id})") for c in await access.customers_in_reach(session, principal)]


def _with_options(fields: tuple[forms.Field, ...], name: str,
                  options: list[tuple[str, str]]) -> tuple[forms.Field, ...]:
    return tuple(forms.Field(f.name, f.label, f.kind, f.help, f.required, (("", "Choose"), *options),
                             width=f.width) if f.name == name else f for f in fields)


async def _ops_page(request: Request, principal: Principal, form: _OpsForm, *, values: dict[str, Any] | None = None,
                    errors: forms.FormErrors | None = None, status: int = 200) -> Response:
    async with get_state(request).sessions() as session:
        fields = _with_options(form.fields, "customer_id", await _customer_options(session, principal))
        listing = await form.listing(session)
    return render(request, form.template, {
        "fields": fields, "values": values or forms.default_values(fields), "errors": errors or forms.FormErrors(),
        **listing, "may_record": access.may(principal, form.record),
        "may_see_prices": access.may(principal, Action.price_list)}, status=status, title=form.title)


async def _submit_ops_step(request: Request, principal: Principal, form: _OpsForm) -> Response:
    """One operations form posting one programme Update: role, reach check, parse, Update, page or redirect."""
    access.require(principal, form.record)
    values = forms.submitted_values(form.fields, await request.form())
    state = get_state(request)
    customer_id = str(values.get("customer_id") or "")
    async with state.sessions() as session:
        await access.customer_in_reach(session, principal, customer_id)
    parsed, errors = forms.parse(form.model, form.fields, form.prepare(values), extra={"by": principal.email})
    if parsed is not None and form.rules is not None:
        errors = forms.violation_errors(form.fields, form.rules(parsed))
    if parsed is not None and not errors:
        try:
            await actions.complete_step(await state.temporal(), customer_id, form.step,
                                        principal.email, parsed.model_dump(mode="json", exclude={"by"}))
        except RuleRefused as exc:
            errors.top.append(exc.message)
    if parsed is None or errors:
        return await _ops_page(request, principal, form, values=values, errors=errors,
                               status=409 if parsed is not None else 422)
    return redirect(request, form.path, f"{form.done} for {customer_id}.")


def _add_ops_form_routes(form: _OpsForm, list_name: str, record_name: str) -> None:
    """GET `form.path` lists (operations pages), POST records (`form.record`)."""

    async def show(request: Request, principal: Principal = Depends(require_user)) -> Response:
        access.require(principal, Action.ops_pages)
        return await _ops_page(request, principal, form)

    async def record(request: Request, principal: Principal = Depends(require_user)) -> Response:
        return await _submit_ops_step(request, principal, form)

    router.add_api_route(form.path, show, methods=["GET"], name=list_name)
    router.add_api_route(form.path, record, methods=["POST"], name=record_name)


_add_ops_form_routes(NOTICES, "notices", "record_notice")
_add_ops_form_routes(EXTRAS, "extras", "record_extra")


# ---- the ledger's CSV and OT's price list (rule C3) --------------------------------------------------------


def _day_param(name: str, raw: str | None) -> date | None:
    if not raw:
        return None
    if (day := iso_day(raw)) is None:
        raise HTTPException(422, f"{name}: {raw[:20]!r} is not a date (YYYY-MM-DD)")
    return day


@router.get("/ops/extras.csv")
async def extras_csv(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """The ledger recorded from `from` to `to` (UTC days, both included; either may be left out) as the CSV
    `techconnect extras export` writes (storage/ledger.py)."""
    access.require(principal, Action.ops_pages)
    first = _day_param("from", request.query_params.get("from"))
    last = _day_param("to", request.query_params.get("to"))
    if first and last and last < first:
        raise HTTPException(422, f"to {last} is before from {first}")
    async with get_state(request).sessions() as session:
        rows = await repo.list_billable_extras_between(session, first or date.min, last or date.max)
    name = f"billable-extras-{first or 'start'}-to-{last or 'now'}.csv"
    return Response(ledger.ledger_csv(rows), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


@router.get("/ops/prices")
async def prices_page(request: Request, principal: Principal = Depends(require_user)) -> Response:
    access.require(principal, Action.price_list)
    async with get_state(request).sessions() as session:
        rows = await repo.list_price_rows(session)
    entries = [entry_of(r) for r in rows]
    today = repo.utcnow().date()  # the day an extra recorded now is priced on (UTC)
    in_force = {(e.kind, e.effective_from) for k in BillableExtraKind if (e := price_on(entries, k, today))}
    prices = [{"row": r, "rule": EXTRA_RULES[e.kind], "in_force": (e.kind, e.effective_from) in in_force,
               "upcoming": e.effective_from > today} for r, e in zip(rows, entries, strict=True)]
    unlisted = [k.value for k in BillableExtraKind if k not in {kind for kind, _ in in_force}]
    return render(request, "prices.html.j2", {"prices": prices, "unlisted": unlisted}, title="Price list")


def _holiday_year(raw: str | None) -> int | None:
    """The `year` asked for, None when not given; 422 unless a year a date can have (1 to 9999)."""
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and int(raw) >= 1):
        raise HTTPException(422, f"year: {raw[:20]!r} is not a year from 1 to 9999")
    return int(raw)


@router.get("/ops/holidays")
async def holidays_page(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """Rule A1: OT's holiday lists per region, and one region-year's days with where they came from."""
    access.require(principal, Action.holiday_lists)
    q = request.query_params
    asked = _holiday_year(q.get("year"))
    state = get_state(request)
    async with state.sessions() as session:
        lists = await holiday_repo.list_holiday_lists(session)
        region = q.get("region") or (lists[0].region if lists else "")
        years = await holiday_repo.list_holiday_years(session, region) if region else []
        this_year = state.clock().year
        year = asked or (
            this_year if any(y.year == this_year for y in years) else years[-1].year if years else this_year)
        days = await holiday_repo.list_holidays(session, region, year) if region else []
    shown = next((y for y in years if y.year == year), None)
    return render(request, "holidays.html.j2", {"lists": lists, "region": region, "years": years, "year": year,
                                                "shown": shown, "days": days}, title="Holidays")


# ---- audit log ----------------------------------------------------------------------------------------------


@router.get("/ops/audit")
async def audit_page(request: Request, principal: Principal = Depends(require_user)) -> Response:
    q = request.query_params
    f = audit.AuditFilters.of(q.get("customer"), q.get("actor"), q.get("action"), q.get("interface"))
    page = page_number(q.get("page"))
    async with get_state(request).sessions() as session:
        await audit.allowed(session, principal, f.customer_id)
        rows, total = await audit.entries(session, f, limit=audit.PAGE_SIZE, offset=(page - 1) * audit.PAGE_SIZE)
        customers, action_names, interfaces = await audit.facets(session)
    pages = max(1, -(-total // audit.PAGE_SIZE))
    return render(request, "audit.html.j2", {
        "rows": rows, "total": total, "filters": f, "page": page, "pages": pages, "page_size": audit.PAGE_SIZE,
        "customers": customers, "actions": action_names, "interfaces": interfaces, "query": f.query(),
    }, title="Audit log")
