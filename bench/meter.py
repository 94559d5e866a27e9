"""Reading processes and waiting: CPU time from /proc, polling until a condition holds, bounded
concurrency, history lengths and the load average."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def child_pid(name: str) -> int | None:
    """A child of this process by command name (the dev server the SDK spawned)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm == name and text.rsplit(")", 1)[1].split()[1] == me:
            return int(stat.parent.name)
    return None


class CpuMeter:
    """CPU seconds used by the server, the worker and this process (client, SMTP sink) over a window."""

    def __init__(self, server: int | None, worker: int) -> None:
        self.pids = {"server": server, "worker": worker, "bench": os.getpid()}
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {k: cpu_seconds(pid) for k, pid in self.pids.items() if pid is not None}

    def per_item(self, n: int) -> dict[str, float]:
        """Milliseconds of CPU per item, by process."""
        end = self._read()
        return {k: (end[k] - self.start[k]) * 1000 / n for k in end}


def cpu_text(ms: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in ms.items()) + f" (total {sum(ms.values()):.1f}) ms CPU"


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float,  # noqa: ASYNC109
                interval: float = 0.02) -> float:
    """Poll `check` until true; returns the monotonic instant it was first seen true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


async def bounded(calls: list[Callable[[], Awaitable[Any]]], concurrency: int) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def history_length(client: Client, workflow_id: str, run_id: str | None = None) -> int:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return len([e async for e in handle.fetch_history_events()])


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"
