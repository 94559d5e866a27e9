"""The worker's /metrics: business metrics read from the database, mail counters, the SDK's
text passed through, and the endpoint's behaviour when a part is missing.

(The real SDK metrics of real worker processes are checked by tests/test_scale.py.)
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from activities.metrics import MAILS_FAILED, MAILS_SENT
from config.settings import Settings
from domain.program import Phase
from domain.step_inputs import StepName
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.tables import Base, CustomerRow, ProgrammeRow, SlaEventRow, SupportRequestRow
from telemetry.metrics import BusinessCollector, MetricsServer, read_business_snapshot
from tests.harness import metric_samples

# A given "now" for the snapshot (a fixed instant in the past: never read as "the future").
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest_asyncio.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[SessionFactory]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield make_session_factory(engine)
    finally:
        await engine.dispose()


def step(name: StepName, status: str, due_on: date | None = None, due_at: datetime | None = None) -> dict[str, Any]:
    return {"step": name.value, "title": name.value, "rule": "D4", "status": status,
            "due_on": due_on.isoformat() if due_on else None, "due_at": due_at.isoformat() if due_at else None}


async def seed(sessions: SessionFactory, now: datetime = NOW) -> None:
    yesterday = now.date() - timedelta(days=1)
    programmes = {
        "a": (Phase.onboarding, [step(StepName.schedule_kickoff, "open", yesterday),          # overdue
                                 step(StepName.complete_kickoff, "waiting", yesterday)]),     # not open
        "b": (Phase.onboarding, [step(StepName.schedule_kickoff, "done", yesterday),          # done
                                 step(StepName.complete_kickoff, "open", now.date(),          # due later today
                                      due_at=now + timedelta(hours=2))]),
        "c": (Phase.running, [step(StepName.deliver_communication_plan, "open", now.date(),   # due an hour ago
                                   due_at=now - timedelta(hours=1)),
                              step(StepName.submit_site_inventory, "open", yesterday)]),      # overdue
        "d": (Phase.closed, [step(StepName.schedule_kickoff, "open", yesterday)]),            # closed: not counted
    }
    async with sessions() as s:
        for cid, (phase, steps) in programmes.items():
            s.add(CustomerRow(id=cid, name=cid, maintenance_subscription_id=f"SMP-{cid}", created_at=now))
            s.add(ProgrammeRow(customer_id=cid, workflow_id=f"program-{cid}", period=1, phase=phase.value,
                               technical_lead_id="tl", enrolment={}, status={"steps": steps}, updated_at=now))
        await s.flush()
        for n, state in enumerate(["open", "open", "pending", "closed"]):
            s.add(SupportRequestRow(tracking_number=f"TC-A-2025-{n:04d}", customer_id="a", period=1, kind="support",
                                    priority="high", summary="x", channel="portal", filed_by="carol", state=state,
                                    opened_at=now, updated_at=now))
        await s.flush()
        for n, kind in enumerate(["started", "warned", "warned", "breached", "met"]):
            s.add(SlaEventRow(tracking_number=f"TC-A-2025-{n % 4:04d}", kind=kind, at=now, deadline=now,
                              idempotency_key=f"sla-{n}"))
        await s.commit()


async def test_snapshot_counts_phases_overdue_steps_requests_and_sla_events(sessions: SessionFactory) -> None:
    await seed(sessions)
    snap = await read_business_snapshot(sessions, now=NOW)
    assert snap.programmes == {"onboarding": 2, "running": 1, "closed": 1}
    # Open and past due (by due_at when there is one, else by day); closed programmes and
    # steps not open are never overdue.
    assert snap.overdue_steps == {"schedule_kickoff": 1, "deliver_communication_plan": 1, "submit_site_inventory": 1}
    assert snap.requests == {"open": 2, "pending": 1, "closed": 1}
    assert (snap.sla_warnings, snap.sla_breaches) == (2, 1)  # rule C12: every SLA event stored, counted here


async def fake_sdk_endpoint() -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = b"# HELP temporal_request Requests\n# TYPE temporal_request counter\ntemporal_request 7\n"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics"


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


async def test_one_endpoint_serves_sdk_and_business_metrics(sessions: SessionFactory) -> None:
    await seed(sessions, now=datetime.now(UTC))  # the endpoint reads as of the real clock
    MAILS_SENT.labels("welcome").inc()
    MAILS_FAILED.labels("welcome", "permanent").inc()
    sdk, sdk_url = await fake_sdk_endpoint()
    server = MetricsServer("127.0.0.1", 0, sdk_url=sdk_url, collector=BusinessCollector(sessions, max_age=0))
    await server.start()
    try:
        code, ctype, text = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/metrics")
    finally:
        await server.stop()
        sdk.close()
    assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
    m = metric_samples(text)
    assert "\ntemporal_request 7\n" in text  # the SDK's own text, passed through unchanged
    assert m["techconnect_business_metrics_up"] == [({}, 1.0)]
    phases = {labels["phase"]: v for labels, v in m["techconnect_programmes"]}
    assert set(phases) == {p.value for p in Phase}  # every phase, zeros included: stable dashboards
    assert phases["onboarding"] == 2 and phases["renewal"] == 0
    overdue = {labels["step"]: v for labels, v in m["techconnect_overdue_steps"]}
    assert set(overdue) == {s.value for s in StepName} and sum(overdue.values()) == 3
    assert m["techconnect_sla_warnings_total"] == [({}, 2.0)]
    assert m["techconnect_sla_breaches_total"] == [({}, 1.0)]
    assert ({"state": "open"}, 2.0) in m["techconnect_support_requests"]
    assert any(labels == {"template": "welcome"} and v >= 1 for labels, v in m["techconnect_mails_sent_total"])
    assert any(labels == {"template": "welcome", "error": "permanent"} and v >= 1
               for labels, v in m["techconnect_mails_failed_total"])
    assert "techconnect_mails_sent_created" not in m
    assert "process_resident_memory_bytes" in m  # the process collector of prometheus_client


async def test_missing_parts_do_not_take_the_endpoint_down(tmp_path: Path) -> None:
    # An empty database (no tables) and an SDK exporter that is not there.
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    server = MetricsServer("127.0.0.1", 0, sdk_url="http://127.0.0.1:9/metrics",
                           collector=BusinessCollector(make_session_factory(engine), max_age=0))
    await server.start()
    try:
        code, _, text = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/metrics")
        health = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/healthz")
        missing = await asyncio.to_thread(get, f"http://127.0.0.1:{server.port}/nope")
    finally:
        await server.stop()
        await engine.dispose()
    assert code == 200
    assert "# Temporal SDK metrics unavailable" in text
    m = metric_samples(text)
    assert m["techconnect_business_metrics_up"] == [({}, 0.0)]
    assert "techconnect_programmes" not in m  # no made-up zeros when the database cannot be read
    assert health[:1] == (200,) and health[2] == "ok\n"
    assert missing[0] == 404


def test_metrics_and_worker_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    assert defaults.metrics_port == 9464
    assert (defaults.worker_max_concurrent_activities, defaults.worker_max_concurrent_workflow_tasks,
            defaults.worker_max_cached_workflows) == (100, 100, 1000)
    for name, value in {"METRICS_PORT": "0", "WORKER_MAX_CONCURRENT_ACTIVITIES": "8",
                        "WORKER_MAX_CONCURRENT_WORKFLOW_TASKS": "4", "WORKER_MAX_CACHED_WORKFLOWS": "50",
                        "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "45"}.items():
        monkeypatch.setenv(f"TECHCONNECT_{name}", value)
    s = Settings()
    assert (s.metrics_port, s.worker_max_concurrent_activities, s.worker_max_concurrent_workflow_tasks,
            s.worker_max_cached_workflows, s.worker_graceful_shutdown_seconds) == (0, 8, 4, 50, 45.0)


def test_build_worker_applies_the_tuning_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import worker

    captured: dict[str, Any] = {}
    monkeypatch.setattr(worker, "Worker", lambda client, **kw: captured.update(kw))
    settings = Settings(data_dir=tmp_path, worker_max_concurrent_activities=7, worker_max_concurrent_workflow_tasks=5,
                        worker_max_cached_workflows=42, worker_graceful_shutdown_seconds=12)
    sessions = make_session_factory(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"))
    worker.build_worker(object(), settings, sessions, task_queue="tuning")  # type: ignore[arg-type]
    assert captured["task_queue"] == "tuning"
    assert captured["max_concurrent_activities"] == 7
    assert captured["max_concurrent_workflow_tasks"] == 5
    assert captured["max_cached_workflows"] == 42
    assert captured["graceful_shutdown_timeout"] == timedelta(seconds=12)
    assert captured["workflows"] == worker.WORKFLOWS
