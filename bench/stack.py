"""The dev-server stack of figures 1, 2, 6 and 7: the embedded Temporal dev server, a SQLite
database, an SMTP sink on loopback, and worker processes (`python -m bench.worker`) on demand."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.meter import until
from bench.results import Log
from config.settings import Settings
from devstack.smtp_sink import SmtpSink
from domain.policy import ProgramPolicy
from storage.db import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from testing.servers import free_port, start_dev_server

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    metrics_port: int
    log: Path
    task_queue: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the process in MiB, from /proc/<pid>/status."""
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024  # kB
        return fields["VmRSS"], fields["VmHWM"]

    def metric(self, name: str) -> float | None:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        return None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class DevStack:
    """The dev server, the application database, the SMTP sink; workers are spawned on demand."""

    env: WorkflowEnvironment
    database_url: str
    sessions: SessionFactory
    sink: SmtpSink
    tmp: Path
    log: Log
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def client(self) -> Client:
        return self.env.client

    def settings(self, task_queue: str, policy: ProgramPolicy | None = None) -> Settings:
        return Settings(data_dir=self.tmp / "client", database_url=self.database_url, smtp_port=self.sink.port,
                        task_queue=task_queue, policy=policy or ProgramPolicy())

    async def spawn_worker(self, name: str, profile: Path | None = None,
                           extra_env: dict[str, str] | None = None) -> WorkerProcess:
        """`python -m bench.worker` on its own task queue, configured only by the environment, as in production."""
        task_queue = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TECHCONNECT_", "BENCH_"))}
        env.update({
            "TEMPORAL_ADDRESS": self.client.service_client.config.target_host,
            "TECHCONNECT_DATABASE_URL": self.database_url,
            "TECHCONNECT_TASK_QUEUE": task_queue,
            "TECHCONNECT_SMTP_HOST": "127.0.0.1",
            "TECHCONNECT_SMTP_PORT": str(self.sink.port),
            "TECHCONNECT_METRICS_HOST": "127.0.0.1",
            "TECHCONNECT_METRICS_PORT": str(port),
            "TECHCONNECT_DATA_DIR": str(self.tmp / f"worker-{name}"),
            "TECHCONNECT_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
        })
        if profile is not None:
            env["BENCH_PROFILE"] = str(profile)
        env.update(extra_env or {})
        log = self.tmp / f"worker-{name}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.worker", cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        w = WorkerProcess(proc=proc, metrics_port=port, log=log, task_queue=task_queue)
        self.workers.append(w)
        identity = f"{proc.pid}@{socket.gethostname()}"

        async def polling() -> bool:
            if proc.returncode is not None:
                raise RuntimeError(f"worker {name} exited with {proc.returncode}:\n{w.tail()}")
            for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
                resp = await self.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                    namespace=self.client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind))
                if identity not in {p.identity for p in resp.pollers}:
                    return False
            return True

        await until(polling, f"worker {name} polling", 60)
        return w


@contextlib.asynccontextmanager
async def dev_stack(tmp: Path, log: Log) -> AsyncIterator[DevStack]:
    await asyncio.to_thread(tmp.mkdir, parents=True, exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{tmp / 'techconnect.db'}"
    await upgrade(database_url)
    engine = make_engine(database_url)
    sink = SmtpSink(host="127.0.0.1", port=free_port())
    await asyncio.to_thread(sink.start)
    env = await start_dev_server()
    stack = DevStack(env=env, database_url=database_url, sessions=make_session_factory(engine), sink=sink,
                     tmp=tmp, log=log)
    try:
        yield stack
    finally:
        for w in stack.workers:
            await w.stop()
        await env.shutdown()
        await asyncio.to_thread(sink.stop)
        await engine.dispose()
