"""The worker: builds settings, engine, mailer and activities, then runs one Worker.

Activity classes get their dependencies here (and in tests), nowhere else.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import importlib.abc
import importlib.machinery
import logging
import signal
import sys
import types
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.calendar import CalendarActivities
from activities.db import DatabaseActivities
from activities.documents import DocumentActivities
from activities.enrolment import EnrolmentActivities
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

# What every workflow run shares with the worker instead of importing it afresh in its sandbox (issue 16):
# the pydantic stack, `domain/` (models and pure rules: no I/O, no clock, no module state; tests/
# test_sandbox.py checks), and, added by `sandbox_passthrough`, the modules of workflows/ that hold
# no workflow: the mixins and helpers. Never `workflows` as a whole: each workflow's own module is
# still imported for each run, so its code runs with the sandbox's restrictions and module state.
SANDBOX_PASSTHROUGH = ("pydantic", "pydantic_core", "email_validator", "idna", "annotated_types", "domain")
WORKFLOW_PACKAGE = Path(__file__).resolve().parent / "workflows"


def sandbox_passthrough(workflows: Sequence[type] | None = None) -> tuple[str, ...]:
    """SANDBOX_PASSTHROUGH and every module of workflows/ but those of `workflows` (default WORKFLOWS).

    Named here, not only imported within `workflow.unsafe.imports_passed_through()`: there, `from workflows
    import activity_calls` in a workflow's module still loaded a copy for each run (the package is the run's
    own, and Python imports its missing submodule without the sandbox's import hook); a module named here is
    handed over from the worker's `sys.modules` however it is imported.
    """
    own = {w.__module__ for w in (WORKFLOWS if workflows is None else workflows)}
    helpers = sorted(f"workflows.{p.stem}" for p in WORKFLOW_PACKAGE.glob("*.py") if p.stem != "__init__")
    return (*SANDBOX_PASSTHROUGH, *(m for m in helpers if m not in own))


class SharedCodeLoader(importlib.machinery.SourceFileLoader):
    """A workflow module's bytecode, read once per worker and run afresh for every workflow run.

    The sandbox imports a workflow's module anew for each run it starts or rebuilds, and keeps it while the
    run is cached: the module, its classes and functions are the run's own (what the sandbox isolates and
    restricts). Its code objects are immutable, so one copy serves every run instead of one per run (about
    30 KiB a cached programme). Keyed by path, size and modification time: a changed file loads anew.
    """

    _code: ClassVar[dict[tuple[str, int, float], types.CodeType]] = {}

    def get_code(self, fullname: str) -> types.CodeType:
        stats = self.path_stats(self.path)
        key = (self.path, int(stats.get("size", -1)), float(stats["mtime"]))
        code = self._code.get(key)
        if code is None:
            code = super().get_code(fullname)
            assert code is not None  # a source file always has code
            self._code[key] = code
        return code


class SharedCodeFinder(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path`: the modules of the registered workflows load with SharedCodeLoader."""

    def __init__(self) -> None:
        self.modules: set[str] = set()

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader and spec.origin:
            spec.loader = SharedCodeLoader(fullname, spec.origin)
        return spec


SHARED_CODE = SharedCodeFinder()


def workflow_runner(workflows: Sequence[type] | None = None) -> SandboxedWorkflowRunner:
    SHARED_CODE.modules |= {w.__module__ for w in (WORKFLOWS if workflows is None else workflows)}
    if SHARED_CODE not in sys.meta_path:
        sys.meta_path.insert(0, SHARED_CODE)
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*sandbox_passthrough(workflows)))


@dataclass
class ActivitySet:
    calendar: CalendarActivities
    database: DatabaseActivities
    documents: DocumentActivities
    mail: MailActivities
    requests: RequestActivities
    enrolment: EnrolmentActivities

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
            self.enrolment.prepare_enrolment, self.enrolment.send_welcome,
        ]


def build_activities(
    settings: Settings, session_factory: SessionFactory, mailer: SmtpMailer | None = None
) -> ActivitySet:
    templates = make_template_environment()
    # Rule A1: OT's published holiday lists, seeded from the `holidays` package on first use.
    calendar = CalendarActivities(DatabaseHolidays(session_factory))
    database = DatabaseActivities(session_factory)
    documents = DocumentActivities(session_factory, templates)
    mail = MailActivities.from_settings(settings, session_factory, mailer, templates)
    return ActivitySet(
        calendar=calendar,
        database=database,
        documents=documents,
        mail=mail,
        requests=RequestActivities(session_factory),
        enrolment=EnrolmentActivities(database, calendar, documents, mail),
    )


def precompile_workflow_modules() -> bool:
    """Write the bytecode of `workflows/` once, before the first workflow task.

    The sandbox imports a workflow's module afresh for every run it starts or rebuilds
    (issue 7's profile: `compile` was the worker's top self-time function, and the source's
    AST and code objects churned its memory). With PYTHONDONTWRITEBYTECODE set (this machine,
    many containers) Python never caches that bytecode, so every run compiled program.py
    from source; since SharedCodeLoader a worker compiles it once, this saves that once.
    A read-only tree (the Docker image compiles at build time) is fine: False.
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
