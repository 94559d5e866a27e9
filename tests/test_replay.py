"""Replay the saved histories (tests/replay/histories, recorded by `python -m
tests.replay.export_histories`) against today's workflow code.

A change to ProgramWorkflow, MonthlyCycleWorkflow or SupportRequestWorkflow that would break running ones
(a command added, removed or reordered without `workflow.patched`) fails here. The last
test shows the check has teeth: a variant that does one thing differently is refused.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.cycle import CycleInput, CycleResult
from domain.program import ProgramInput, ProgramResult
from domain.request import RequestInput, RequestResult
from workflows.cycle_base import PATCH_UPSERT_CHANGES as CYCLE_UPSERTS_CHANGES
from workflows.monthly_cycle import MonthlyCycleWorkflow
from workflows.program import (
    PATCH_ENROL_LOCALLY,
    PATCH_ENROL_MAILS_AT_ONCE,
    PATCH_PREPARE_IN_ONE_CALL,
    PATCH_WELCOME_IN_ONE_ACTIVITY,
    ProgramWorkflow,
)
from workflows.program_base import PATCH_UPSERT_CHANGES as PROGRAMME_UPSERTS_CHANGES
from workflows.request_base import PATCH_OPEN_LOCALLY
from workflows.support_request import SupportRequestWorkflow

WORKFLOWS = (ProgramWorkflow, MonthlyCycleWorkflow, SupportRequestWorkflow)

# The sandbox imports this module again for the workflow variants below: what they do not
# need (settings read files at import) comes from outside it.
with workflow.unsafe.imports_passed_through():
    from bench import actions
    from config.temporal import DATA_CONVERTER
    from tests.harness import in_flight
    from worker import workflow_runner

HISTORIES = Path(__file__).parent / "replay" / "histories"
# File access is refused in the sandbox: only the test process lists the files.
FILES: list[Path] = [] if workflow.unsafe.in_sandbox() else sorted(HISTORIES.glob("*.json"))
# Requests opened before the `open-request-in-one-write` patch, pinned: a re-export records the new path.
PRE_PATCH: list[Path] = ([] if workflow.unsafe.in_sandbox()
                         else sorted((HISTORIES.parent / "pre-patch").glob("request-*.json")))
# The first runs of the issue-16 patches (enrolment and request opening with local activities), pinned:
# `python -m tests.replay.export_histories --only local` (tests/test_local_activities.py checks a fresh run).
LOCAL: list[Path] = ([] if workflow.unsafe.in_sandbox()
                     else sorted((HISTORIES.parent / "local-activities").glob("*.json")))
# Every main path as recorded before issue 16's patches (enrolment and request opening as regular activities,
# Updates answered before their save, cycles writing no open steps), pinned: programmes started then still run.
BEFORE_16: list[Path] = ([] if workflow.unsafe.in_sandbox()
                         else sorted((HISTORIES.parent / "before-issue-16").glob("*.json")))
# The programme paths as the code with issue 16's first patches recorded them, before programmes and cycles
# upserted only what changes (`programme-upserts-only-changes`, `cycle-upserts-only-changes`), pinned.
BEFORE_UPSERTS: list[Path] = ([] if workflow.unsafe.in_sandbox()
                              else sorted((HISTORIES.parent / "before-upsert-changes").glob("*.json")))

# The programme paths as recorded before `enrolment-mails-at-once` (a save before the welcome document, then the
# document and each mail in turn), pinned: programmes enrolled then still run.
BEFORE_MAILS_AT_ONCE: list[Path] = ([] if workflow.unsafe.in_sandbox()
                                    else sorted((HISTORIES.parent / "before-mails-at-once").glob("*.json")))


def load(path: Path) -> WorkflowHistory:
    # The file name is the workflow ID (the export script saves them so).
    return WorkflowHistory.from_json(path.stem, path.read_text())


def replayer(*workflows: type) -> Replayer:
    return Replayer(workflows=list(workflows), data_converter=DATA_CONVERTER, workflow_runner=workflow_runner())


def activities(path: Path) -> Counter[str]:
    events = json.loads(path.read_text())["events"]
    return Counter(e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                   for e in events if "activityTaskScheduledEventAttributes" in e)


def calls(path: Path) -> Counter[str]:
    """Every activity a history ran, as a task or locally (issue 16 made enrolment's and request opening's local)."""
    return activities(path) + Counter(local_activities(path))


def event_types(path: Path) -> Counter[str]:
    return Counter(e["eventType"].removeprefix("EVENT_TYPE_") for e in json.loads(path.read_text())["events"])


def unchanged_upserts(path: Path) -> tuple[int, int]:
    """(billed upserts that set no search attribute to a new value, all billed upserts) in a saved history
    (bench/actions.py counts them so for the programme-year figure)."""
    events = load(path).events
    return actions.unchanged_upserts(events), actions.count_actions(events).get("search_attribute_upsert", 0)


# The pinned runs that upserted a value it already had (a refused enrolment upserts nothing).
UPSERTED_UNCHANGED = [p for p in BEFORE_UPSERTS if unchanged_upserts(p)[0]]


def test_the_main_paths_are_recorded() -> None:
    names = {p.stem for p in FILES}
    assert names >= {"program-replay-onboarding", "program-replay-onboarding-p1-m01", "program-replay-refused",
                     "program-replay-lapsed", "program-replay-closed", "program-replay-renewed"}, names

    # Onboarding: enrolment check (E1), workspace (D10), every step by Update, the inventory
    # analysis (A8), month 1 started as a child and reported done by signal.
    onboarding = HISTORIES / "program-replay-onboarding.json"
    acts, types = calls(onboarding), event_types(onboarding)
    # (The check, plan and default due dates are one local activity since `enrolment-prepared-in-one-call`.)
    assert {"prepare_enrolment", "schedule_deadlines", "register_programme", "file_document",
            "send_mail", "save_projection", "analyse_configuration"} <= set(acts)
    assert types["WORKFLOW_EXECUTION_UPDATE_COMPLETED"] == 6
    assert types["START_CHILD_WORKFLOW_EXECUTION_INITIATED"] >= 1 and types["WORKFLOW_EXECUTION_SIGNALED"] >= 1

    cycle = HISTORIES / "program-replay-onboarding-p1-m01.json"
    # The report drafted after the month (D7) and published on approval; the open steps in the inbox (issue 16).
    assert {"schedule_deadlines", "draft_monthly_report", "publish_report", "send_mail",
            "save_cycle_projection"} <= set(calls(cycle))
    # The programme hears of the call as it is held (cycle_call_held) and of the cycle's end (cycle_completed).
    assert event_types(cycle)["SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED"] == 2
    assert event_types(cycle)["WORKFLOW_EXECUTION_COMPLETED"] == 1

    # Refused: the enrolment's preparation, which stops at the check, and nothing else, completed (not failed).
    refused = HISTORIES / "program-replay-refused.json"
    assert calls(refused) == Counter({"prepare_enrolment": 1})
    assert event_types(refused)["WORKFLOW_EXECUTION_COMPLETED"] == 1

    # Closed paths: final report and archived workspace.
    for name in ("program-replay-closed", "program-replay-lapsed"):
        acts = calls(HISTORIES / f"{name}.json")
        assert acts["generate_final_report"] == 1 and acts["close_workspace"] == 1, name
        assert event_types(HISTORIES / f"{name}.json")["WORKFLOW_EXECUTION_COMPLETED"] == 1
    assert event_types(HISTORIES / "program-replay-closed.json")["WORKFLOW_EXECUTION_UPDATE_COMPLETED"] == 1

    # Renewed: the maintenance re-check (E1) and continue-as-new.
    renewed = HISTORIES / "program-replay-renewed.json"
    # The enrolment's check (in the local `prepare_enrolment` since issue 16), then the maintenance re-checks ahead
    # of renewal (activity tasks).
    assert local_activities(renewed).count("prepare_enrolment") == 1 and activities(renewed)["check_enrolment"] >= 1
    assert event_types(renewed)["WORKFLOW_EXECUTION_CONTINUED_AS_NEW"] == 1

    # Support requests (A4, C12, C13), each closed.
    def request(prefix: str) -> Path:
        (path,) = [p for p in FILES if p.stem.startswith(f"request-TC-{prefix}-")]
        assert event_types(path)["WORKFLOW_EXECUTION_COMPLETED"] == 1, path.name
        return path

    sla = request("RQSLA")  # warned and escalated (C12), answered late, pending and resumed, closed
    assert {"record_request_opened", "record_sla_event", "record_status_change", "send_mail",
            "save_request"} <= set(calls(sla))
    # Warned, breached, responded late; the clock's start is written with the request (one-write patch).
    assert calls(sla)["record_sla_event"] == 3
    assert event_types(sla)["TIMER_FIRED"] >= 2 and event_types(sla)["WORKFLOW_EXECUTION_UPDATE_COMPLETED"] == 5
    dispatch = request("RQDSP")  # approved by both parties, booked, visited, billed (A4, C3)
    assert {"record_dispatch", "book_dispatch", "record_billable_extra"} <= set(calls(dispatch))
    refused = request("RQREF")  # C13: recorded, refused, closed; nobody mailed
    assert "send_mail" not in calls(refused) and calls(refused)["record_request_opened"] == 1


# The programme paths as recorded before `welcome-in-one-activity` (the welcome document and each mail an activity
# of its own, scheduled at once), pinned: programmes enrolled then still run.
BEFORE_WELCOME: list[Path] = ([] if workflow.unsafe.in_sandbox()
                              else sorted((HISTORIES.parent / "before-welcome-in-one-activity").glob("*.json")))

SAVED = FILES + PRE_PATCH + LOCAL + BEFORE_16 + BEFORE_UPSERTS + BEFORE_MAILS_AT_ONCE + BEFORE_WELCOME


@pytest.mark.parametrize("path", SAVED, ids=[f"{p.parent.name}/{p.stem}" for p in SAVED])
async def test_saved_history_replays_without_nondeterminism(path: Path) -> None:
    result = await replayer(*WORKFLOWS).replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


@workflow.defn(name="ProgramWorkflow")
class ProgramWorkflowWithAnExtraTimer(ProgramWorkflow):
    """A careless change: a timer before the enrolment check, where history has the activity."""

    @workflow.run
    async def run(self, input: ProgramInput) -> ProgramResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(input)


@workflow.defn(name="ProgramWorkflow")
class ProgramWorkflowWithoutWelcome(ProgramWorkflow):
    """A careless change: no welcome at enrolment (its one `send_welcome` activity skipped)."""

    @workflow.run
    async def run(self, input: ProgramInput) -> ProgramResult:
        return await super().run(input)

    async def _send_welcome(self) -> None:
        return None


@workflow.defn(name="MonthlyCycleWorkflow")
class MonthlyCycleWithoutMail(MonthlyCycleWorkflow):
    """A careless change: the cycle mails nothing (invite and report mails skipped)."""

    @workflow.run
    async def run(self, input: CycleInput) -> CycleResult:
        return await super().run(input)

    async def _mail(self, *args: Any, **kwargs: Any) -> None:
        return None


@workflow.defn(name="SupportRequestWorkflow")
class SupportRequestWithoutSlaEvents(SupportRequestWorkflow):
    """A careless change: SLA events (C12) no longer stored."""

    @workflow.run
    async def run(self, input: RequestInput) -> RequestResult:
        return await super().run(input)

    async def _sla(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.mark.parametrize(("variant", "history"), [
    (ProgramWorkflowWithAnExtraTimer, "program-replay-refused"),
    (ProgramWorkflowWithoutWelcome, "program-replay-onboarding"),
    (MonthlyCycleWithoutMail, "program-replay-onboarding-p1-m01"),
    (SupportRequestWithoutSlaEvents, "request-TC-RQSLA-"),
], ids=["program-extra-timer", "program-skips-an-activity", "cycle-skips-its-mail", "request-skips-sla-events"])
async def test_a_changed_workflow_is_caught_as_nondeterministic(variant: type, history: str) -> None:
    """The replay test is not vacuous: the same histories refuse a workflow that changed."""
    others = [w for w in WORKFLOWS if w.__name__ != variant.__mro__[1].__name__]
    # A request's file is named by its tracking number, whose year is the day it was recorded.
    (path,) = [p for p in FILES if p.stem == history or (history.endswith("-") and p.stem.startswith(history))]
    with pytest.raises(workflow.NondeterminismError):
        await replayer(variant, *others).replay_workflow(load(path))


# ---- the `open-request-in-one-write` patch (workflows/support_request.py) ---------------------------
def test_requests_are_recorded_on_both_sides_of_the_one_write_patch() -> None:
    """Before: six activities to open a request; after: the deadline as a local activity, one write
    (request, status change, SLA start) and the TL's mail, with the patch marker first."""
    assert {p.stem.split("-")[2] for p in PRE_PATCH} == {"RQSLA", "RQDSP"}
    for old in PRE_PATCH:
        (new,) = [p for p in BEFORE_16 if p.name == old.name]  # the one-write path, before issue 16's local opening
        before, after = json.loads(old.read_text())["events"], json.loads(new.read_text())["events"]
        scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                     for e in before if "activityTaskScheduledEventAttributes" in e]
        assert scheduled[:6] == ["record_request_opened", "record_status_change", "business_deadline",
                                 "record_sla_event", "send_mail", "save_request"], scheduled[:6]
        assert not any("markerRecordedEventAttributes" in e for e in before)
        scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                     for e in after if "activityTaskScheduledEventAttributes" in e]
        markers = [e["markerRecordedEventAttributes"]["markerName"] for e in after
                   if "markerRecordedEventAttributes" in e]
        assert scheduled[:2] == ["record_request_opened", "send_mail"] and markers[:2] == [
            "core_patch", "core_local_activity"], (scheduled[:2], markers[:2])
        assert len(after) < len(before), (old.name, len(after), len(before))


def local_activities(path: Path) -> list[str]:
    """The types of a history's local activities, from their markers (core writes the type in the `data` detail)."""
    return [json.loads(base64.b64decode(e["markerRecordedEventAttributes"]["details"]["data"]["payloads"][0]["data"]))
            ["activity_type"] for e in json.loads(path.read_text())["events"]
            if e.get("markerRecordedEventAttributes", {}).get("markerName") == "core_local_activity"]


def test_the_local_activity_histories_took_the_new_path() -> None:
    """docs/local-activities.md: the enrolment's four calls and the request's row are markers, not activity tasks."""
    by_name = {p.stem.split("-")[2] if p.stem.startswith("request-") else p.stem: p for p in LOCAL}
    assert set(by_name) == {"program-replay-local", "RQSLA", "RQDSP", "RQREF"}, sorted(by_name)
    enrolment = by_name["program-replay-local"]
    assert local_activities(enrolment) == ["check_enrolment", "plan_period", "schedule_deadlines",
                                           "register_programme"]
    assert list(activities(enrolment).elements()) == ["save_projection", "file_document", "send_mail", "send_mail"]
    for name in ("RQSLA", "RQDSP"):
        assert local_activities(by_name[name])[:2] == ["business_deadline", "record_request_opened"], name
        assert "record_request_opened" not in activities(by_name[name]), name
    assert local_activities(by_name["RQREF"]) == ["record_request_opened"] and not activities(by_name["RQREF"])


@pytest.mark.parametrize("path", LOCAL, ids=[p.stem for p in LOCAL])
async def test_without_the_guards_the_local_activity_histories_break(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The code from before the issue-16 patches (their guards off, every other as recorded) cannot replay a run
    that took the new path."""
    real, mine = workflow.patched, {PATCH_ENROL_LOCALLY, PATCH_OPEN_LOCALLY}
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id not in mine and real(patch_id))
    with pytest.raises(workflow.NondeterminismError):
        await replayer(*WORKFLOWS).replay_workflow(load(path))


@pytest.mark.parametrize("path", PRE_PATCH, ids=[p.stem for p in PRE_PATCH])
async def test_without_the_guard_requests_opened_before_the_patch_break(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is needed: code that always takes the new path cannot replay a request opened before."""
    monkeypatch.setattr(workflow, "patched", lambda patch_id: True)
    with pytest.raises(workflow.NondeterminismError):
        await replayer(*WORKFLOWS).replay_workflow(load(path))


# ---- `enrolment-mails-at-once` (workflows/program.py) -----------------------------------------------------------
def enrolment_tail(path: Path) -> list[tuple[str, int]]:
    """The activity tasks a history schedules up to its first timer, each with the workflow task that scheduled it."""
    out = []
    for e in json.loads(path.read_text())["events"]:
        if "timerStartedEventAttributes" in e:
            break
        if "activityTaskScheduledEventAttributes" in e:
            a = e["activityTaskScheduledEventAttributes"]
            out.append((a["activityType"]["name"], int(a["workflowTaskCompletedEventId"])))
    return out


@pytest.mark.parametrize("name", ["program-replay-onboarding", "program-replay-renewed", "program-replay-lapsed"])
def test_an_enrolment_schedules_its_welcome_in_one_task(name: str) -> None:
    """Since `enrolment-mails-at-once`: no save before the mails (the registration wrote the start), and the
    welcome scheduled by one workflow task: since `welcome-in-one-activity` one activity (the document and both
    mails), before it three. The same path recorded before the first patch saved first, then went one by one."""
    now = enrolment_tail(HISTORIES / f"{name}.json")
    assert [a for a, task in now if task == now[0][1]] == ["send_welcome"], now
    three = enrolment_tail(HISTORIES.parent / "before-welcome-in-one-activity" / f"{name}.json")
    assert sorted(a for a, _ in three[:3]) == ["file_document", "send_mail", "send_mail"], three
    assert len({task for _, task in three[:3]}) == 1, three
    before = enrolment_tail(HISTORIES.parent / "before-mails-at-once" / f"{name}.json")
    # (An Update of the onboarding scenario may slip its own mail in between.)
    assert before[0][0] == "save_projection" and "file_document" in [a for a, _ in before[1:4]], before
    assert len({task for _, task in before[:4]}) == 4, before


@pytest.mark.parametrize("path", BEFORE_WELCOME, ids=[p.stem for p in BEFORE_WELCOME])
async def test_without_the_guard_programmes_welcomed_by_three_activities_break(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Code that always sends the welcome as one activity cannot replay a run that scheduled its document and
    mails as three: `welcome-in-one-activity` guards them."""
    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id == PATCH_WELCOME_IN_ONE_ACTIVITY
                        or real(patch_id))
    with pytest.raises((workflow.NondeterminismError, RuntimeError), match=r"Nondeterminism|decoding"):
        await replayer(*WORKFLOWS).replay_workflow(load(path))


@pytest.mark.parametrize("forced", [PATCH_ENROL_MAILS_AT_ONCE, PATCH_PREPARE_IN_ONE_CALL])
@pytest.mark.parametrize("path", BEFORE_MAILS_AT_ONCE, ids=[p.stem for p in BEFORE_MAILS_AT_ONCE])
async def test_without_either_guard_programmes_enrolled_before_break(
        path: Path, forced: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each guard is needed: code that always schedules the document and mails at once cannot replay a run that
    saved first and sent them in turn, nor can code that always prepares the enrolment in one call replay a run
    that made the three calls. (A refused enrolment never reaches either: it is not pinned.)"""
    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id == forced or real(patch_id))
    with pytest.raises((workflow.NondeterminismError, RuntimeError), match=r"Nondeterminism|decoding"):
        await replayer(*WORKFLOWS).replay_workflow(load(path))


# ---- `programme-upserts-only-changes`, `cycle-upserts-only-changes` (workflows/search_attributes.py) -------------
@pytest.mark.parametrize("name", ["program-replay-onboarding", "program-replay-onboarding-p1-m01",
                                  "program-replay-renewed"])
def test_programmes_and_cycles_upsert_only_what_changes(name: str) -> None:
    """Each upsert is a billable Action: a run recorded since the patches upserts a search attribute only to change
    it; the same path recorded before upserted the same values again (the check can tell them apart)."""
    unchanged, total = unchanged_upserts(HISTORIES / f"{name}.json")
    assert total > 0 and unchanged == 0, (name, unchanged, total)
    before, total_before = unchanged_upserts(HISTORIES.parent / "before-upsert-changes" / f"{name}.json")
    assert before > 0 and total_before > total, (name, before, total_before, total)


@pytest.mark.parametrize("path", UPSERTED_UNCHANGED, ids=[p.stem for p in UPSERTED_UNCHANGED])
async def test_without_the_guard_programmes_that_upserted_everything_break(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard is needed: code that always leaves out unchanged upserts cannot replay a run that made them."""
    real, mine = workflow.patched, {PROGRAMME_UPSERTS_CHANGES, CYCLE_UPSERTS_CHANGES}
    monkeypatch.setattr(workflow, "patched", lambda patch_id: patch_id in mine or real(patch_id))
    with pytest.raises(workflow.NondeterminismError):
        await replayer(*WORKFLOWS).replay_workflow(load(path))


# ---- reading a history for "idle" (tests/harness.py `in_flight`, behind history_len and the crash tests) ----
def test_in_flight_sees_what_a_workflow_still_has_to_do() -> None:
    """The waits built on `in_flight` cannot end early: at every point of a recorded history where an
    activity, an Update, a child start or a workflow task is pending it names it; it is empty only
    when the workflow waits on a timer or from outside, or is closed."""
    # Recorded before issue 16, when the enrolment's check was the first activity task (now a local activity).
    events = load(HISTORIES.parent / "before-issue-16" / "program-replay-onboarding.json").events
    ET = EventType

    def where(event_type: EventType.ValueType) -> list[int]:
        return [i for i, e in enumerate(events) if e.event_type == event_type]

    def at(event_type: EventType.ValueType) -> list[str]:
        return in_flight(events[:where(event_type)[0] + 1])

    assert at(ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == ["activity check_enrolment (scheduled at event 5)"]
    # A retried activity has no STARTED event until its last attempt: SCHEDULED alone is in flight.
    assert at(ET.EVENT_TYPE_ACTIVITY_TASK_STARTED) == ["activity check_enrolment (scheduled at event 5)"]
    assert at(ET.EVENT_TYPE_WORKFLOW_TASK_STARTED) == ["workflow task (WORKFLOW_TASK_STARTED at event 3)"]
    assert any(b.startswith("Update schedule_kickoff") for b in at(ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED))
    assert any(b.startswith("start of a child workflow")
               for b in at(ET.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED))
    # A signal (the month's cycle done) wakes the workflow: in flight until a workflow task handled it.
    signal = events[where(ET.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)[0]].event_id
    assert at(ET.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == [f"WORKFLOW_EXECUTION_SIGNALED at event {signal}, "
                                                             f"not yet handled"]
    # Between an Update's acceptance and its completion, never idle, whatever else happens meanwhile.
    accepted = where(ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    completed = where(ET.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    assert len(accepted) == len(completed) == 6
    assert all(in_flight(events[:cut + 1]) for a, c in zip(accepted, completed, strict=True) for cut in range(a, c))
    # Waiting on its timer (the end of this history), or closed: nothing in flight.
    assert events[-1].event_type == ET.EVENT_TYPE_TIMER_STARTED and in_flight(events) == []
    closed = load(HISTORIES / "program-replay-closed.json").events
    assert closed[-1].event_type == ET.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED and in_flight(closed) == []
    assert in_flight(closed[:-2]) == [f"workflow task (WORKFLOW_TASK_STARTED at event {closed[-3].event_id})"]
