"""The sequence every Update repeats, and how a refusal leaves a workflow.

An Update's validator refuses before anything is recorded (no event in history); the same rules
are checked again under the lock, since two Updates may both pass their validators before either
runs. Then the body, the save, and the main loop is woken to reconsider its next timed event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.errors import REFUSAL_ERROR_TYPE, RuleViolation
    from domain.refusal import refusal_text


def refuse(violations: list[RuleViolation]) -> None:
    """In a validator: the Update is rejected, nothing enters history (the SDK reports a ValueError)."""
    if violations:
        raise ValueError(refusal_text(violations))


def refuse_in_body(violations: list[RuleViolation]) -> None:
    """In an Update body: a non-retryable ApplicationError fails only the Update, never the workflow."""
    if violations:
        raise ApplicationError(refusal_text(violations), type=REFUSAL_ERROR_TYPE, non_retryable=True)


class UpdateSequence:
    """Wait until the run is ready, lock, re-check, body, save, wake the loop.

    Each step is optional, so each workflow keeps exactly the commands it always issued: the
    programme saves from its main loop and wakes it when recording, the request saves after every
    Update. Use as `async with self._updates(lambda: check(...)): <body>`.
    """

    def __init__(self, *, ready: Callable[[], bool] | None = None,
                 save: Callable[[], Awaitable[None]] | None = None,
                 wake: Callable[[], None] | None = None) -> None:
        self.lock = asyncio.Lock()
        self._ready = ready
        self._save = save
        self._wake = wake

    async def until_ready(self) -> None:
        if self._ready is not None:
            await workflow.wait_condition(self._ready)

    @asynccontextmanager
    async def __call__(self, recheck: Callable[[], list[RuleViolation]] | None = None) -> AsyncIterator[None]:
        await self.until_ready()
        async with self.lock:
            if recheck is not None:
                refuse_in_body(recheck())
            yield
            if self._save is not None:
                await self._save()
            if self._wake is not None:
                self._wake()
