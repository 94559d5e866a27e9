"""`techconnect request ...`: open support requests and take them through their steps
(rules A1, A4, A6, C3, C12, C13, E1).

Every step is the Update of the same name on `request-<tracking_number>`, so the workflow's
validators give the refusals (exit 2, the message names the rule).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from temporalio.service import RPCStatusCode

from cli import runtime
from cli.runtime import emit, run_async
from config.settings import Settings
from domain.errors import NotFound, UpdateRefused
from domain.naming import request_workflow_id
from domain.request import NewRequest, RequestStatus
from domain.steps import spec
from starter.errors import parse_model
from starter.requests import check_customisation, check_tracking_number, open_request, request_status, update_request
from starter.visibility import list_requests

request_app = typer.Typer(help="Support requests: open, answer, close, on-site dispatch (A4, C12)",
                          no_args_is_help=True)


async def execute_request_update(tracking_number: str, name: str, by: str, payload: dict[str, Any]) -> RequestStatus:
    """Send Update `name` (a request step of domain/steps.py) to the request; a refusal (validator, closed
    request) exits 2."""
    number = check_tracking_number(tracking_number)
    arg = parse_model(spec(name).payload, {**payload, "by": by, "via": "cli"}, f"{name} input")  # via: the audit log
    client = await runtime.client_for(Settings())
    try:
        # FAILED_PRECONDITION too: a completed run (a closed request) takes no more steps.
        return await update_request(client, number, name, arg,
                                    (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION))
    except NotFound:
        status = await request_status(client, number)
        raise UpdateRefused(name, f"{name} refused: request {number} is {status.state.value}"
                            + (f" ({status.closure or status.refusal})" if (status.closure or status.refusal)
                               else "")) from None


def _print_status(s: RequestStatus) -> None:
    out = runtime.out
    out.print(f"[bold]{s.tracking_number}[/] {s.kind.value} request of {escape(s.customer_id)}, "
              f"priority {s.priority.value}, state [bold]{s.state.value}[/]")
    out.print(escape(f"summary: {s.summary}"))
    if s.refusal:
        out.print(f"[red]refused[/] {escape(s.refusal)}")
    deadline = s.first_response_deadline.isoformat() if s.first_response_deadline else "not set yet"
    if s.first_response_at:
        out.print(escape(f"first response by {s.first_response_by} at {s.first_response_at.isoformat()} "
                         f"(deadline {deadline})"))
    else:
        out.print(f"first response due by {deadline} (C12)")
    if s.sla_breached:
        out.print("[red]SLA breached (C12)[/]")
    if s.pending_reason:
        out.print(escape(f"pending: {s.pending_reason}"))
    if s.proposal:
        out.print(escape(f"proposed by {s.proposal.proposed_by}: {s.proposal.measures}"))
    for n, d in enumerate(s.dispatches, 1):
        out.print(escape(f"dispatch #{n}: {d.state.value}, {d.estimated_cost}, agreement {d.agreement_ref}"
                         + (f", booking {d.booking_ref} ({d.engineer})" if d.booking_ref else "")
                         + (f"; {d.refusal}" if d.refusal else "")))
    if s.closure:
        out.print(escape(f"closed: {s.closure}"))
    for m in s.messages:
        out.print(escape(f"#{m.seq} {m.at.isoformat(timespec='seconds')} {m.by} ({m.role.value}, {m.via}):"))
        out.print(escape(f"    {m.text}"))
    t = Table("at (UTC)", "from", "to", "by", "note")
    for c in s.history:
        t.add_row(c.at.isoformat(timespec="seconds"), c.from_state.value if c.from_state else "",
                  c.to_state.value, escape(c.by), escape(c.note))
    out.print(t)


async def _step(tracking_number: str, name: str, by: str, payload: dict[str, Any], as_json: bool) -> None:
    s = await execute_request_update(tracking_number, name, by, payload)
    emit(s.model_dump(mode="json"), as_json,
         lambda: runtime.out.print(f"{name}: {s.tracking_number} is {s.state.value}"
                                   + (" (SLA breached)" if s.sla_breached else "")))


# ------------------------------------------------------------------------------ commands
@request_app.command("open")
@run_async
async def request_open(
    customer_id: str,
    kind: str = typer.Option(..., "--kind", help="support | product | advisory | training (A6)"),
    priority: str = typer.Option(..., "--priority", help="critical | high | medium | low (set with the customer)"),
    summary: str = typer.Option(..., "--summary"),
    description: str = typer.Option("", "--description"),
    by: str = typer.Option("ops", "--by", help="Who files the request"),
    channel: str = typer.Option("cli", "--channel", help="phone | email | portal | cli"),
    customisation: bool = typer.Option(False, "--customisation", help="A customisation of an OT product (C13)"),
    agreement_ref: str | None = typer.Option(None, "--agreement-ref", help="Separate agreement (C13)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Open a support request for an enrolled customer; prints its tracking number (A4)."""
    new = parse_model(NewRequest, {
        "customer_id": customer_id, "kind": kind, "priority": priority, "summary": summary,
        "description": description, "filed_by": by, "channel": channel, "customisation": customisation,
        "agreement_ref": agreement_ref}, "request")
    check_customisation(new)  # rule C13: refused before anything talks to Temporal
    settings = Settings()
    client = await runtime.client_for(settings)
    number = await open_request(client, settings, new)
    minutes = settings.policy.first_response_minutes
    emit({"tracking_number": number, "workflow_id": request_workflow_id(number), "customer_id": customer_id},
         as_json, lambda: runtime.out.print(f"opened {number}; the Technical Lead is told (A1, A4); first response "
                                            f"within {minutes} minutes (C12)"))


def _text_step(command: str, step: str, option: str, doc: str, default: str | None = None,
               help: str | None = None) -> None:
    """A step whose payload is one text option (`--<option>`, the payload field of the same name)."""

    async def run(tracking_number: str, by: str = typer.Option(..., "--by"),
                  text: str = typer.Option(... if default is None else default, f"--{option}", help=help),
                  as_json: bool = typer.Option(False, "--json")) -> None:
        await _step(tracking_number, step, by, {option: text}, as_json)

    run.__doc__ = doc
    request_app.command(command)(run_async(run))


_text_step("respond", "respond", "message", "The support rep's first response: stops the C12 clock.")
_text_step("pend", "pend", "reason", "Pending: waiting for the customer, with the reason (A6).")
_text_step("resume", "resume", "note", "Back to open after pending.", default="")
_text_step("propose", "propose_resolution", "measures",
           "OT proposes measures; the customer accepts or rejects them (A4).")


@request_app.command("accept")
@run_async
async def request_accept(
    tracking_number: str, by: str = typer.Option(..., "--by", help="The customer's contact"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The customer accepts the proposed measures: the request closes (A4)."""
    await _step(tracking_number, "accept_resolution", by, {}, as_json)


_text_step("reject", "reject_resolution", "reason", "The customer rejects the proposed measures: back to open (A4).")
_text_step("written-acceptance", "record_written_acceptance", "reference",
           "Ops record the customer's written acceptance: the request closes (A4).")


@request_app.command("comment")
@run_async
async def request_comment(
    tracking_number: str,
    by: str = typer.Option(..., "--by", help="Staff or TL id, or the e-mail address of the customer's contact"),
    message: str = typer.Option(..., "--message"),
    role: str = typer.Option("staff", "--as", help="staff | technical_lead | customer (a contact, --by their e-mail)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a message to the request's thread; the other side is mailed (A4)."""
    await _step(tracking_number, "add_comment", by, {"message": message, "role": role}, as_json)


@request_app.command("priority")
@run_async
async def request_priority(
    tracking_number: str,
    by: str = typer.Option(..., "--by"),
    priority: str = typer.Option(..., "--priority", help="critical | high | medium | low (agreed with the customer)"),
    reason: str = typer.Option(..., "--reason", help="Why, as agreed with the customer (A4)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Change the priority agreed with the customer (A4); the status history keeps the change."""
    await _step(tracking_number, "change_priority", by, {"priority": priority, "reason": reason}, as_json)


@request_app.command("dispatch")
@run_async
async def request_dispatch(
    tracking_number: str,
    by: str = typer.Option(..., "--by"),
    reason: str = typer.Option(..., "--reason"),
    cost: str = typer.Option(..., "--cost", help="Estimated cost, e.g. 1800.00"),
    currency: str = typer.Option("EUR", "--currency"),
    agreement_ref: str = typer.Option(..., "--agreement-ref", help="Separate agreement for the extra cost (C3)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Request on-site support at extra cost (A4, C3); the customer and a manager approve it."""
    await _step(tracking_number, "request_dispatch", by,
                {"reason": reason, "estimated_cost": {"amount": cost, "currency": currency},
                 "agreement_ref": agreement_ref}, as_json)


_text_step("approve", "approve_dispatch", "party", "Approve the pending on-site dispatch, before its deadline (A4).",
           help="customer | manager")


@request_app.command("visit")
@run_async
async def request_visit(
    tracking_number: str,
    by: str = typer.Option(..., "--by"),
    on: str = typer.Option(..., "--on", help="Date of the visit, YYYY-MM-DD"),
    notes: str = typer.Option(..., "--notes"),
    cost: str | None = typer.Option(None, "--cost", help="Actual cost, when it differs from the estimate"),
    currency: str = typer.Option("EUR", "--currency"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record the on-site visit; its cost becomes a billable extra (A4, C3)."""
    runtime.check_date("--on", on)
    payload: dict[str, Any] = {"visit_on": on, "notes": notes}
    if cost is not None:
        payload["actual_cost"] = {"amount": cost, "currency": currency}
    await _step(tracking_number, "record_visit", by, payload, as_json)


@request_app.command("show")
@run_async
async def request_show(tracking_number: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A request's state, SLA clock, dispatches and status history."""
    number = check_tracking_number(tracking_number)
    s = await request_status(await runtime.client_for(Settings()), number)
    emit(s.model_dump(mode="json"), as_json, lambda: _print_status(s))


@request_app.command("list")
@run_async
async def request_list(
    customer: str | None = typer.Option(None, "--customer"),
    state: str | None = typer.Option(None, "--state", help="open | pending | closed"),
    tl: str | None = typer.Option(None, "--tl"),
    breached: bool = typer.Option(False, "--breached", help="Only requests whose SLA was breached (C12)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Requests, from Temporal visibility (search attributes): the support desk's and TL's inbox."""
    rows = await list_requests(await runtime.client_for(Settings()), customer, state, tl, breached)

    def human() -> None:
        t = Table("tracking number", "customer", "state", "SLA", "TL")
        for r in rows:
            t.add_row(r["tracking_number"], str(r["customer_id"]), str(r["state"]),
                      "[red]breached[/]" if r["sla_breached"] else "ok", escape(str(r["technical_lead"])))
        runtime.out.print(t)

    emit(rows, as_json, human)


__all__ = ["execute_request_update", "request_app"]
