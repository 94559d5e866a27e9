"""`techconnect request ...`: open support requests and take them through their steps
(rules A1, A4, A6, C3, C12, C13, E1).

Same contract as the rest of the command line: exit 0 on success, 2 when a rule or a
check refuses (the message names the rule), 1 on other failures; `--json` prints
machine-readable output. Every step is the Update of the same name on
`request-<tracking_number>`, so the workflow's validators give the refusals.

The shared helpers (`run_async`, `Refused`, `client_for`, ...) are looked up at call
time in the module that runs the command line: under `python -m starter.cli` that is
`__main__`, not `starter.cli`, and importing the latter here would load a second copy
of the app (and a circular import).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from datetime import date
from functools import wraps
from types import ModuleType
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import RuleRefused
from domain.naming import SA_CUSTOMER_ID, SA_REQUEST_STATE, SA_SLA_BREACHED, SA_TECHNICAL_LEAD
from domain.request import (
    TRACKING_RE,
    AcceptResolution,
    ApproveDispatch,
    NewRequest,
    Pend,
    ProposeResolution,
    RecordVisit,
    RecordWrittenAcceptance,
    RejectResolution,
    RequestDispatch,
    RequestStatus,
    Respond,
    Resume,
)
from starter.requests import check_customisation, open_request, request_handle, request_status
from starter.settings import Settings

request_app = typer.Typer(help="Support requests: open, answer, close, on-site dispatch (A4, C12)",
                          no_args_is_help=True)

out = Console()

_WORKFLOW_ID_PREFIX = "request-"


def _cli() -> ModuleType:
    """The module running the command line (`__main__` under `python -m starter.cli`)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if main is not None and spec is not None and spec.name == "starter.cli":
        return main
    import starter.cli

    return starter.cli


def command(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async command through the CLI's `run_async` (exit codes); RuleRefused exits 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        cli = _cli()

        async def guarded() -> None:
            try:
                await fn(*args, **kwargs)
            except RuleRefused as exc:
                raise cli.Refused(str(exc)) from None

        cli.run_async(guarded)()

    return wrapper


def _refused(message: str) -> Exception:
    exc: Exception = _cli().Refused(message)
    return exc


def _check_number(tracking_number: str) -> str:
    number = tracking_number.strip().upper()
    if not TRACKING_RE.match(number):
        raise _refused(f"{tracking_number!r} is not a tracking number (e.g. TC-ACME-2027-0001, rule A4)")
    return number


async def _client() -> Client:
    client: Client = await _cli().client_for(Settings())
    return client


def _emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    _cli().emit(data, as_json, human)


async def execute_request_update(tracking_number: str, name: str, model: type[BaseModel], by: str,
                                 payload: dict[str, Any]) -> RequestStatus:
    """Send Update `name` to the request; a refusal (validator, closed request) exits 2."""
    cli = _cli()
    number = _check_number(tracking_number)
    arg = cli.parse_model(model, {**payload, "by": by, "via": "cli"}, f"{name} input")  # via: the audit log
    client = await _client()
    try:
        result: RequestStatus = await request_handle(client, number).execute_update(
            name, arg, result_type=RequestStatus)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise _refused(f"{name} refused: {getattr(cause, 'message', None) or cause or exc}") from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            # Unknown, or its run has completed (a closed request takes no more steps).
            status = await request_status(client, number)
            raise _refused(f"{name} refused: request {number} is {status.state.value}"
                           + (f" ({status.closure or status.refusal})" if (status.closure or status.refusal)
                              else "")) from None
        raise


def _print_status(s: RequestStatus) -> None:
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
    t = Table("at (UTC)", "from", "to", "by", "note")
    for c in s.history:
        t.add_row(c.at.isoformat(timespec="seconds"), c.from_state.value if c.from_state else "",
                  c.to_state.value, escape(c.by), escape(c.note))
    out.print(t)


async def _step(tracking_number: str, name: str, model: type[BaseModel], by: str, payload: dict[str, Any],
                as_json: bool) -> None:
    s = await execute_request_update(tracking_number, name, model, by, payload)
    _emit(s.model_dump(mode="json"), as_json,
          lambda: out.print(f"{name}: {s.tracking_number} is {s.state.value}"
                            + (" (SLA breached)" if s.sla_breached else "")))


# ------------------------------------------------------------------------------ commands
@request_app.command("open")
@command
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
    cli = _cli()
    new = cli.parse_model(NewRequest, {
        "customer_id": customer_id, "kind": kind, "priority": priority, "summary": summary,
        "description": description, "filed_by": by, "channel": channel, "customisation": customisation,
        "agreement_ref": agreement_ref}, "request")
    check_customisation(new)  # rule C13: refused before anything talks to Temporal
    settings = Settings()
    client = await _client()
    number = await open_request(client, settings, new)
    _emit({"tracking_number": number, "workflow_id": f"{_WORKFLOW_ID_PREFIX}{number}", "customer_id": customer_id},
          as_json, lambda: out.print(f"opened {number}; the Technical Lead is told (A1, A4); first response "
                                     f"within {settings.policy.first_response_minutes} minutes (C12)"))


@request_app.command("respond")
@command
async def request_respond(
    tracking_number: str, by: str = typer.Option(..., "--by"), message: str = typer.Option(..., "--message"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The support rep's first response: stops the C12 clock."""
    await _step(tracking_number, "respond", Respond, by, {"message": message}, as_json)


@request_app.command("pend")
@command
async def request_pend(
    tracking_number: str, by: str = typer.Option(..., "--by"), reason: str = typer.Option(..., "--reason"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Pending: waiting for the customer, with the reason (A6)."""
    await _step(tracking_number, "pend", Pend, by, {"reason": reason}, as_json)


@request_app.command("resume")
@command
async def request_resume(
    tracking_number: str, by: str = typer.Option(..., "--by"), note: str = typer.Option("", "--note"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Back to open after pending."""
    await _step(tracking_number, "resume", Resume, by, {"note": note}, as_json)


@request_app.command("propose")
@command
async def request_propose(
    tracking_number: str, by: str = typer.Option(..., "--by"), measures: str = typer.Option(..., "--measures"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """OT proposes measures; the customer accepts or rejects them (A4)."""
    await _step(tracking_number, "propose_resolution", ProposeResolution, by, {"measures": measures}, as_json)


@request_app.command("accept")
@command
async def request_accept(
    tracking_number: str, by: str = typer.Option(..., "--by", help="The customer's contact"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The customer accepts the proposed measures: the request closes (A4)."""
    await _step(tracking_number, "accept_resolution", AcceptResolution, by, {}, as_json)


@request_app.command("reject")
@command
async def request_reject(
    tracking_number: str, by: str = typer.Option(..., "--by"), reason: str = typer.Option(..., "--reason"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The customer rejects the proposed measures: back to open (A4)."""
    await _step(tracking_number, "reject_resolution", RejectResolution, by, {"reason": reason}, as_json)


@request_app.command("written-acceptance")
@command
async def request_written_acceptance(
    tracking_number: str, by: str = typer.Option(..., "--by"), reference: str = typer.Option(..., "--reference"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ops record the customer's written acceptance: the request closes (A4)."""
    await _step(tracking_number, "record_written_acceptance", RecordWrittenAcceptance, by,
                {"reference": reference}, as_json)


@request_app.command("dispatch")
@command
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
    await _step(tracking_number, "request_dispatch", RequestDispatch, by,
                {"reason": reason, "estimated_cost": {"amount": cost, "currency": currency},
                 "agreement_ref": agreement_ref}, as_json)


@request_app.command("approve")
@command
async def request_approve(
    tracking_number: str,
    by: str = typer.Option(..., "--by"),
    party: str = typer.Option(..., "--party", help="customer | manager"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Approve the pending on-site dispatch, before its deadline (A4)."""
    await _step(tracking_number, "approve_dispatch", ApproveDispatch, by, {"party": party}, as_json)


@request_app.command("visit")
@command
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
    try:
        date.fromisoformat(on)
    except ValueError:
        raise _refused(f"--on {on!r} is not a date (YYYY-MM-DD)") from None
    payload: dict[str, Any] = {"visit_on": on, "notes": notes}
    if cost is not None:
        payload["actual_cost"] = {"amount": cost, "currency": currency}
    await _step(tracking_number, "record_visit", RecordVisit, by, payload, as_json)


@request_app.command("show")
@command
async def request_show(tracking_number: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A request's state, SLA clock, dispatches and status history."""
    number = _check_number(tracking_number)
    s = await request_status(await _client(), number)
    _emit(s.model_dump(mode="json"), as_json, lambda: _print_status(s))


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@request_app.command("list")
@command
async def request_list(
    customer: str | None = typer.Option(None, "--customer"),
    state: str | None = typer.Option(None, "--state", help="open | pending | closed"),
    tl: str | None = typer.Option(None, "--tl"),
    breached: bool = typer.Option(False, "--breached", help="Only requests whose SLA was breached (C12)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Requests, from Temporal visibility (search attributes): the support desk's and TL's inbox."""
    query = "WorkflowType = 'SupportRequestWorkflow'"
    if customer:
        query += f" AND CustomerId = '{_quote(customer)}'"
    if state:
        query += f" AND RequestState = '{_quote(state)}'"
    if tl:
        query += f" AND TechnicalLead = '{_quote(tl)}'"
    if breached:
        query += " AND SlaBreached = true"
    client = await _client()
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query):
        sa = wf.typed_search_attributes
        rows.append({"tracking_number": wf.id.removeprefix(_WORKFLOW_ID_PREFIX), "workflow_id": wf.id,
                     "customer_id": sa.get(SA_CUSTOMER_ID), "state": sa.get(SA_REQUEST_STATE),
                     "sla_breached": bool(sa.get(SA_SLA_BREACHED)), "technical_lead": sa.get(SA_TECHNICAL_LEAD),
                     "opened_at": wf.start_time})
    rows.sort(key=lambda r: str(r["tracking_number"]))

    def human() -> None:
        t = Table("tracking number", "customer", "state", "SLA", "TL")
        for r in rows:
            t.add_row(r["tracking_number"], str(r["customer_id"]), str(r["state"]),
                      "[red]breached[/]" if r["sla_breached"] else "ok", escape(str(r["technical_lead"])))
        out.print(t)

    _emit(rows, as_json, human)


__all__ = ["execute_request_update", "request_app"]
