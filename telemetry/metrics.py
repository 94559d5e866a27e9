"""The worker's `/metrics`: Temporal SDK metrics and our business metrics on one endpoint.

- **SDK metrics** (`temporal_*`: workflow tasks, activities, pollers, slots, sticky cache,
  requests) come from the Rust core's Prometheus exporter. It is bound to a free port on
  127.0.0.1 only and read back on each scrape, so Prometheus sees a single target per worker.
- **Business metrics** (`techconnect_*`):
  - `techconnect_mails_sent_total{template}` and `techconnect_mails_failed_total{template,error}`:
    counted by the mail activity in this process (activities/metrics.py); sum them over workers.
  - `techconnect_programmes{phase}`, `techconnect_overdue_steps{step}`,
    `techconnect_support_requests{state}`, `techconnect_sla_warnings_total`,
    `techconnect_sla_breaches_total`: read from the application database (the `programmes`
    projection, `support_requests`, `sla_events`) when scraped, cached for a few seconds.
    Every worker reports the same values: aggregate them with `max`, not `sum`.
  - `techconnect_business_metrics_up`: 1 when the last database read worked.
- `/healthz` answers `ok` while the worker process runs (container health checks).

TECHCONNECT_METRICS_PORT (default 9464, 0 = off) and TECHCONNECT_METRICS_HOST choose where it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from config.settings import Settings
from domain.program import Phase
from domain.step_inputs import StepName
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.tables import ProgrammeRow, SlaEventRow, SupportRequestRow

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Phases whose steps can no longer be overdue.
_FINISHED_PHASES = (Phase.closed.value, Phase.refused.value)
REQUEST_STATES = ("open", "pending", "closed")
SLA_WARNED = "warned"
SLA_BREACHED = "breached"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def install_sdk_metrics(host: str = "127.0.0.1") -> str:
    """Make the default Temporal runtime export Prometheus metrics on loopback; returns their URL.

    Must run before the first Client is created (the client binds to the runtime).
    """
    port = _free_port(host)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))
    Runtime.set_default(runtime, error_if_already_set=True)
    return f"http://{host}:{port}/metrics"


# ---------------------------------------------------------------- business metrics
@dataclass
class BusinessSnapshot:
    programmes: dict[str, int] = field(default_factory=dict)  # phase -> programmes
    overdue_steps: dict[str, int] = field(default_factory=dict)  # step -> open steps past their due date
    requests: dict[str, int] = field(default_factory=dict)  # state -> support requests
    sla_warnings: int = 0
    sla_breaches: int = 0


def _past(step: dict[str, Any], now: datetime) -> bool:
    """An open step whose due time (or, without one, due day) has passed."""
    due_at, due_on = step.get("due_at"), step.get("due_on")
    try:
        if due_at:
            at = datetime.fromisoformat(str(due_at))
            return (at if at.tzinfo else at.replace(tzinfo=UTC)) < now
        if due_on:
            return date.fromisoformat(str(due_on)) < now.date()
    except ValueError:
        return False
    return False


async def read_business_snapshot(sessions: SessionFactory, now: datetime | None = None) -> BusinessSnapshot:
    now = now or datetime.now(UTC)
    snap = BusinessSnapshot()
    async with sessions() as session:
        phases = await session.execute(select(ProgrammeRow.phase, func.count()).group_by(ProgrammeRow.phase))
        snap.programmes = {str(phase): int(n) for phase, n in phases.all()}
        # Only the steps of each projection, not the whole status document.
        steps = await session.execute(
            select(ProgrammeRow.status["steps"]).where(ProgrammeRow.phase.not_in(_FINISHED_PHASES)))
        for (step_list,) in steps.all():
            for step in step_list or []:
                if isinstance(step, dict) and step.get("status") == "open" and _past(step, now):
                    name = str(step.get("step"))
                    snap.overdue_steps[name] = snap.overdue_steps.get(name, 0) + 1
        states = await session.execute(
            select(SupportRequestRow.state, func.count()).group_by(SupportRequestRow.state))
        snap.requests = {str(state): int(n) for state, n in states.all()}
        kinds = await session.execute(
            select(SlaEventRow.kind, func.count())
            .where(SlaEventRow.kind.in_((SLA_WARNED, SLA_BREACHED))).group_by(SlaEventRow.kind))
        by_kind = {str(kind): int(n) for kind, n in kinds.all()}
    snap.sla_warnings = by_kind.get(SLA_WARNED, 0)
    snap.sla_breaches = by_kind.get(SLA_BREACHED, 0)
    return snap


class BusinessCollector(Collector):
    """Serves the last snapshot; `refresh()` (async, on scrape) reads the database at most every `max_age` s."""

    def __init__(self, sessions: SessionFactory, max_age: float = 10.0) -> None:
        self._sessions = sessions
        self._max_age = max_age
        self._lock = asyncio.Lock()
        self._read_at = float("-inf")
        self.snapshot: BusinessSnapshot | None = None
        self.up = False

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < self._max_age:
                return
            try:
                self.snapshot = await read_business_snapshot(self._sessions)
                self.up = True
            except (SQLAlchemyError, OSError) as exc:  # a database outage must not break the SDK metrics
                log.warning("business metrics: database read failed: %s", exc)
                self.snapshot, self.up = None, False
            self._read_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("techconnect_business_metrics_up",
                               "1 if the last read of the application database for metrics worked")
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        snap = self.snapshot
        if snap is None:
            return
        programmes = GaugeMetricFamily("techconnect_programmes", "Programmes by phase (programmes projection)",
                                       labels=["phase"])
        for phase in Phase:
            programmes.add_metric([phase.value], snap.programmes.get(phase.value, 0))
        yield programmes
        overdue = GaugeMetricFamily("techconnect_overdue_steps",
                                    "Open programme steps past their due date, by step", labels=["step"])
        for step in [s.value for s in StepName] + sorted(set(snap.overdue_steps) - {s.value for s in StepName}):
            overdue.add_metric([step], snap.overdue_steps.get(step, 0))
        yield overdue
        requests = GaugeMetricFamily("techconnect_support_requests", "Support requests by state", labels=["state"])
        for state in sorted(set(REQUEST_STATES) | set(snap.requests)):
            requests.add_metric([state], snap.requests.get(state, 0))
        yield requests
        yield CounterMetricFamily("techconnect_sla_warnings",
                                  "First-response SLA warnings recorded (sla_events kind=warned, rule C12)",
                                  value=snap.sla_warnings)
        yield CounterMetricFamily("techconnect_sla_breaches",
                                  "First-response SLA breaches recorded (sla_events kind=breached, rule C12)",
                                  value=snap.sla_breaches)


# ---------------------------------------------------------------------- the endpoint
def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # a loopback URL we built
        body: bytes = response.read()
        return body


class MetricsServer:
    """A tiny HTTP server on the worker's event loop: GET /metrics, GET /healthz."""

    def __init__(self, host: str, port: int, *, sdk_url: str | None = None,
                 collector: BusinessCollector | None = None) -> None:
        self.host = host
        self.port = port
        self._sdk_url = sdk_url
        self._collector = collector
        self._business = CollectorRegistry(auto_describe=False)
        if collector is not None:
            self._business.register(collector)
        self._server: asyncio.Server | None = None
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` series next to counters

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics on http://%s:%s/metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def render(self) -> bytes:
        parts: list[bytes] = []
        if self._sdk_url:
            try:
                parts.append(await asyncio.to_thread(_fetch, self._sdk_url, 5.0))
            except OSError as exc:
                parts.append(f"# Temporal SDK metrics unavailable: {exc}\n".encode())
        if self._collector is not None:
            await self._collector.refresh()
        parts.append(generate_latest(REGISTRY))  # mail counters, process_* and python_* metrics
        parts.append(generate_latest(self._business))
        return b"".join(p if p.endswith(b"\n") or not p else p + b"\n" for p in parts)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 10)
            while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                del line  # headers are not needed
            method, target, *_ = request.decode("latin-1").split() or ["", ""]
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == "/metrics":
                try:
                    status, ctype, body = "200 OK", CONTENT_TYPE, await self.render()
                except Exception:  # a scrape must never take the worker down; say why instead
                    log.exception("metrics: rendering failed")
                    status, ctype, body = "500 Internal Server Error", "text/plain", b"rendering failed\n"
            elif path in ("/healthz", "/"):
                status, ctype, body = "200 OK", "text/plain", b"ok\n"
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try /metrics\n"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            writer.write(head if method == "HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serve_worker_metrics(settings: Settings) -> AsyncIterator[MetricsServer | None]:
    """SDK runtime with Prometheus + the business collector + the endpoint; nothing when the port is 0.

    Enter it before connecting to Temporal, so the client (and its workers) use the metrics runtime.
    """
    if not settings.metrics_port:
        yield None
        return
    sdk_url = install_sdk_metrics()
    engine = make_engine(settings.effective_database_url)
    server = MetricsServer(settings.metrics_host, settings.metrics_port, sdk_url=sdk_url,
                           collector=BusinessCollector(make_session_factory(engine)))
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        await engine.dispose()
