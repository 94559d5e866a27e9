"""The bench's trivial workflows, the baselines the real ones are measured against.

They run through the very worker setup of `worker.py` (same sandboxed runner, slots and
sticky cache): `bench/worker.py` adds them to `worker.WORKFLOWS`, the in-process stacks of
the bench add them the same way. Like the real workflow modules, this one imports only
temporalio and (passed through) pydantic models.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bench.models import NoopInput, NoopResult, ShapeInput, TimerInput, TimerResult


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


class ShapeActivities:
    """The activity of `BenchShapeWorkflow`: nothing, answered at once."""

    @activity.defn(name="bench_nothing")
    async def nothing(self, input: NoopInput) -> NoopResult:
        return NoopResult(label=input.label)


@workflow.defn(name="BenchShapeWorkflow")
class BenchShapeWorkflow:
    """An enrolment's shape with none of its work: the first workflow task runs its local activities (the
    enrolment's check and plan, its registration; a request's deadline and first write) and schedules one
    regular activity (the mails), whose result is a second workflow task. Its rate against the no-op's is the
    most figures 1 and 2 could reach with that shape if the service's own work cost nothing."""

    @workflow.run
    async def run(self, input: ShapeInput) -> NoopResult:
        for k in range(input.local_activities):
            await workflow.execute_local_activity_method(ShapeActivities.nothing, NoopInput(label=f"local {k}"),
                                                         start_to_close_timeout=timedelta(seconds=30))
        await workflow.execute_activity_method(ShapeActivities.nothing, NoopInput(label="activity"),
                                               start_to_close_timeout=timedelta(seconds=30))
        return NoopResult(label=input.label)


BENCH_WORKFLOWS = [BenchNoopWorkflow, BenchTimerWorkflow, BenchShapeWorkflow]
# Registered by bench/worker.py beside the service's activities.
BENCH_ACTIVITIES = [ShapeActivities().nothing]
