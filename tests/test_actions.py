"""bench/actions.py: Temporal Cloud's Action rule (https://docs.temporal.io/cloud/actions) on hand-built
histories, and the programme-year figure counted from the saved histories (tests/replay/histories)."""

from __future__ import annotations

from typing import Any

from temporalio.api.common.v1 import ActivityType, Payload, SearchAttributes, WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import (
    ActivityTaskScheduledEventAttributes,
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
    WorkflowExecutionSignaledEventAttributes,
    WorkflowExecutionStartedEventAttributes,
    WorkflowTaskCompletedEventAttributes,
    WorkflowTaskFailedEventAttributes,
)
from temporalio.client import WorkflowHistory

from bench.actions import (
    ACTION_KINDS,
    count_actions,
    programme_year_actions,
    saved_programme_year,
    unchanged_upserts,
)

E = EventType


def ev(event_type: EventType.ValueType, event_id: int = 0, **attributes: Any) -> HistoryEvent:
    return HistoryEvent(event_id=event_id, event_type=event_type, **attributes)


def started(workflow: str = "W", *, parent: bool = False, **search: bytes) -> HistoryEvent:
    attrs = WorkflowExecutionStartedEventAttributes(
        workflow_type=WorkflowType(name=workflow),
        search_attributes=SearchAttributes(indexed_fields={k: Payload(data=v) for k, v in search.items()}))
    if parent:
        attrs.parent_workflow_execution.CopyFrom(WorkflowExecution(workflow_id="parent"))
    return ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 1, workflow_execution_started_event_attributes=attrs)


def activity(name: str = "a", attempt: int = 1) -> list[HistoryEvent]:
    return [ev(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, activity_task_scheduled_event_attributes=(
                ActivityTaskScheduledEventAttributes(activity_type=ActivityType(name=name)))),
            ev(E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
               activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=attempt)),
            ev(E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)]


def upsert(**fields: bytes) -> HistoryEvent:
    return ev(E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
              upsert_workflow_search_attributes_event_attributes=UpsertWorkflowSearchAttributesEventAttributes(
                  search_attributes=SearchAttributes(indexed_fields={k: Payload(data=v) for k, v in fields.items()})))


def marker(task: int, name: str = "core_local_activity") -> HistoryEvent:
    return ev(E.EVENT_TYPE_MARKER_RECORDED, marker_recorded_event_attributes=MarkerRecordedEventAttributes(
        marker_name=name, workflow_task_completed_event_id=task))


def workflow_task(la_retries: int = 0) -> list[HistoryEvent]:
    done = WorkflowTaskCompletedEventAttributes()
    done.metering_metadata.nonfirst_local_activity_execution_attempts = la_retries
    return [ev(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), ev(E.EVENT_TYPE_WORKFLOW_TASK_STARTED),
            ev(E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, workflow_task_completed_event_attributes=done)]


# ----------------------------------------------------------------------------- the rule


def test_a_bare_workflow_is_its_start() -> None:
    assert count_actions([started(), *workflow_task(), ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)]) == {
        "workflow_started": 1}


def test_an_activity_retried_twice_is_three_actions() -> None:
    # Scheduled once (1), started on its third attempt: two retries (attempt - 1).
    assert count_actions([started(), *activity(attempt=3)]) == {"workflow_started": 1, "activity_scheduled": 1,
                                                                 "activity_retry": 2}
    # Activity completion, failure and timer firing are no Actions.
    assert count_actions([*activity(), ev(E.EVENT_TYPE_ACTIVITY_TASK_FAILED), ev(E.EVENT_TYPE_TIMER_FIRED),
                          ev(E.EVENT_TYPE_TIMER_CANCELED)]) == {"activity_scheduled": 1}


def test_a_child_is_two_actions_in_its_parent_and_none_in_its_own_history() -> None:
    parent = [started(), ev(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
              ev(E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED), ev(E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED)]
    assert count_actions(parent) == {"workflow_started": 1, "child_workflow_started": 2}
    assert count_actions([started(parent=True)]) == {}


def test_continue_as_new_is_billed_once_as_the_next_runs_start() -> None:
    assert count_actions([started(), ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW)]) == {
        "workflow_started": 1}


def test_upserts_count_per_command_and_the_change_version_is_exempt() -> None:
    events = [started(CustomerId=b'"c"'), upsert(TemporalChangeVersion=b'["p"]'),
              upsert(Phase=b'"a"', Steps=b"[]"), upsert(Phase=b'"a"', Steps=b"[]"), upsert(Phase=b'"b"'),
              upsert(CustomerId=b'"c"')]
    # Four commands count (two attributes in one command are one Action); the patch's upsert does not.
    assert count_actions(events) == {"workflow_started": 1, "search_attribute_upsert": 4}
    # The second identical upsert and the one repeating a start attribute change nothing.
    assert unchanged_upserts(events) == 2


def test_local_activities_count_once_per_workflow_task_plus_their_retries() -> None:
    events = [started(), *workflow_task(), marker(4, "core_patch"), marker(4), marker(4),
              *workflow_task(la_retries=2), marker(8)]
    assert count_actions(events) == {"workflow_started": 1, "local_activity_markers": 2, "local_activity_retry": 2}


def test_signals_updates_timers_and_the_rest() -> None:
    from_client = ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
                     workflow_execution_signaled_event_attributes=WorkflowExecutionSignaledEventAttributes())
    from_workflow = WorkflowExecutionSignaledEventAttributes()
    from_workflow.external_workflow_execution.CopyFrom(WorkflowExecution(workflow_id="cycle"))
    reset = WorkflowTaskFailedEventAttributes(cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW)
    other_failure = WorkflowTaskFailedEventAttributes(
        cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND)
    events = [
        from_client,  # a client's signal: 1
        ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, workflow_execution_signaled_event_attributes=from_workflow),
        ev(E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED),  # billed on the sender's side: 1
        ev(E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED),
        ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED), ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
        ev(E.EVENT_TYPE_TIMER_STARTED), ev(E.EVENT_TYPE_TIMER_STARTED),
        ev(E.EVENT_TYPE_WORKFLOW_TASK_FAILED, workflow_task_failed_event_attributes=reset),
        ev(E.EVENT_TYPE_WORKFLOW_TASK_FAILED, workflow_task_failed_event_attributes=other_failure),
        ev(E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED),
        ev(E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED), ev(E.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED),
    ]
    assert count_actions(events) == {"signal": 2, "update": 1, "timer_started": 2, "workflow_reset": 1,
                                     "workflow_options_updated": 1, "nexus_operation": 2}


def test_a_scheduled_run_costs_the_schedules_two_actions_more() -> None:
    assert count_actions([started(TemporalScheduledById=b'"sched"')]) == {"workflow_started": 1,
                                                                         "schedule_start": 2}


# ------------------------------------------------------------------------ the programme-year


def history(workflow_id: str, events: list[HistoryEvent]) -> WorkflowHistory:
    return WorkflowHistory(workflow_id, events)


def test_the_year_scales_cycles_and_requests_by_their_mean() -> None:
    period = history("p", [started("ProgramWorkflow"),
                           *[ev(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED)] * 12])
    cycle = history("p-m01", [started("MonthlyCycleWorkflow", parent=True), *activity()])
    small = history("r1", [started("SupportRequestWorkflow")])
    large = history("r2", [started("SupportRequestWorkflow"), *activity(), *activity()])
    report = programme_year_actions([period, cycle, small, large])
    assert [(i.kind, i.runs, i.total) for i in report.items] == [
        ("programme period", 1, 1 + 24), ("monthly cycle", 12, 12), ("support request", 50, 50 + 50)]
    assert report.by_action == {"workflow_started": 51, "child_workflow_started": 24, "activity_scheduled": 62}
    assert report.total == 25 + 12 + 100 == sum(report.by_action.values())


def test_the_saved_programme_year() -> None:
    report = saved_programme_year()
    # The total is the sum of its breakdown, both ways.
    assert report.total == sum(i.total for i in report.items) == sum(report.by_action.values())
    assert set(report.by_action) <= set(ACTION_KINDS)
    kinds = {i.kind: i for i in report.items}
    assert kinds["monthly cycle"].runs == 12 and kinds["support request"].runs == 50
    period = kinds["programme period"]
    # One start, 12 cycles started as children (two Actions each); the renewal's continue-as-new is next year's.
    assert period.per_run["workflow_started"] == 1 and period.per_run["child_workflow_started"] == 24
    assert kinds["onboarding steps"].per_run["update"] == 6
    # A sane range: a year is more than its 12 cycles and 50 requests' starts and updates, well under 10,000.
    assert 500 < report.total < 10_000, report.table()
    assert f"**{report.total}**" in report.table()
