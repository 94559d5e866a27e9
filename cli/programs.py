"""`techconnect program ...`: start and follow programmes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cli import runtime
from cli.runtime import emit, load_document, run_async
from config.settings import Settings
from domain.enrolment import Enrolment
from domain.errors import RuleRefused
from starter import inbox
from starter.errors import parse_model
from starter.programs import (
    agree_call_frequency,
    fetch_status,
    precheck_enrolment,
    prepare_step,
    start_program,
)

program_app = typer.Typer(help="Start and follow programmes", no_args_is_help=True)


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
        runtime.out.print(inbox.page_line(page, found.total, "programme(s)"))

    emit({"items": rows, "total": found.total, "page": page, "pages": inbox.page_count(found.total)}, as_json, human)




__all__ = ["program_app"]
