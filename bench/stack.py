"""The dev-server stack of figures 1, 2, 6 and 7: the embedded Temporal dev server, a SQLite
database, an SMTP sink on loopback, and worker processes (`python -m bench.worker`, spawned and
stopped by testing/workers.py as the crash tests' `python worker.py` are) on demand."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

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
from testing.workers import BENCH_WORKER, OWN_PREFIXES, WorkerProcess, polling, spawn_worker


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
        extra = {"BENCH_PROFILE": str(profile)} if profile is not None else {}
        w = await spawn_worker(self.tmp, name, target=self.client.service_client.config.target_host,
                               database_url=self.database_url, task_queue=task_queue, smtp_port=self.sink.port,
                               extra={**extra, **(extra_env or {})}, command=BENCH_WORKER,
                               drop=(*OWN_PREFIXES, "BENCH_"))  # the bench's own settings are not the worker's
        self.workers.append(w)

        async def ready() -> bool:
            if w.proc.returncode is not None:
                raise RuntimeError(f"worker {name} exited with {w.proc.returncode}:\n{w.tail(40)}")
            return await polling(self.client, task_queue, {w.identity})

        await until(ready, f"worker {name} polling", 60)
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


@contextlib.asynccontextmanager
async def own_database(stack: DevStack, name: str) -> AsyncIterator[DevStack]:
    """The same server and SMTP sink with an application database of its own: the lists' figures count what the
    database holds, so they must not see the programmes the other parts started."""
    database_url = f"sqlite+aiosqlite:///{stack.tmp / f'{name}.db'}"
    await upgrade(database_url)
    engine = make_engine(database_url)
    own = DevStack(env=stack.env, database_url=database_url, sessions=make_session_factory(engine), sink=stack.sink,
                   tmp=stack.tmp, log=stack.log)
    try:
        yield own
    finally:
        for w in own.workers:
            await w.stop()
        await engine.dispose()
