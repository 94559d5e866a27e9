"""The worker: builds settings, engine, mailer and activities, then runs one Worker.

Activity classes get their dependencies here (and in tests), nowhere else.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.calendar import CalendarActivities
from activities.db import DatabaseActivities
from activities.documents import DocumentActivities
from activities.faults import armed_points
from activities.holidays import DatabaseHolidays
from activities.mail import MailActivities
from activities.mailer import SmtpMailer
from activities.requests import RequestActivities
from activities.templating import make_template_environment
from config.settings import Settings
from storage.db import SessionFactory, make_engine, make_session_factory
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import ProgramWorkflow
from workflows.support_request import SupportRequestWorkflow

WORKFLOWS = [ProgramWorkflow, MonthlyCycleWorkflow, SupportRequestWorkflow]

# Pure, deterministic libraries the domain models use: shared with the sandbox rather
# than re-imported for every workflow run.
SANDBOX_PASSTHROUGH = ("pydantic", "pydantic_core", "email_validator", "idna", "annotated_types", "domain")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH))


@dataclass
class ActivitySet:
    calendar: CalendarActivities
    database: DatabaseActivities
    documents: DocumentActivities
    mail: MailActivities
    requests: RequestActivities

    def all(self) -> list[object]:
        return [
            self.calendar.plan_period, self.calendar.schedule_deadlines, self.calendar.business_deadline,
            self.database.check_enrolment, self.database.register_programme, self.database.save_projection,
            self.database.save_cycle_projection, self.database.record_billable_extra, self.database.close_workspace,
            self.documents.file_document, self.documents.analyse_configuration,
            self.documents.generate_monthly_report, self.documents.draft_monthly_report, self.documents.publish_report,
            self.documents.generate_final_report,
            self.mail.send_mail,
            self.requests.record_request_opened, self.requests.save_request, self.requests.record_status_change,
            self.requests.record_sla_event, self.requests.record_dispatch, self.requests.book_dispatch,
            self.requests.list_open_requests, self.requests.record_message,
        ]


def build_activities(
    settings: Settings, session_factory: SessionFactory, mailer: SmtpMailer | None = None
) -> ActivitySet:
    templates = make_template_environment()
    return ActivitySet(
        # Rule A1: OT's published holiday lists, seeded from the `holidays` package on first use.
        calendar=CalendarActivities(DatabaseHolidays(session_factory)),
        database=DatabaseActivities(session_factory),
        documents=DocumentActivities(session_factory, templates),
        mail=MailActivities.from_settings(settings, session_factory, mailer, templates),
        requests=RequestActivities(session_factory),
    )


def precompile_workflow_modules() -> bool:
    """Write the bytecode of `workflows/` once, before the first workflow task.

    The sandbox imports a workflow's module afresh for every run it starts or rebuilds
    (issue 7's profile: `compile` was the worker's top self-time function, and the source's
    AST and code objects churned its memory). With PYTHONDONTWRITEBYTECODE set (this machine,
    many containers) Python never caches that bytecode, so every run compiled program.py
    from source. A read-only tree (the Docker image compiles at build time) is fine: False.
    """
    package = Path(__file__).resolve().parent / "workflows"
    try:
        return bool(compileall.compile_dir(package, quiet=2, maxlevels=0))
    except OSError:
        return False


def build_worker(client: Client, settings: Settings, session_factory: SessionFactory,
                 mailer: SmtpMailer | None = None, task_queue: str | None = None) -> Worker:
    precompile_workflow_modules()
    acts = build_activities(settings, session_factory, mailer)
    return Worker(client, task_queue=task_queue or settings.task_queue, workflows=WORKFLOWS,
                  activities=acts.all(), workflow_runner=workflow_runner(),  # type: ignore[arg-type]
                  # Scaling knobs (docs/scale.md): slots per worker and the sticky cache.
                  max_concurrent_activities=settings.worker_max_concurrent_activities,
                  max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
                  max_cached_workflows=settings.worker_max_cached_workflows,
                  # On shutdown, running activities get this long to finish before they are cancelled.
                  graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds))


@contextlib.asynccontextmanager
async def running_worker(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    engine = make_engine(settings.effective_database_url)
    try:
        worker = build_worker(client, settings, make_session_factory(engine))
        async with worker:
            yield worker
    finally:
        await engine.dispose()


async def main() -> None:
    from config.temporal import connect
    from storage.migrate import upgrade
    from telemetry.metrics import serve_worker_metrics

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if armed_points():
        logging.warning("fault injection armed (crash tests only, activities/faults.py): %s", ", ".join(armed_points()))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await upgrade(settings.effective_database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        logging.info("%s: graceful shutdown (up to %ss for in-flight activities)", sig.name,
                     settings.worker_graceful_shutdown_seconds)
        stop.set()
        for s in (signal.SIGINT, signal.SIGTERM):  # a second signal stops at once
            loop.remove_signal_handler(s)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    # Metrics first: the Temporal client must be created on the runtime that exports them.
    async with serve_worker_metrics(settings):
        client = await connect(settings)
        async with running_worker(client, settings):
            logging.info("worker %s polling task queue %r on %s", client.identity, settings.task_queue,
                         settings.temporal.address)
            await stop.wait()
            logging.info("shutting down: no new tasks; waiting for in-flight activities")
        logging.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
