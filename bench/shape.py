"""`BenchShapeWorkflow`: an enrolment's tasks with none of its work, the reference beside figures 1 and 2.

A module of its own, not bench/workloads.py: the sandbox imports a workflow's module afresh for every run,
so a class added beside the no-op workflow would be defined again in every no-op run and slow the
baseline. Like the service's workflow modules, it imports only temporalio and (passed through) pydantic
models, and calls its activity by name (`bench/worker.py` registers `ShapeActivities`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from bench.models import NoopInput, NoopResult, ShapeInput

NOTHING = "bench_nothing"  # ShapeActivities.nothing (bench/worker.py)
TIMEOUT = timedelta(seconds=30)


@workflow.defn(name="BenchShapeWorkflow")
class BenchShapeWorkflow:
    """The first workflow task runs `local_activities` local activities (an enrolment's check and plan and its
    registration; a request's deadline and first write) and schedules one regular activity (the mails); the
    activity's result is a second workflow task. Every activity answers at once."""

    @workflow.run
    async def run(self, input: ShapeInput) -> NoopResult:
        for k in range(input.local_activities):
            await workflow.execute_local_activity(NOTHING, NoopInput(label=f"local {k}"), result_type=NoopResult,
                                                  start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(NOTHING, NoopInput(label="activity"), result_type=NoopResult,
                                        start_to_close_timeout=TIMEOUT)
        return NoopResult(label=input.label)
