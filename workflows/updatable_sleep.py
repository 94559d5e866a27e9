"""The main loop's sleep until its next timed event, cut short when an Update or signal changed
what is due. Modelled on the Temporal samples' UpdatableTimer, woken by a flag rather than by a
new wake-up time: the loop recomputes the next event itself after every wake-up."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

# Never a zero or negative timer: an event already due is processed after one second.
MIN_SLEEP = timedelta(seconds=1)


class UpdatableSleep:
    def __init__(self) -> None:
        self.woken = False

    def wake(self) -> None:
        """Something changed (an Update, a signal): the sleeping loop runs again now."""
        self.woken = True

    def clear(self) -> None:
        # Called before the loop's work, not after it, where a workflow always did so: an Update
        # landing while that work awaits an activity wakes it again and is not lost.
        self.woken = False

    async def sleep_until(self, at: datetime | None, summary: str) -> bool:
        """Sleep until `at` (forever if None) or a wake-up; True if woken."""
        if at is None:
            await workflow.wait_condition(lambda: self.woken)
            return True
        try:
            await workflow.wait_condition(lambda: self.woken, timeout=max(at - workflow.now(), MIN_SLEEP),
                                          timeout_summary=summary)
        except TimeoutError:
            return False
        return True
