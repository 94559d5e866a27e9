"""`techconnect step ...` and `notice ...`: the Technical Lead's steps and the notices (C16).

`step list` reads the application database only; the commands that send an Update import Temporal's client
when they run, so the list starts without it (issue 16: the whole command in under a second).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli import runtime
from cli.runtime import emit, load_document, run_async
from config.settings import Settings
from domain.errors import Refused
from starter import inbox

step_app = typer.Typer(help="The Technical Lead's steps", no_args_is_help=True)
notice_app = typer.Typer(help="Notices (rule C16)", no_args_is_help=True)


@step_app.command("list")
@run_async
async def step_list(
    tl: str | None = typer.Option(None, "--tl"),
    page: int = typer.Option(1, "--page", help="Page of 50, from 1"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Open steps across programmes and monthly cycles, overdue first: the TL inbox (application database)."""
    found = await inbox.open_steps(Settings(), tl=tl, page=page)
    rows = [{**e.step.model_dump(mode="json"), "customer_name": e.customer_name} for e in found.items]

    def human() -> None:
        t = Table("customer", "step", "rule", "due", "workflow")
        for r in rows:
            due = f"[red]{r['due_on']} overdue[/]" if r["overdue"] else str(r["due_on"] or "")
            t.add_row(r["customer_id"], r["step"], r["rule"], due, r["workflow_id"])
        runtime.out.print(t)
        runtime.out.print(inbox.page_line(page, found.total, "open step(s)"))

    emit({"items": rows, "total": found.total, "page": page, "pages": inbox.page_count(found.total)}, as_json, human)


@step_app.command("complete")
@run_async
async def step_complete(
    customer_id: str,
    step: str,
    by: str = typer.Option(..., "--by", help="ID of the person completing the step"),
    file: Path | None = typer.Option(None, "--file", "-f", help="Payload, JSON or YAML"),
    month: int | None = typer.Option(None, "--month", help="Monthly cycle number, for cycle steps"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Complete a step with an Update (the same one `temporal workflow update execute` sends)."""
    payload = load_document(file) if file else {}
    if payload is None:
        payload = {}  # an empty YAML file
    if not isinstance(payload, dict):
        raise Refused(f"{file}: the payload must be an object")
    from starter.programs import execute_step, prepare_step

    prepare_step(step, by, payload)
    client = await runtime.client_for(Settings())
    res = await execute_step(client, customer_id, step, by, payload, month)
    emit(res, as_json, lambda: runtime.out.print(f"{step} done on {res['workflow_id']}"))


@step_app.command("extra-report")
@run_async
async def step_extra_report(
    customer_id: str,
    delivered_on: str = typer.Option(..., "--on", help="YYYY-MM-DD, the day the report was delivered"),
    description: str = typer.Option(..., "--description"),
    agreement_ref: str = typer.Option(..., "--agreement-ref", help="The agreement for the extra (C3, C10)"),
    by: str = typer.Option(..., "--by", help="ID of the person recording it"),
    month: int | None = typer.Option(None, "--month", help="The cycle's (first) month, when several run"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a report beyond the cycle's included one: a billable extra (rule C10)."""
    from starter.programs import prepare_step, record_extra_report

    runtime.check_date("--on", delivered_on)
    prepare_step("record_extra_report", by,
                 {"delivered_on": delivered_on, "description": description, "agreement_ref": agreement_ref})
    client = await runtime.client_for(Settings())
    res = await record_extra_report(client, customer_id, by, delivered_on, description, agreement_ref, month)
    emit(res, as_json, lambda: runtime.out.print(f"extra report recorded on {res['workflow_id']}"))


@notice_app.command("non-renewal")
@run_async
async def notice_non_renewal(
    customer_id: str,
    party: str = typer.Option(..., "--party", help="customer or ot"),
    received_on: str = typer.Option(..., "--received-on", help="YYYY-MM-DD"),
    reference: str = typer.Option(..., "--reference"),
    by: str = typer.Option("ops", "--by"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a written non-renewal notice (rule C16: up to and including the deadline day)."""
    runtime.check_date("--received-on", received_on)
    await _notice(customer_id, "give_non_renewal_notice", by,
                  {"party": party, "received_on": received_on, "reference": reference}, as_json,
                  f"non-renewal notice recorded for {customer_id}; the programme closes at the period end")


async def _notice(customer_id: str, step: str, by: str, payload: dict[str, Any], as_json: bool, done: str) -> None:
    """A notice is a programme step: checked here as the workflow will, then sent as its Update."""
    from starter.programs import execute_step, prepare_step

    prepare_step(step, by, payload)
    client = await runtime.client_for(Settings())
    res = await execute_step(client, customer_id, step, by, payload)
    emit(res, as_json, lambda: runtime.out.print(done))


@notice_app.command("invoice-paid")
@run_async
async def notice_invoice_paid(
    customer_id: str,
    invoice: str = typer.Option(..., "--invoice", help="The invoice number, e.g. TC-INV-ACME-P2"),
    paid_on: str = typer.Option(..., "--paid-on", help="YYYY-MM-DD"),
    by: str = typer.Option("ops", "--by"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record the renewal invoice paid (rule C14: any time from its issue, this period or the next)."""
    runtime.check_date("--paid-on", paid_on)
    await _notice(customer_id, "record_renewal_invoice_paid", by, {"invoice_ref": invoice, "paid_on": paid_on},
                  as_json, f"invoice {invoice} recorded paid on {paid_on} for {customer_id}")


__all__ = ["notice_app", "step_app"]
