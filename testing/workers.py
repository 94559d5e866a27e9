"""Workers in their own processes, for the tests that kill them (tests/test_crashes.py, test_scale.py,
test_load_faults.py: `python worker.py`) and the benchmarks that measure them (bench/stack.py:
`python -m bench.worker`): spawning them, configured by the environment alone as in production,
describing them, waiting until they poll, and stopping them (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from testing.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
# What runs after `python`: the service's worker, and the same worker with the bench's workflows added.
SERVICE_WORKER = ("worker.py",)
BENCH_WORKER = ("-m", "bench.worker")
# The caller's settings for these are not the worker's: its environment is the one worker_env builds.
OWN_PREFIXES = ("TEMPORAL_", "TECHCONNECT_")


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    metrics_port: int
    log: Path
    task_queue: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def identity(self) -> str:
        # The SDK's default identity, `<pid>@<hostname>`, recorded on every task it starts.
        return f"{self.proc.pid}@{socket.gethostname()}"

    def metrics(self) -> str:
        """The worker's /metrics page (Prometheus text)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            body: bytes = r.read()
        return body.decode()

    def metric(self, name: str) -> float | None:
        """The value of the first sample called `name` on /metrics, None if there is none."""
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name:
                    return float(sample.value)
        return None

    def rss_mb(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) of the process in MiB, from /proc/<pid>/status."""
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(rest.split()[0]) / 1024  # kB
        return fields["VmRSS"], fields["VmHWM"]

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """SIGTERM, unless it has exited already."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()

    async def reap(self, grace: float) -> None:
        """Wait `grace` seconds for it to exit, then SIGKILL it."""
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        self.terminate()
        await self.reap(grace)


def worker_env(target: str, database_url: str, task_queue: str, smtp_port: int, metrics_port: int,
               data_dir: Path, extra: dict[str, str] | None = None,
               drop: Sequence[str] = OWN_PREFIXES) -> dict[str, str]:
    """The worker's environment: this machine's, less the variables of the caller starting with one of
    `drop` (TEMPORAL_*, TECHCONNECT_*; the bench drops its BENCH_* too), plus `extra` (e.g.
    TECHCONNECT_FAULT_INJECT for the crash tests, BENCH_PROFILE for the bench)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop))}
    env.update({
        "TEMPORAL_ADDRESS": target,
        "TECHCONNECT_DATABASE_URL": database_url,
        "TECHCONNECT_TASK_QUEUE": task_queue,
        "TECHCONNECT_SMTP_HOST": "127.0.0.1",
        "TECHCONNECT_SMTP_PORT": str(smtp_port),
        "TECHCONNECT_METRICS_HOST": "127.0.0.1",
        "TECHCONNECT_METRICS_PORT": str(metrics_port),
        "TECHCONNECT_DATA_DIR": str(data_dir),
        "TECHCONNECT_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


async def spawn_worker(tmp: Path, n: int | str, *, target: str, database_url: str, task_queue: str,
                       smtp_port: int, extra: dict[str, str] | None = None,
                       command: Sequence[str] = SERVICE_WORKER, drop: Sequence[str] = OWN_PREFIXES,
                       ) -> WorkerProcess:
    """`python <command>` (`worker.py` unless told otherwise) in the project root with `worker_env`, its
    metrics on a free port; `n` names its log (`tmp/worker-<n>.log`) and data directory (`tmp/worker-<n>`)."""
    port = free_port()
    log = tmp / f"worker-{n}.log"
    env = worker_env(target, database_url, task_queue, smtp_port, port, tmp / f"worker-{n}", extra, drop)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, *command, cwd=ROOT, env=env,
                                                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
    return WorkerProcess(proc=proc, metrics_port=port, log=log, task_queue=task_queue)


async def polling(client: Client, task_queue: str, identities: set[str],
                  rpc_timeout: timedelta | None = None) -> bool:
    """Whether every worker of `identities` polls both the workflow and the activity side of the queue."""
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind),
            timeout=rpc_timeout)
        if not identities <= {p.identity for p in resp.pollers}:
            return False
    return True


async def wait_polling(client: Client, task_queue: str, workers: list[WorkerProcess], within: float = 45.0) -> None:
    """Until every worker polls both the workflow and the activity side of the queue."""
    identities = {w.identity for w in workers}

    async def all_polling() -> bool:
        try:
            return await polling(client, task_queue, identities, rpc_timeout=timedelta(seconds=10))
        except RPCError:  # a busy server: ask again
            return False

    await wait_for(all_polling, f"{len(workers)} worker(s) polling {task_queue}", within=within, workers=workers)


async def stop_all(workers: list[WorkerProcess], grace: float = 10.0,
                   tasks: list[asyncio.Task[None]] | None = None) -> None:
    """The test's background tasks (sweepers, restarters) cancelled, then every worker: SIGTERM, then
    SIGKILL after `grace` seconds. No worker outlives its test."""
    for task in tasks or []:
        task.cancel()
    for task in tasks or []:
        # A cancelled RPC may surface as RPCError rather than CancelledError: cleanup goes on regardless.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    # All signalled first, so they shut down together: the grace runs once, not once per worker.
    for w in workers:
        w.terminate()
    for w in workers:
        await w.reap(grace)


async def wait_for(predicate: Callable[[], object], what: str, within: float = 45.0,
                   workers: list[WorkerProcess] | None = None) -> None:
    """Until `predicate()` (awaited if a coroutine) returns True. Anything else it returns (a string
    saying what it saw, say) and any RPCError or TimeoutError it raises (a busy server, a query to a
    worker that is down) means "not yet", and the last of them is in the failure message."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result is True:
                return
            last = result
        except (RPCError, TimeoutError) as exc:
            last = exc
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- worker {w.identity}\n{w.tail()}" for w in workers or [])
            raise AssertionError(f"timed out after {within} s waiting for {what}; last seen: {last!r}\n{logs}")
        await asyncio.sleep(0.25)
