"""A change to ProgramWorkflow's commands, shipped in place with `workflow.patched` (issue 5, item 3).

The change: at enrolment the programme's state (workspace id, "programme_started" audit entry)
is saved to the database *before* the welcome document and mails, not only after them, so an
SMTP outage delays the mails and nothing else (tests/test_outages.py shows it). That adds
commands (a search-attribute upsert and a `save_projection` activity) where old histories have
`file_document`, so it is guarded by `workflow.patched(PATCH_SAVE_BEFORE_WELCOME)`:

- histories recorded before the change (tests/replay/histories/, and a pinned copy in
  tests/replay/pre-patch/ that survives a re-export) replay on the old path;
- without the guard they would not: forcing the new path on them is a NondeterminismError;
- a new run records the patch marker and takes the new path, and its history in turn refuses
  the old code (which is why a deployed patch is never rolled back without the guard).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from storage.repositories import get_programme, list_audit
from tests.harness import add_subscription, enrolment, stack
from tests.test_program_refusals import history_len
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import PATCH_ENROL_MAILS_AT_ONCE, PATCH_SAVE_BEFORE_WELCOME, ProgramWorkflow

# Outside the sandbox (the sandbox re-imports this module for nothing, but keep it cheap).
with workflow.unsafe.imports_passed_through():
    from config.temporal import DATA_CONVERTER
    from worker import workflow_runner

REPLAY = Path(__file__).parent / "replay"
PINNED = REPLAY / "pre-patch" / "program-replay-lapsed.json"
SAVED = [] if workflow.unsafe.in_sandbox() else sorted((REPLAY / "before-issue-16").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def activity_sequence(events: list[dict[str, Any]]) -> list[str]:
    """Activity types and patch markers in order, from the JSON form of a history; a local activity (its
    marker) by its type too, as `local:<type>` (the enrolment's since PATCH_ENROL_LOCALLY)."""
    out = []
    for e in events:
        if "activityTaskScheduledEventAttributes" in e:
            out.append(e["activityTaskScheduledEventAttributes"]["activityType"]["name"])
        elif "markerRecordedEventAttributes" in e:
            marker = e["markerRecordedEventAttributes"]
            if marker["markerName"] == "core_local_activity":
                data = json.loads(base64.b64decode(marker["details"]["data"]["payloads"][0]["data"]))
                out.append("local:" + data["activity_type"])
            else:
                out.append("marker:" + json.dumps(marker.get("details", {})))
    return out


def has_patch_marker(events: Sequence[HistoryEvent]) -> bool:
    return any(e.HasField("marker_recorded_event_attributes")
               and PATCH_SAVE_BEFORE_WELCOME.encode() in e.marker_recorded_event_attributes.SerializeToString()
               for e in events)


async def replay(history: WorkflowHistory) -> None:
    await Replayer(workflows=[ProgramWorkflow, MonthlyCycleWorkflow], data_converter=DATA_CONVERTER,
                   workflow_runner=workflow_runner()).replay_workflow(history)


@pytest.fixture
def path_forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`force(True)`: code without the guard (new path always); `force(False)`: the code before the change."""
    def force(value: bool) -> None:
        monkeypatch.setattr(workflow, "patched", lambda patch_id: value)
    yield force


def recorded_before_the_change(path: Path) -> bool:
    return path.exists() and not has_patch_marker(load(path).events)


def reaches_enrolment(path: Path) -> bool:
    sequence = activity_sequence(json.loads(path.read_text())["events"])
    return "register_programme" in sequence or "local:register_programme" in sequence


# ---- old histories: old path ------------------------------------------------------------------
def test_the_pinned_history_was_recorded_before_the_change() -> None:
    sequence = activity_sequence(json.loads(PINNED.read_text())["events"])
    i = sequence.index("register_programme")
    assert sequence[i + 1] == "file_document", sequence[:8]  # no save_projection in between
    assert not any(s.startswith("marker:") for s in sequence)
    assert has_patch_marker(load(PINNED).events) is False


@pytest.mark.parametrize("path", [PINNED, *(p for p in SAVED if reaches_enrolment(p))],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_histories_from_before_the_change_replay_on_the_old_path(path: Path) -> None:
    history = load(path)
    if has_patch_marker(history.events):
        pytest.skip("recorded after the change (a re-exported history): covered by tests/test_replay.py")
    await replay(history)


@pytest.mark.parametrize("path", [PINNED, REPLAY / "before-issue-16" / "program-replay-renewed.json"],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_without_the_guard_old_histories_break(path: Path, path_forced: Any) -> None:
    if not recorded_before_the_change(path):
        pytest.skip("no pre-change history there")
    path_forced(True)
    with pytest.raises(workflow.NondeterminismError):
        await replay(load(path))


# ---- a new run: new path ----------------------------------------------------------------------
async def test_a_new_run_takes_the_new_path_and_refuses_the_old_code(
    env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path, path_forced: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker as released between this patch and PATCH_ENROL_MAILS_AT_ONCE, whose registration writes the
    # start itself (no save before the mails: tests/test_local_activities.py).
    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id != PATCH_ENROL_MAILS_AT_ONCE and real(patch_id))
    async with stack(env, sqlite_url, tmp_path) as st:
        today = (await st.now()).date()
        await add_subscription(st.sessions, "patched", today - timedelta(days=1), today + timedelta(days=800))
        handle = await st.start(enrolment("patched", today))
        await st.wait_enrolled("patched")
        await history_len(handle)
        history = await handle.fetch_history()
        async with st.sessions() as session:
            row = await get_programme(session, "patched")
            audit = await list_audit(session, "patched")

    assert has_patch_marker(history.events)
    sequence = activity_sequence(json.loads(history.to_json())["events"])
    i = sequence.index("local:register_programme")  # a local activity since PATCH_ENROL_LOCALLY
    # The patch's marker, then (after any later patch's marker) the save before the welcome document and mails.
    after = [s for s in sequence[i + 1:] if not s.startswith("marker:")]
    assert sequence[i + 1].startswith("marker:") and after[:2] == ["save_projection", "file_document"], sequence[:9]
    assert "send_mail" in after[2:]
    assert row is not None and row.status["workspace_id"] == "ws-patched"
    assert [a.action for a in audit].count("programme_started") == 1  # saved twice, stored once

    await replay(history)  # today's code replays its own history
    path_forced(False)  # the code from before the change (a rollback) cannot
    with pytest.raises(workflow.NondeterminismError):
        await replay(history)
