"""Kill -9 inside a local activity of a run's first workflow task (docs/local-activities.md), with the rig of
tests/test_crashes.py: two lanes of the same story, the crash lane's worker killed at a fault point and
restarted, both lanes checked to end the same, every mail once.

A local activity's result is recorded only when its workflow task completes. Killed after the activity
committed, the worker never completes the task; after the task's timeout the restarted worker runs it again,
local activities included. What they wrote the first time must not be written twice: here the audit entry each
writes (`programme_started` with the registration, `open_request` with a request's opening), whose key holds its
instant (activities.db.audit_key): the run's start, the same in both attempts, not `workflow.now()`, which is
the later attempt's.

- (g) `registration.after_commit`: in `register_programme`, the enrolment's registration;
- (h) `request.opened_after_commit`: in `record_request_opened`, a request's opening write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from activities.faults import CRASH_EXIT_CODE, REGISTRATION_AFTER_COMMIT, REQUEST_OPENED_AFTER_COMMIT
from tests.crash_rig import (
    Lane,
    Rig,
    audit_by_action,
    check_exactly_once,
    enrol,
    enrolment_mails_sent,
    file_request,
    make_rig,
)

__all__ = ["make_rig"]  # the rig's fixture, used by name below


async def test_g_kill_after_the_registration_commit_adds_no_audit_row(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(REGISTRATION_AFTER_COMMIT)
    crash, control = Lane(rig, "reg-crash", True), Lane(rig, "reg-ctl", False)

    async def story(lane: Lane) -> None:
        await enrol(lane)  # the crash lane's worker dies in its first workflow task, the registration committed
        await enrolment_mails_sent(lane)

    await asyncio.gather(story(crash), story(control))
    # No mail is scheduled before the first workflow task completes: none was on its way at the death.
    state, _ = await check_exactly_once(rig, crash, control, resends=0)

    assert rig.exits == [CRASH_EXIT_CODE], rig.exits
    assert audit_by_action(state)["programme_started"] == 1, state["audit"]
    report_figure("crash (g) after the registration commit", f"exit {rig.exits}, audit {state['audit']}")


async def test_h_kill_after_a_request_opening_commit_adds_no_audit_row(
        make_rig: Callable[[str | None], Awaitable[Rig]], report_figure: Callable[[str, object], None]) -> None:
    rig = await make_rig(REQUEST_OPENED_AFTER_COMMIT)
    crash, control = Lane(rig, "open-crash", True), Lane(rig, "open-ctl", False)

    async def story(lane: Lane) -> None:
        await enrol(lane)
        await enrolment_mails_sent(lane)  # no mail of the lane on its way when the request's opening kills
        await file_request(lane)  # the crash lane's worker dies in the request's first task, its row committed

    await asyncio.gather(story(crash), story(control))
    state, _ = await check_exactly_once(rig, crash, control, resends=0)

    assert rig.exits == [CRASH_EXIT_CODE], rig.exits
    assert audit_by_action(state)["open_request"] == 1, state["audit"]
    report_figure("crash (h) after a request's opening commit", f"exit {rig.exits}, audit {state['audit']}")
