"""`techconnect program ...`, `step ...` and `notice ...`: programmes, the Technical Lead's steps, notices (C16)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from cli import runtime
from cli.runtime import emit, load_document, run_async
from config.settings import Settings
from domain.enrolment import Enrolment
from domain.errors import Refused, RuleRefused
from starter import inbox
from starter.errors import parse_model
from starter.programs import (
    agree_call_frequency,
    execute_step,
    fetch_status,
    precheck_enrolment,
    prepare_step,
    record_extra_report,
    start_program,
)

program_app = typer.Typer(help="Start and follow programmes", no_args_is_help=True)
step_app = typer.Typer(help="The Technical Lead's steps", no_args_is_help=True)
notice_app = typer.Typer(help="Notices (rule C16)", no_args_is_help=True)


@program_app.command("start")
@run_async
async def program_start(
    file: Path = typer.Option(..., "--file", "-f", help="Enrolment file, JSON or YAML"),
    by: str = typer.Option("ops", "--by"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Enrol a customer and start its programme."""
    settings = Settings()
    enrolment = parse_model(Enrolment, load_document(file), str(file))
    await precheck_enrolment(settings, enrolment)
    client = await runtime.client_for(settings)
    wid = await start_program(client, settings, enrolment, by)
    emit({"workflow_id": wid, "customer_id": enrolment.customer.id}, as_json,
         lambda: runtime.out.print(f"started {wid}; see {settings.ui_url}/namespaces/{settings.temporal.namespace}"
                                   f"/workflows/{wid}"))


@program_app.command("status")
@run_async
async def program_status(customer_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A programme's phase, deliverables, cycles and renewal."""
    client = await runtime.client_for(Settings())
    s = await fetch_status(client, customer_id)

    def human() -> None:
        out = runtime.out
        # escape(): names and reasons are user text, not rich markup.
        out.print(f"[bold]{escape(s.customer_name)}[/] ({s.customer_id}) period {s.period}, "
                  f"phase [bold]{s.phase}[/]")
        out.print(escape(f"TL: {s.technical_lead.name} <{s.technical_lead.email}>"))
        if s.plan:
            out.print(f"period {s.plan.period_start} to {s.plan.period_end}; "
                      f"non-renewal deadline {s.plan.non_renewal_deadline}")
        # rule C14: the invoice paying this period (carried) and the renewal invoice issued with the notice.
        for label, invoice in (("this period's invoice", s.period_invoice),
                               ("renewal invoice", s.renewal.invoice if s.renewal else None)):
            if invoice is not None:
                paid = f"paid {invoice.paid_on}" if invoice.paid_on else f"unpaid, due {invoice.due_on}"
                out.print(escape(f"{label}: {invoice.number}, {invoice.total}, {paid} (C14)"))
        for check in (s.renewal.maintenance_checks if s.renewal else []):
            out.print(escape(f"maintenance check {check.at:%Y-%m-%d} (E1): {check.detail}"))
        # rule E2: starting the programme accepted this handbook, at this time.
        accepted = s.handbook_accepted_at.isoformat() if s.handbook_accepted_at else "not yet (enrolling)"
        out.print(escape(f"handbook: {s.handbook_version}; accepted {accepted} (E2)"))
        if s.kickoff_agenda_not_covered:  # rule A2
            out.print(escape("kickoff agenda not covered (A2): " + "; ".join(s.kickoff_agenda_not_covered)))
        t = Table("step", "rule", "status", "due", "done by")
        for st in s.steps:
            t.add_row(st.step, st.rule, st.status.value, str(st.due_on or ""), escape(st.done_by or ""))
        out.print(t)
        # rule C10: monthly, or the frequency agreed with the customer.
        agreed = f" (agreement {s.call_frequency_agreement_ref})" if s.call_frequency_agreement_ref else ""
        out.print(escape(f"follow-up call and report every {s.call_frequency_months} month(s){agreed} (C10)"))
        if s.call_day_of_month is not None:  # rule D6/A2: agreed in the kickoff minutes
            out.print(escape(f"follow-up calls due on day {s.call_day_of_month} of each month (D6, A2)"))
        out.print("cycles: " + " ".join(f"{c.month}:{c.status}" for c in s.cycles))
        for r in s.rejections:
            out.print(f"[yellow]rejected[/] {escape(f'{r.step} by {r.by}: {r.reason}')}")
        for v in s.refusal:
            out.print(f"[red]refused[/] {escape(f'rule {v.rule}: {v.message}')}")

    emit(s.model_dump(mode="json"), as_json, human)


@program_app.command("call-frequency")
@run_async
async def program_call_frequency(
    customer_id: str,
    months: int = typer.Option(..., "--months", min=1, max=12, help="A follow-up call and report every N months"),
    agreement_ref: str = typer.Option(..., "--agreement-ref", help="The agreement with the customer (C10)"),
    reason: str = typer.Option("", "--reason"),
    by: str = typer.Option("ops", "--by"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Agree another follow-up frequency for the coming months (rule C10); started cycles stay as they are."""
    payload = {"months": months, "agreement_ref": agreement_ref, "reason": reason}
    prepare_step("agree_call_frequency", by, payload)
    if not agreement_ref.strip():
        raise RuleRefused.single("C10", "another follow-up frequency is agreed with the customer: give the "
                                        "agreement's reference (--agreement-ref)", "agreement_ref")
    client = await runtime.client_for(Settings())
    res = await agree_call_frequency(client, customer_id, by, months, agreement_ref, reason)
    emit(res, as_json, lambda: runtime.out.print(
        f"{customer_id}: a follow-up call and report every {months} month(s) from the coming months "
        f"(agreement {escape(agreement_ref)})"))


@program_app.command("list")
@run_async
async def program_list(
    phase: str | None = typer.Option(None, "--phase"),
    tl: str | None = typer.Option(None, "--tl"),
    page: int = typer.Option(1, "--page", help="Page of 50, from 1"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Programmes not ended, from the application database (a page of 50 and the total)."""
    found = await inbox.programmes(Settings(), phase=phase, tl=tl, page=page)
    rows = [{"workflow_id": p.workflow_id, "customer_id": p.customer_id, "technical_lead": p.technical_lead,
             "phase": p.phase, "open_steps": p.open_steps} for p in found.items]

    def human() -> None:
        t = Table("customer", "phase", "TL", "open steps")
        for r in rows:
            t.add_row(str(r["customer_id"]), str(r["phase"]), escape(str(r["technical_lead"])),
                      ", ".join(r["open_steps"]))
        runtime.out.print(t)
        runtime.out.print(_page_line(page, found.total, "programme(s)"))

    emit({"items": rows, "total": found.total, "page": page, "pages": inbox.page_count(found.total)}, as_json, human)


def _page_line(page: int, total: int, what: str) -> str:
    pages = inbox.page_count(total)
    more = f"; next: --page {page + 1}" if page < pages else ""
    return f"page {page} of {pages}, {total} {what}{more}"


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
        runtime.out.print(_page_line(page, found.total, "open step(s)"))

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


__all__ = ["notice_app", "program_app", "step_app"]
