"""What every part of MonthlyCycleWorkflow shares: its state, the step sequence, mails, the signal to the
programme, and publishing its state (search attributes, the Temporal UI, the inbox projection).

MonthlyCycleWorkflow (workflows/monthly_cycle.py) is assembled from this base and the month-end report
(workflows/cycle_report.py), as ProgramWorkflow is from its parts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from domain.activities import CycleProjection, MailRequest
    from domain.cycle import CycleCallHeld, CycleCompleted, CycleInput, CycleStatus
    from domain.errors import RuleViolation
    from domain.inbox import OpenStep, cycle_open_steps
    from domain.naming import SA_OPEN_STEPS, SA_PROGRAM_PHASE
    from domain.rules_cycle import check_cycle_step_open, cycle_label
    from domain.step_inputs import StepState, StepStatus
    from domain.steps import Workflow, tracked_steps
    from workflows import activity_calls as act
    from workflows.search_attributes import upsert_changed
    from workflows.updatable_sleep import UpdatableSleep
    from workflows.update_sequence import UpdateSequence


# The cycle's steps, one after the other (domain/steps.py).
ORDER = [st.name for st in tracked_steps(Workflow.cycle)]
# Issue 16: the cycle writes its open steps to the inbox projection as they change, an Update's before it
# returns. Cycles started before never write theirs (`techconnect projection check --fix` does).
PATCH_CYCLE_PROJECTION = "cycle-inbox-projection"
# Issue 16: `_publish` upserts only the search attributes that change (it ran twice a step: in the Update and
# again in the main loop). A cycle started before keeps upserting them all.
PATCH_UPSERT_CHANGES = "cycle-upserts-only-changes"


class CycleBase:
    _input: CycleInput
    _status: CycleStatus
    _updates: UpdateSequence
    _sleep: UpdatableSleep
    _projects: bool  # issue 16: this run writes its open steps to the inbox projection
    _projected: list[OpenStep] | None
    _project_lock: asyncio.Lock

    @property
    def _label(self) -> str:
        return cycle_label(self._input.month_start, self._input.month_end, self._input.months)

    async def _tell_programme(self, signal: str, arg: CycleCompleted | CycleCallHeld) -> None:
        """By signal, which reaches the programme's current run even after it continued as new. A programme
        closed meanwhile (the last month's report comes after the period) has nothing left to hear."""
        try:
            await workflow.get_external_workflow_handle(self._input.parent_workflow_id).signal(signal, arg)
        except FailureError as err:
            workflow.logger.info("%s not delivered to %s: %s", signal, self._input.parent_workflow_id, err)

    def _step_state(self, name: str) -> StepState:
        return next(st for st in self._status.steps if st.step == name)

    def _is_stale(self, at: datetime) -> bool:
        """A date long gone when the cycle started (programme taken over late): no mail for it
        (docs/design.md "Past start dates")."""
        return workflow.now() - at > timedelta(days=self._input.policy.stale_after_days)

    def _key(self, purpose: str) -> str:
        return f"{self._status.workflow_id}:{purpose}"

    async def _mail(self, to: list[str], template: str, purpose: str, context: dict[str, Any],
                    cc: list[str] | None = None, **kw: Any) -> None:
        i = self._input
        if i.stale:
            return
        try:
            await act.send_mail(
                MailRequest(idempotency_key=self._key(f"mail:{purpose}"), to=to, cc=cc or [], template=template,
                            customer_id=i.customer_id,
                            context={"customer_name": i.customer_name, "customer_id": i.customer_id,
                                     "portal_url": i.policy.portal_url, "timezone": i.calendar.timezone,
                                     **context}, **kw),
                summary=f"Mail '{template}' to {', '.join(to)}",
            )
        except ActivityError as err:
            workflow.logger.warning("mail %s refused for good: %s", template, err.cause or err)

    @asynccontextmanager
    async def _step(self, step: str, by: str, also: Callable[[], list[RuleViolation]] = lambda: []
                    ) -> AsyncIterator[CycleStatus]:
        """Lock, re-check that the step is still open (two Updates may both pass their validators
        before either runs), mark it done and open the next one, wake the loop; then the body."""
        async with self._updates(lambda: check_cycle_step_open(self._status, step) + also()):
            st = self._step_state(step)
            now = workflow.now()
            st.status, st.done_at, st.done_by = StepStatus.done, now, by
            st.late = bool(st.due_at and now > st.due_at)
            idx = ORDER.index(step)
            if idx + 1 < len(ORDER):
                nxt = self._step_state(ORDER[idx + 1])
                # Rule D7: with month-end reports, the approval opens when the draft is made, not at the call.
                if not (nxt.step == "approve_report" and self._status.month_end_report
                        and self._status.report_document_id is None):
                    nxt.status = StepStatus.open
            else:
                self._status.done = True
            self._sleep.wake()
            yield self._status
            # Issue 16: the completed step leaves the inbox before the Update returns.
            await self._project()

    def _publish(self) -> None:
        open_steps = [st.step for st in self._status.steps if st.status == StepStatus.open]
        upsert_changed([
            SA_OPEN_STEPS.value_set(open_steps),
            SA_PROGRAM_PHASE.value_set("cycle-done" if self._status.done else "cycle"),
        ], PATCH_UPSERT_CHANGES)
        lines = [f"Follow-up cycle {self._label} (period {self._input.period}, month {self._input.month})"]
        lines += [f"- [{'x' if st.status == StepStatus.done else ' '}] {st.title} (due {st.due_on})"
                  for st in self._status.steps]
        workflow.set_current_details("\n".join(lines))

    async def _project(self) -> None:
        """Issue 16: write the open steps to the inbox projection when they changed (an activity, so the
        write is retried until done). One write at a time, the latest state last: two writes racing could
        otherwise commit in the wrong order."""
        if not self._projects or cycle_open_steps(self._status) == self._projected:
            return
        async with self._project_lock:
            steps = cycle_open_steps(self._status)
            if steps == self._projected:
                return
            self._projected = steps
            await act.save_cycle_projection(CycleProjection(status=self._status),
                                            summary=f"Inbox: {len(steps)} open step(s) of {self._label}")
