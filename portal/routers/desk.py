"""The support desk's queue (C12): every request not closed, across the customers the person may
see, the late ones first, with the time left on each first-response clock. One SQL query a page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from domain.inbox import PAGE_SIZE
from domain.request import Priority
from portal import access, queries
from portal.access import Action
from portal.auth import Principal, require_user
from portal.rendering import render
from portal.routers.common import page_number
from portal.state import get_state
from starter.inbox import page_count
from storage.repositories.inbound import list_inbound
from storage.users import Role

router = APIRouter(include_in_schema=False)

FILTERS = ("customer", "priority", "state", "tl")


@router.get("/desk")
async def desk(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """A page of 50 requests of the queue, ordered and counted in SQL (issue 16)."""
    access.require(principal, Action.desk)
    given = {k: (request.query_params.get(k) or "").strip()[:128] or None for k in FILTERS}
    page = page_number(request.query_params.get("page"))
    async with get_state(request).sessions() as session:
        customers = await access.customer_names_in_reach(session, principal)
        # A TL sees the requests of the programmes they lead; staff every customer's.
        found = await queries.desk_queue(session, None, customer=given["customer"], priority=given["priority"],
                                         state=given["state"], tl=given["tl"],
                                         led_by=principal.technical_lead_id if principal.role == Role.tl else None,
                                         offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return render(request, "desk.html.j2", {
        "rows": found.rows, "given": given, "customers": customers, "priorities": [p.value for p in Priority],
        "states": queries.DESK_STATES, "late": found.late, "total": found.total, "page": page,
        "pages": page_count(found.total), "query": {k: v for k, v in given.items() if v},
    }, title="Support desk")


@router.get("/desk/quarantine")
async def quarantine(request: Request, principal: Principal = Depends(require_user)) -> Response:
    """Replies by mail that were not posted (bad token, stranger, closed request, too big), newest first."""
    access.require(principal, Action.quarantine)
    async with get_state(request).sessions() as session:
        rows = await list_inbound(session, status="quarantined")
    return render(request, "quarantine.html.j2", {"rows": rows}, title="Mail quarantine")
