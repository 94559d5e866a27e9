"""`techconnect`: the command line for operations staff and Technical Leads.

Exit codes are a stable interface: 0 success, 2 a rule or a check refused the
request (the message names the rule and the numbers), 1 any other failure.
`--json` prints machine-readable output on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.cycle import ApproveReport, CycleStatus, CycleStepName, HoldCall, RecordExtraCall, ScheduleCall
from domain.enrolment import Enrolment, check_enrolment
from domain.errors import RuleViolation
from domain.naming import SA_CUSTOMER_ID, SA_OPEN_STEPS, SA_PROGRAM_PHASE, SA_TECHNICAL_LEAD, program_workflow_id
from domain.program import (
    AddContact,
    AddFindings,
    CompleteKickoff,
    DeliverCommunicationPlan,
    GiveNonRenewalNotice,
    PresentConfigurationAnalysis,
    ProgramInput,
    ProgramStatus,
    ProposeRenewalPrice,
    ReassignTechnicalLead,
    RecordBillableExtra,
    RecordInvoicePaid,
    ScheduleKickoff,
    SubmitSiteInventory,
)
from starter.cli_requests import request_app
from starter.cli_users import user_app
from starter.settings import Settings

app = typer.Typer(help="TechConnect orchestration service", no_args_is_help=True, add_completion=False)
program_app = typer.Typer(help="Start and follow programmes", no_args_is_help=True)
step_app = typer.Typer(help="The Technical Lead's steps", no_args_is_help=True)
notice_app = typer.Typer(help="Notices (rule C16)", no_args_is_help=True)
maintenance_app = typer.Typer(help="The maintenance subscription registry (rule E1)", no_args_is_help=True)
db_app = typer.Typer(help="Application database", no_args_is_help=True)
app.add_typer(program_app, name="program")
app.add_typer(step_app, name="step")
app.add_typer(notice_app, name="notice")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(db_app, name="db")
app.add_typer(request_app, name="request")  # starter/cli_requests.py (A4, C12, C13)
app.add_typer(user_app, name="user")  # starter/cli_users.py (portal users, roles, API tokens)

err = Console(stderr=True)
out = Console()

# Update name -> payload model. Programme Updates go to `program-<customer>`,
# cycle Updates to the month's child workflow.
PROGRAM_UPDATES: dict[str, type[BaseModel]] = {
    "schedule_kickoff": ScheduleKickoff,
    "complete_kickoff": CompleteKickoff,
    "deliver_communication_plan": DeliverCommunicationPlan,
    "submit_site_inventory": SubmitSiteInventory,
    "update_site_inventory": SubmitSiteInventory,
    "add_findings": AddFindings,
    "present_configuration_analysis": PresentConfigurationAnalysis,
    "reassign_technical_lead": ReassignTechnicalLead,
    "add_contact": AddContact,
    "record_billable_extra": RecordBillableExtra,
    "propose_renewal_price": ProposeRenewalPrice,
    "give_non_renewal_notice": GiveNonRenewalNotice,
    "record_renewal_invoice_paid": RecordInvoicePaid,
}
CYCLE_UPDATES: dict[str, type[BaseModel]] = {
    CycleStepName.schedule_call.value: ScheduleCall,
    CycleStepName.hold_call.value: HoldCall,
    CycleStepName.approve_report.value: ApproveReport,
    "record_extra_call": RecordExtraCall,
}


class Refused(Exception):
    """A rule or a check said no: exit code 2."""


T = TypeVar("T")


# Set once this process has created a Temporal client (see `finish`).
_temporal_client_created = False


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            asyncio.run(fn(*args, **kwargs))
        except Refused as exc:
            fail(str(exc), 2)
        except RPCError as exc:
            if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                fail(f"cannot reach Temporal ({Settings().temporal.address}): {exc.message or exc}", 1)
            fail(f"Temporal refused the request ({exc.status.name if exc.status else 'unknown status'}): "
                 f"{exc.message or exc}", 1)
        except (ConnectionError, OSError) as exc:
            fail(f"cannot reach a service: {exc}", 1)
        except RuntimeError as exc:
            if "connect" in str(exc).lower():
                fail(f"cannot reach Temporal ({Settings().temporal.address}): {exc}", 1)
            raise
        except Exception as exc:
            if _is_database_error(exc):
                # Not the URL: it may hold a password.
                fail(f"database error: {getattr(exc, 'orig', None) or str(exc).splitlines()[0]}", 1)
            raise
        finish(0)

    return wrapper


def _is_database_error(exc: BaseException) -> bool:
    # By module name: importing SQLAlchemy here would slow every command down.
    return any(cls.__module__.startswith("sqlalchemy.") for cls in type(exc).__mro__)


def _is_cli_process() -> bool:
    """True when this process is the `techconnect` command itself (console script or
    `python -m starter.cli`), false when the app is invoked in-process (tests, CliRunner)."""
    return getattr(sys.modules.get("__main__"), "app", None) is app


def finish(code: int) -> None:
    """End the command with `code`.

    The Temporal client's Rust runtime keeps threads that may call into Python while the
    interpreter finalizes, which aborts the process now and then (SIGABRT/SIGSEGV instead
    of the exit code; temporalio/sdk-python#300). A CLI process that created a client
    therefore leaves without interpreter teardown, once its output is flushed.
    """
    if _temporal_client_created and _is_cli_process():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    if code:
        raise typer.Exit(code)


def fail(message: str, code: int) -> NoReturn:
    # The message quotes user input (file contents, IDs): never read it as rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    finish(code)
    raise typer.Exit(code)  # finish() has exited already; this line satisfies NoReturn


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        human()


def load_document(path: Path) -> Any:
    """JSON or YAML by extension; errors name the line."""
    try:
        # utf-8-sig: editors on Windows often save a byte-order mark, which json refuses.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise Refused(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Refused(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            problem = getattr(exc, "problem", None) or "syntax error"
            context = getattr(exc, "context", None)
            raise Refused(f"{path}: invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
                          + (f" ({context})" if context else "")) from None
        raise Refused(f"{path}: invalid YAML: {exc}") from None


def parse_model(model: type[T], data: Any, source: str) -> T:
    try:
        return model.model_validate(data)  # type: ignore[attr-defined, no-any-return]
    except ValidationError as exc:
        lines = [f"  field {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise Refused(f"{source} is not valid:\n" + "\n".join(lines)) from None


def violations_message(violations: list[RuleViolation]) -> str:
    return "enrolment refused:\n" + "\n".join(
        f"  rule {v.rule}{f' ({v.field})' if v.field else ''}: {v.message}" for v in violations
    )


async def client_for(settings: Settings) -> Client:
    from starter.temporal import connect

    global _temporal_client_created
    _temporal_client_created = True  # the Rust runtime starts with the first connect attempt
    return await connect(settings)


async def _session_factory(settings: Settings) -> Any:
    from storage.db import make_engine, make_session_factory
    from storage.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.effective_database_url)
    engine = make_engine(settings.effective_database_url)
    return engine, make_session_factory(engine)


# ------------------------------------------------------------------- commands
@app.command()
def dev() -> None:
    """Start the whole embedded stack (what `make run` calls)."""
    from starter.dev import run_dev_stack

    asyncio.run(run_dev_stack(Settings()))


@app.command()
def worker() -> None:
    """Run one worker on the configured task queue."""
    from worker import main

    asyncio.run(main())


@app.command()
def portal(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int | None = typer.Option(None, "--port", help="Default: TECHCONNECT_PORTAL_PORT (8000)"),
) -> None:
    """Run the workspace portal alone (web pages and the /api), against the configured Temporal and database."""
    from portal.server import run_portal

    asyncio.run(run_portal(Settings(), host=host, port=port))


@app.command("codec-server")
def codec_server() -> None:
    """Serve the payload codec for the Temporal UI (TECHCONNECT_CODEC_HOST/PORT, token TECHCONNECT_CODEC_TOKEN)."""
    from starter.codec_server import check_exposure, codec_app_from_settings, serving

    settings = Settings()
    app_ = codec_app_from_settings(settings)
    if app_ is None:
        fail("no payload key configured (TECHCONNECT_PAYLOAD_KEYS, TECHCONNECT_PAYLOAD_KEY_ID)", 2)
    check_exposure(settings)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serving(app_, settings.codec_host, settings.codec_port) as url:
            out.print(f"codec server on {url}")
            await stop.wait()

    asyncio.run(serve())


@db_app.command("upgrade")
@run_async
async def db_upgrade() -> None:
    """Apply the Alembic migrations (also done by `dev` and `worker` at start)."""
    from storage.migrate import upgrade

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.effective_database_url)
    out.print("database at head")


@maintenance_app.command("import")
@run_async
async def maintenance_import(
    file: Path = typer.Argument(..., help="CSV: id, customer_id, start, end, contact_count"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import maintenance subscriptions (all or nothing)."""
    from storage.maintenance_import import MaintenanceImportError, import_maintenance_csv

    engine, sessions = await _session_factory(Settings())
    try:
        report = await import_maintenance_csv(file, sessions)
    except MaintenanceImportError as exc:
        raise Refused(f"{file}: {exc}; nothing was imported") from None
    except OSError as exc:
        raise Refused(f"cannot read {file}: {exc.strerror or exc}; nothing was imported") from None
    finally:
        await engine.dispose()
    data = report.model_dump() if isinstance(report, BaseModel) else dict(vars(report))
    emit(data, as_json, lambda: out.print(f"imported {file}: {data}"))


async def enrolment_violations(settings: Settings, enrolment: Enrolment, sessions: Any = None) -> list[RuleViolation]:
    """The rules the workflow checks at enrolment, checked now (CLI and portal); `sessions` reuses a factory."""
    from activities.calendar import supported_countries
    from storage.repositories import get_subscription, subscription_model

    engine = None
    if sessions is None:
        engine, sessions = await _session_factory(settings)
    try:
        async with sessions() as session:
            row = await get_subscription(session, enrolment.customer.maintenance_subscription_id)
            sub = subscription_model(row) if row else None
    finally:
        if engine is not None:
            await engine.dispose()
    return check_enrolment(enrolment, sub, settings.policy, known_countries=supported_countries())


async def precheck_enrolment(settings: Settings, enrolment: Enrolment) -> None:
    """The same rules the workflow checks, so ops see a refusal at once (exit 2)."""
    violations = await enrolment_violations(settings, enrolment)
    if violations:
        raise Refused(violations_message(violations))


async def start_program(client: Client, settings: Settings, enrolment: Enrolment, started_by: str = "ops") -> str:
    from workflows.program import ProgramWorkflow

    wid = program_workflow_id(enrolment.customer.id)
    try:
        await client.start_workflow(
            ProgramWorkflow.run,
            ProgramInput(enrolment=enrolment, policy=settings.policy, started_by=started_by),
            id=wid,
            task_queue=settings.task_queue,
            # One live programme per customer: Temporal refuses a second run with this ID.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            static_summary=f"TechConnect programme of {enrolment.customer.name} ({enrolment.customer.id})",
            static_details=(
                f"Period from {enrolment.period_start}, {enrolment.term_months} months; "
                f"TL {enrolment.technical_lead.name}; products "
                + ", ".join(f"{p.name} {p.version}" for p in enrolment.products)
            ),
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(SA_CUSTOMER_ID, enrolment.customer.id),
                SearchAttributePair(SA_TECHNICAL_LEAD, enrolment.technical_lead.id),
            ]),
        )
    except WorkflowAlreadyStartedError:
        raise Refused(
            f"customer {enrolment.customer.id} already has a live programme (workflow {wid}); "
            f"one active programme per customer"
        ) from None
    return wid


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
    client = await client_for(settings)
    wid = await start_program(client, settings, enrolment, by)
    emit({"workflow_id": wid, "customer_id": enrolment.customer.id}, as_json,
         lambda: out.print(f"started {wid}; see {settings.ui_url}/namespaces/{settings.temporal.namespace}"
                           f"/workflows/{wid}"))


async def fetch_status(client: Client, customer_id: str) -> ProgramStatus:
    handle = client.get_workflow_handle(program_workflow_id(customer_id))
    try:
        status: ProgramStatus = await handle.query("get_status", result_type=ProgramStatus)
        return status
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Refused(f"no programme for customer {customer_id}") from None
        raise


@program_app.command("status")
@run_async
async def program_status(customer_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A programme's phase, deliverables, cycles and renewal."""
    client = await client_for(Settings())
    s = await fetch_status(client, customer_id)

    def human() -> None:
        # escape(): names and reasons are user text, not rich markup.
        out.print(f"[bold]{escape(s.customer_name)}[/] ({s.customer_id}) period {s.period}, "
                  f"phase [bold]{s.phase}[/]")
        out.print(escape(f"TL: {s.technical_lead.name} <{s.technical_lead.email}>"))
        if s.plan:
            out.print(f"period {s.plan.period_start} to {s.plan.period_end}; "
                      f"non-renewal deadline {s.plan.non_renewal_deadline}")
        # rule E2: starting the programme accepted this handbook, at this time.
        accepted = s.handbook_accepted_at.isoformat() if s.handbook_accepted_at else "not yet (enrolling)"
        out.print(escape(f"handbook: {s.handbook_version}; accepted {accepted} (E2)"))
        if s.kickoff_agenda_not_covered:  # rule A2
            out.print(escape("kickoff agenda not covered (A2): " + "; ".join(s.kickoff_agenda_not_covered)))
        t = Table("step", "rule", "status", "due", "done by")
        for st in s.steps:
            t.add_row(st.step, st.rule, st.status.value, str(st.due_on or ""), escape(st.done_by or ""))
        out.print(t)
        out.print("cycles: " + " ".join(f"{c.month}:{c.status}" for c in s.cycles))
        for r in s.rejections:
            out.print(f"[yellow]rejected[/] {escape(f'{r.step} by {r.by}: {r.reason}')}")
        for v in s.refusal:
            out.print(f"[red]refused[/] {escape(f'rule {v.rule}: {v.message}')}")

    emit(s.model_dump(mode="json"), as_json, human)


@program_app.command("list")
@run_async
async def program_list(
    phase: str | None = typer.Option(None, "--phase"),
    tl: str | None = typer.Option(None, "--tl"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Programmes, from Temporal visibility (search attributes)."""
    client = await client_for(Settings())
    query = "WorkflowType = 'ProgramWorkflow' AND ExecutionStatus = 'Running'"
    if phase:
        query += f" AND ProgramPhase = '{_quote(phase)}'"
    if tl:
        query += f" AND TechnicalLead = '{_quote(tl)}'"
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query):
        sa = wf.typed_search_attributes
        rows.append({"workflow_id": wf.id, "customer_id": sa.get(SA_CUSTOMER_ID),
                     "technical_lead": sa.get(SA_TECHNICAL_LEAD), "phase": sa.get(SA_PROGRAM_PHASE),
                     "open_steps": [str(x) for x in sa.get(SA_OPEN_STEPS) or []]})

    def human() -> None:
        t = Table("customer", "phase", "TL", "open steps")
        for r in rows:
            t.add_row(str(r["customer_id"]), str(r["phase"]), escape(str(r["technical_lead"])),
                      ", ".join(r["open_steps"]))
        out.print(t)

    emit(rows, as_json, human)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def list_open_steps(client: Client, tl: str | None = None) -> list[dict[str, Any]]:
    """Open steps across programmes and monthly cycles, overdue first (the TL inbox; CLI and portal).

    A visibility query on the search attributes finds the workflows, a `get_status` query
    on each gives the steps with their due dates.
    """
    query = "ExecutionStatus = 'Running' AND OpenSteps IS NOT NULL"
    if tl:
        query += f" AND TechnicalLead = '{_quote(tl)}'"
    rows: list[dict[str, Any]] = []
    async for wf in client.list_workflows(query):
        handle = client.get_workflow_handle(wf.id)
        if wf.workflow_type == "ProgramWorkflow":
            ps = await handle.query("get_status", result_type=ProgramStatus)
            steps, customer = ps.open_steps(), ps.customer_id
        else:
            cs = await handle.query("get_status", result_type=CycleStatus)
            steps, customer = [st for st in cs.steps if st.status == "open"], cs.customer_id
        for st in steps:
            rows.append({"customer_id": customer, "workflow_id": wf.id, "step": st.step, "title": st.title,
                         "rule": st.rule, "due_on": st.due_on, "overdue": st.escalated})
    rows.sort(key=lambda r: (not r["overdue"], str(r["due_on"])))
    return rows


@step_app.command("list")
@run_async
async def step_list(tl: str | None = typer.Option(None, "--tl"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Open steps across programmes and monthly cycles: the TL inbox."""
    client = await client_for(Settings())
    rows = await list_open_steps(client, tl)

    def human() -> None:
        t = Table("customer", "step", "rule", "due", "workflow")
        for r in rows:
            due = f"[red]{r['due_on']} overdue[/]" if r["overdue"] else str(r["due_on"] or "")
            t.add_row(r["customer_id"], r["step"], r["rule"], due, r["workflow_id"])
        out.print(t)

    emit(rows, as_json, human)


async def cycle_for_step(client: Client, customer_id: str, step: str, month: int | None) -> str:
    status = await fetch_status(client, customer_id)
    running = [c for c in status.cycles if c.status == "running" and (month is None or c.month == month)]
    for c in running:
        cs = await client.get_workflow_handle(c.workflow_id).query("get_status", result_type=CycleStatus)
        if step == "record_extra_call" or any(st.step == step and st.status == "open" for st in cs.steps):
            return c.workflow_id
    raise Refused(f"no running monthly cycle of {customer_id} has step {step} open"
                  + (f" for month {month}" if month else ""))


def prepare_step(step: str, by: str, payload: dict[str, Any], via: str = "cli") -> BaseModel:
    """The Update's argument, checked before anything talks to Temporal (exit 2 on a bad step or payload).

    `via` names the interface in the audit log (the portal passes "portal")."""
    model = PROGRAM_UPDATES.get(step) or CYCLE_UPDATES.get(step)
    if model is None:
        known = sorted([*PROGRAM_UPDATES, *CYCLE_UPDATES])
        raise Refused(f"unknown step {step!r}; known steps: {', '.join(known)}")
    return parse_model(model, {**payload, "by": by, "via": via}, f"payload of {step}")


async def execute_step(client: Client, customer_id: str, step: str, by: str, payload: dict[str, Any],
                       month: int | None = None, via: str = "cli") -> dict[str, Any]:
    arg = prepare_step(step, by, payload, via)
    result_type: type[BaseModel]
    if step in PROGRAM_UPDATES:
        wid, result_type = program_workflow_id(customer_id), ProgramStatus
    else:
        result_type = CycleStatus
        wid = await cycle_for_step(client, customer_id, step, month)
    try:
        result = await client.get_workflow_handle(wid).execute_update(step, arg, result_type=result_type)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise Refused(f"{step} refused: {getattr(cause, 'message', None) or cause or exc}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Refused(f"no live workflow {wid}") from None
        raise
    data: dict[str, Any] = result.model_dump(mode="json")
    return {"workflow_id": wid, "step": step, "status": data}


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
    client = await client_for(Settings())
    res = await execute_step(client, customer_id, step, by, payload, month)
    emit(res, as_json, lambda: out.print(f"{step} done on {res['workflow_id']}"))


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
    try:
        date.fromisoformat(received_on)
    except ValueError:
        raise Refused(f"--received-on {received_on!r} is not a date (YYYY-MM-DD)") from None
    payload = {"party": party, "received_on": received_on, "reference": reference}
    prepare_step("give_non_renewal_notice", by, payload)
    client = await client_for(Settings())
    res = await execute_step(client, customer_id, "give_non_renewal_notice", by, payload)
    emit(res, as_json, lambda: out.print(f"non-renewal notice recorded for {customer_id}; "
                                         f"the programme closes at the period end"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()


__all__ = ["app", "execute_step", "start_program"]
