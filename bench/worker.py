"""`python -m bench.worker`: the service's worker (`worker.main`, same settings and setup) with
the bench's trivial workflows and `BenchShapeWorkflow` (with its activity) registered too, so baselines,
the shape reference and the real workflows share one worker.

With `BENCH_PROFILE=<path prefix>` the worker can be profiled with pyinstrument: SIGUSR1 starts
the profiler, SIGUSR2 stops it and writes `<prefix>-<n>.pyisession`, `.txt` and `.html` (n = 1, 2, ...). pyinstrument
samples one thread, so in that mode workflow activations run inline on the event loop's thread
(as the SDK's own debug mode does) instead of the SDK's thread pool: activities, the SDK's
asyncio side and the sandboxed workflow code then show in one profile. Only the profiling run
uses this; the measured figures come from the unmodified worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from temporalio import activity

import worker as app_worker
from bench.models import NoopInput, NoopResult
from bench.shape import NOTHING, BenchShapeWorkflow
from bench.workloads import BENCH_WORKFLOWS


class InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each submitted call at once on the caller's thread (profiling only)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        # A workflow activation runs the workflow's own event loop, which unregisters the running
        # loop when it returns: put the worker's back (as the SDK's debug mode does).
        running = asyncio._get_running_loop()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            asyncio._set_running_loop(running)
        return future


def _install_profiler(prefix: Path) -> None:
    from pyinstrument import Profiler

    state: dict[str, Any] = {}

    def start(_sig: int, _frame: FrameType | None) -> None:
        if "profiler" not in state:
            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
            state["profiler"] = profiler

    def stop(_sig: int, _frame: FrameType | None) -> None:
        profiler = state.pop("profiler", None)
        if profiler is None:
            return
        session = profiler.stop()
        state["count"] = state.get("count", 0) + 1
        out = prefix.with_name(f"{prefix.name}-{state['count']}")

        def write() -> None:
            session.save(str(out.with_suffix(".pyisession")))
            out.with_suffix(".txt").write_text(profiler.output_text(unicode=True, color=False), encoding="utf-8")
            out.with_suffix(".html").write_text(profiler.output_html(), encoding="utf-8")
            out.with_suffix(".done").write_text("ok", encoding="utf-8")

        # Not here: a signal handler runs in whatever frame the main thread is in, possibly a workflow
        # activation, where the sandbox has swapped `open` for a refusal (thread-local) and the refusal
        # would fail that workflow task. Another thread writes the files.
        threading.Thread(target=write, name="profile-writer").start()

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    # Workflow activations on the profiled thread (see the module docstring).
    app_worker.Worker = functools.partial(app_worker.Worker, workflow_task_executor=InlineExecutor(max_workers=1))  # type: ignore[misc]


def _install_tracemalloc(path: Path) -> None:
    """BENCH_TRACEMALLOC=<file>: trace Python allocations from the start; SIGUSR2 writes the biggest
    owners of live memory (by file, and by line) to <file> (the memory profile of results.md)."""
    import tracemalloc

    tracemalloc.start(1)

    def dump(_sig: int, _frame: FrameType | None) -> None:
        import gc

        gc.collect()  # live memory only, not garbage waiting for the cycle collector
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        total = sum(s.size for s in snapshot.statistics("filename"))
        lines = [f"total {total}"]
        lines += [f"file {s.size} {s.count} {s.traceback[0].filename}" for s in snapshot.statistics("filename")[:40]]
        lines += [f"line {s.size} {s.count} {s.traceback[0].filename}:{s.traceback[0].lineno}"
                  for s in snapshot.statistics("lineno")[:40]]
        # The file from another thread: see the profiler's handler (the sandbox's `open` refusal).
        threading.Thread(target=path.write_text, args=("\n".join(lines) + "\n",),
                         kwargs={"encoding": "utf-8"}).start()

    signal.signal(signal.SIGUSR2, dump)


class ShapeActivities:
    """`BenchShapeWorkflow`'s activity (bench/shape.py): nothing, answered at once."""

    @activity.defn(name=NOTHING)
    async def nothing(self, input: NoopInput) -> NoopResult:
        return NoopResult(label=input.label)


def _register_shape_activities() -> None:
    """`build_worker`'s Worker with `ShapeActivities` beside the service's activities."""
    service_worker = app_worker.Worker
    shape = ShapeActivities()

    def build(*args: Any, activities: Sequence[Callable[..., Any]] = (), **kwargs: Any) -> Any:
        return service_worker(*args, activities=[*activities, shape.nothing], **kwargs)

    app_worker.Worker = build  # type: ignore[misc,assignment]


def main() -> None:
    # `build_worker` reads `worker.WORKFLOWS` when it builds the Worker: same runner, slots and cache.
    app_worker.WORKFLOWS.extend([*BENCH_WORKFLOWS, BenchShapeWorkflow])
    _register_shape_activities()
    profile = os.environ.get("BENCH_PROFILE")
    if profile:
        _install_profiler(Path(profile))
    extra = os.environ.get("BENCH_EXTRA_PASSTHROUGH")  # experiments only: more modules shared with the sandbox
    if extra:
        app_worker.SANDBOX_PASSTHROUGH = (*app_worker.SANDBOX_PASSTHROUGH, *extra.split(","))
    traced = os.environ.get("BENCH_TRACEMALLOC")
    if traced:
        _install_tracemalloc(Path(traced))
    asyncio.run(app_worker.main())


if __name__ == "__main__":
    main()
