"""The bench's trivial workflows, the baselines the real ones are measured against.

They run through the very worker setup of `worker.py` (same sandboxed runner, slots and
sticky cache): `bench/worker.py` adds them to `worker.WORKFLOWS`, the in-process stacks of
the bench add them the same way. Like the real workflow modules, this one imports only
temporalio and (passed through) pydantic models.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.models import NoopInput, NoopResult, TimerInput, TimerResult


@workflow.defn(name="BenchNoopWorkflow")
class BenchNoopWorkflow:
    """One workflow task, no command but completion: what a start costs the server and the worker."""

    @workflow.run
    async def run(self, input: NoopInput) -> NoopResult:
        return NoopResult(label=input.label)


@workflow.defn(name="BenchTimerWorkflow")
class BenchTimerWorkflow:
    """One timer to an instant: how late a server fires a timer and the worker completes on it."""

    @workflow.run
    async def run(self, input: TimerInput) -> TimerResult:
        delay = input.until - workflow.now()
        if delay.total_seconds() > 0:
            await workflow.sleep(delay, summary="bench timer")
        return TimerResult(fired_at=workflow.now())


BENCH_WORKFLOWS = [BenchNoopWorkflow, BenchTimerWorkflow]
