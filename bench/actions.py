"""What a programme-year costs on Temporal Cloud, in billable Actions, counted from saved workflow histories.

`python -m bench.actions` prints `actions_per_programme_year: N` and the breakdown; `make bench` records the
same figure in bench/results.md (it reads saved histories: no server, no time).

The counting rule is Temporal Cloud's own list of what is an Action, "Temporal Cloud Actions",
https://docs.temporal.io/cloud/actions (source: temporalio/documentation, docs/evaluate/cloud/actions.mdx).
That page warns that history events "do not always map 1:1 to Action Types" and that some Actions never
appear in a history (queries, activity heartbeats, schedule operations, export): what is counted here is
what a history shows, the figure Temporal Cloud's UI annotates on a history ("Billable Actions" column,
https://docs.temporal.io/cloud/actions-usage).

A programme-year (`programme_year_actions`): the programme period's run + its 12 monthly cycles + 50
support requests. The saved histories (tests/replay/histories, `python -m tests.replay.export_histories`)
do not hold one whole real year; `load_saved` says which ones stand in for which part, and the report's
notes repeat it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

if TYPE_CHECKING:
    from bench.results import Run

DOC_URL = "https://docs.temporal.io/cloud/actions"
HISTORIES = Path(__file__).resolve().parent.parent / "tests" / "replay" / "histories"
CYCLES_PER_YEAR = 12
REQUESTS_PER_YEAR = 50

# Action kinds, in the order of the breakdown (the doc's categories: Workflow, Activity, Timer, Signal, Update,
# Schedule, Nexus).
ACTION_KINDS = (
    "workflow_started", "child_workflow_started", "search_attribute_upsert", "workflow_options_updated",
    "workflow_reset", "activity_scheduled", "activity_retry", "local_activity_markers", "local_activity_retry",
    "timer_started", "signal", "update", "schedule_start", "nexus_operation",
)
# Search attributes whose upsert is not an Action (the doc: "The `TemporalChangeVersion` Search Attribute,
# used for Workflow versioning, is also exempt"): `workflow.patched` upserts it alone on this server.
EXEMPT_SEARCH_ATTRIBUTES = frozenset({"TemporalChangeVersion"})
SCHEDULED_BY = "TemporalScheduledById"

E = EventType


def count_actions(events: Iterable[HistoryEvent]) -> dict[str, int]:
    """Billable Actions in one workflow run's history, by action kind (only the kinds that occur)."""
    counts: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    for ev in events:
        t = ev.event_type
        if t == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            a = ev.workflow_execution_started_event_attributes
            # "Workflow started: occurs via client start, Continue-As-New, Child Workflow start." A child's start
            # is billed in its parent's history, with the parent's START_CHILD_WORKFLOW_EXECUTION_INITIATED (two
            # Actions: the intent and the attempt to start it, below): not again here. A Continue-As-New's Action
            # is shown on the new run's STARTED event ("The UI shows a billable action only for the
            # EVENT_TYPE_WORKFLOW_EXECUTION_STARTED event of the newly started Workflow"): counted here.
            if not a.HasField("parent_workflow_execution"):
                counts["workflow_started"] += 1
            # Schedule: "Each execution of a Schedule accrues three Actions": two for the Schedule Start, one for
            # the Workflow started (counted above). TemporalScheduledById marks a run started by a Schedule.
            if SCHEDULED_BY in a.search_attributes.indexed_fields:
                counts["schedule_start"] += 2
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            # Billed once, as the next run's WORKFLOW_EXECUTION_STARTED (above), which is the next period's.
            pass
        elif t == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            # "Start Child Workflow Execution initiated ... Results in two Actions, one for durably storing the
            # intent to start a Child Workflow and one for the attempt to start it."
            counts["child_workflow_started"] += 2
        elif t == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            # "Search Attribute upsert requested: occurs for each invocation of UpsertSearchAttributes command.
            # Multiple Search Attributes updated in a single command count as one Action." Attributes set at
            # start are excluded (not an upsert event); TemporalChangeVersion is exempt.
            names = set(ev.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
            if names - EXEMPT_SEARCH_ATTRIBUTES:
                counts["search_attribute_upsert"] += 1
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_OPTIONS_UPDATED:
            # "Workflow Execution Options updated: occurs for every Workflow-Execution-Options-Updated event."
            counts["workflow_options_updated"] += 1
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            # "Reset Workflow: EVENT_TYPE_WORKFLOW_TASK_FAILED when cause == WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW."
            if (ev.workflow_task_failed_event_attributes.cause
                    == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW):
                counts["workflow_reset"] += 1
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            # "Activity started or retried: occurs each time a Workflow Activity is started or retried."
            # Schedule Activity: EVENT_TYPE_ACTIVITY_TASK_SCHEDULED (the first attempt).
            counts["activity_scheduled"] += 1
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # Retry Activity: "Intermediate retry attempts do not produce separate history events. Total attempt
            # count is recorded in ActivityTaskStartedEventAttributes.attempt ... subtract 1, because the first
            # attempt is not a retry." (A run terminated while an activity retries never writes this event.)
            counts["activity_retry"] += max(ev.activity_task_started_event_attributes.attempt - 1, 0)
        elif t == E.EVENT_TYPE_MARKER_RECORDED:
            # "Local Activity started: all Local Activities associated with one Workflow Task count as a single
            # Action. Temporal Cloud counts all RecordMarkers from each Workflow Task as one action, and not N."
            # Grouped by the workflow task completion that recorded them (a patch marker in the same task
            # costs nothing more).
            marker_tasks.add(ev.marker_recorded_event_attributes.workflow_task_completed_event_id)
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            # Retry Local Activity: "WorkflowTaskCompletedEventAttributes.metering_metadata
            # .nonfirst_local_activity_execution_attempts".
            meter = ev.workflow_task_completed_event_attributes.metering_metadata
            counts["local_activity_retry"] += meter.nonfirst_local_activity_execution_attempts
        elif t == E.EVENT_TYPE_TIMER_STARTED:
            # "Timer started. Includes implicit Timers started by an SDK when timeouts are set."
            counts["timer_started"] += 1
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            # "Signal sent: an Action occurs for every Signal, whether sent from a Client or from a Workflow."
            # A signal from another workflow is counted once, in the sender's history (below), so that the
            # programme and its cycles, counted apart, do not bill it twice; here only a client's signal.
            if not ev.workflow_execution_signaled_event_attributes.HasField("external_workflow_execution"):
                counts["signal"] += 1
        elif t == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            # Signal External Workflow: billed once (the UI shows it in the signaled history; counted here).
            counts["signal"] += 1
        elif t == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            # "Update received by Worker: occurs for every successful Update and every rejected Update."
            # Rejected Updates are "never written to history": not countable here.
            counts["update"] += 1
        elif t in (E.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED, E.EVENT_TYPE_NEXUS_OPERATION_CANCEL_REQUESTED):
            # "Nexus Operation scheduled / canceled: one Action on the caller Namespace."
            counts["nexus_operation"] += 1
        # Everything else is no Action: workflow task scheduled/started/completed, activity completed/failed,
        # timer fired/canceled, child started/completed, workflow completed, Update completed.
    counts["local_activity_markers"] += len(marker_tasks)
    return {k: counts[k] for k in ACTION_KINDS if counts[k]}


def unchanged_upserts(events: Iterable[HistoryEvent]) -> int:
    """Billed search-attribute upserts that change no value (every attribute already had the value it sets)."""
    current: dict[str, bytes] = {}
    n = 0
    for ev in events:
        if ev.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            fields = ev.workflow_execution_started_event_attributes.search_attributes.indexed_fields
            current.update({k: v.SerializeToString(deterministic=True) for k, v in fields.items()})
        elif ev.event_type == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = ev.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            new = {k: v.SerializeToString(deterministic=True) for k, v in fields.items()}
            if set(new) - EXEMPT_SEARCH_ATTRIBUTES and all(current.get(k) == v for k, v in new.items()):
                n += 1
            current.update(new)
    return n


def activity_types(events: Iterable[HistoryEvent]) -> Counter[str]:
    return Counter(ev.activity_task_scheduled_event_attributes.activity_type.name for ev in events
                   if ev.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def update_span(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    """From the first accepted Update to the last completed one, without child starts: the onboarding steps."""
    accepted = [i for i, ev in enumerate(events) if ev.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    done = [i for i, ev in enumerate(events) if ev.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED]
    if not accepted or not done:
        return []
    return [ev for ev in events[accepted[0]:done[-1] + 1]
            if ev.event_type != E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED]


# ------------------------------------------------------------------------------ the programme-year


@dataclass(frozen=True)
class Item:
    """One line of the breakdown: a kind of workflow run, how many a year has, and what one costs (mean)."""

    kind: str
    sources: tuple[str, ...]  # workflow IDs of the histories counted
    runs: int  # how many such runs a programme-year has
    per_run: dict[str, float]  # mean Actions of one run, by action kind
    unchanged_upserts: float = 0.0  # mean per run: upserts that set no new value
    activities: dict[str, float] = field(default_factory=dict)  # mean scheduled per run, by activity type

    @property
    def year(self) -> dict[str, int]:
        return {k: round(v * self.runs) for k, v in self.per_run.items() if round(v * self.runs)}

    @property
    def total(self) -> int:
        return sum(self.year.values())

    @property
    def per_run_total(self) -> float:
        return sum(self.per_run.values())


@dataclass(frozen=True)
class ActionsReport:
    items: tuple[Item, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(item.total for item in self.items)

    @property
    def by_action(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for item in self.items:
            out.update(item.year)
        return {k: out[k] for k in ACTION_KINDS if out[k]}

    def table(self) -> str:
        """The breakdown as a Markdown table: a row per item, a column per action kind, totals."""
        kinds = list(self.by_action)
        head = ["item", "runs a year", "Actions a run", *kinds, "Actions a year"]
        rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for it in self.items:
            cells = [f"{it.kind} ({', '.join(it.sources)})", str(it.runs), f"{it.per_run_total:g}",
                     *(str(it.year.get(k, 0)) for k in kinds), str(it.total)]
            rows.append("| " + " | ".join(cells) + " |")
        rows.append("| " + " | ".join(["**programme-year**", "", "", *(str(self.by_action[k]) for k in kinds),
                                      f"**{self.total}**"]) + " |")
        return "\n".join(rows)

    def detail(self) -> str:
        """One line for bench/results.md."""
        items = "; ".join(f"{it.kind} {it.runs} x {it.per_run_total:g} = {it.total}" for it in self.items)
        kinds = ", ".join(f"{k} {v}" for k, v in self.by_action.items())
        return (f"counted from saved histories ({DOC_URL}): {items}; by action: {kinds}. "
                + " ".join(self.notes))


def _mean_item(kind: str, histories: Sequence[WorkflowHistory], runs: int) -> Item:
    n = len(histories)
    total: Counter[str] = Counter()
    acts: Counter[str] = Counter()
    unchanged = 0
    for h in histories:
        total.update(count_actions(h.events))
        acts.update(activity_types(h.events))
        unchanged += unchanged_upserts(h.events)
    return Item(kind, tuple(h.workflow_id for h in histories), runs,
                {k: total[k] / n for k in ACTION_KINDS if total[k]}, unchanged / n,
                {k: v / n for k, v in acts.most_common()})


def programme_year_actions(histories: Iterable[WorkflowHistory], *, onboarding: WorkflowHistory | None = None,
                           cycles_per_year: int = CYCLES_PER_YEAR,
                           requests_per_year: int = REQUESTS_PER_YEAR) -> ActionsReport:
    """A programme-year's Actions: one ProgramWorkflow run (the period), `cycles_per_year` MonthlyCycleWorkflow
    runs (the mean of those given, times 12) and `requests_per_year` SupportRequestWorkflow runs (the mean of
    those given, times 50). `onboarding`: a programme whose onboarding steps were done by Update, counted
    from its first accepted Update to its last completed one when the period's own history has no Update."""
    by_type: dict[str, list[WorkflowHistory]] = {}
    for h in histories:
        by_type.setdefault(workflow_type(h), []).append(h)
    programmes = by_type.get("ProgramWorkflow", [])
    cycles = by_type.get("MonthlyCycleWorkflow", [])
    requests = by_type.get("SupportRequestWorkflow", [])
    if len(programmes) != 1 or not cycles or not requests:
        raise ValueError(f"need 1 programme period, cycles and requests; got {len(programmes)}, "
                         f"{len(cycles)}, {len(requests)}")
    (period,) = programmes
    notes: list[str] = []
    items = [_mean_item("programme period", [period], 1)]
    starts = sum(ev.event_type == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED for ev in period.events)
    if starts != cycles_per_year:
        notes.append(f"The period's history starts {starts} cycles, not {cycles_per_year}.")
    if onboarding is not None and not items[0].per_run.get("update"):
        span = WorkflowHistory(onboarding.workflow_id, update_span(onboarding.events))
        item = _mean_item("onboarding steps", [span], 1)
        items.append(Item(item.kind, (f"{onboarding.workflow_id}, Updates only",), 1, item.per_run,
                          item.unchanged_upserts, item.activities))
        notes.append(f"The period's history ({period.workflow_id}) has no Update (its onboarding steps were "
                     f"never done): the steps are counted from {onboarding.workflow_id}, its first accepted "
                     "Update to its last completed one, without month 1's child start.")
    items.append(_mean_item("monthly cycle", cycles, cycles_per_year))
    if len(cycles) != cycles_per_year:
        notes.append(f"Cycles: {len(cycles)} saved cycle histor{'y' if len(cycles) == 1 else 'ies'} "
                     f"({', '.join(h.workflow_id for h in cycles)}), mean x {cycles_per_year}.")
    items.append(_mean_item("support request", requests, requests_per_year))
    notes.append(f"Requests: the mean of {len(requests)} saved request histories "
                 f"({', '.join(h.workflow_id for h in requests)}) x {requests_per_year}.")
    notes.append("Not in any history, so not counted: queries (a request opening asks its programme's "
                 "`get_status` only when the projection does not say the programme is live; the portal and CLI "
                 "query status), rejected Updates, activity heartbeats (no activity heartbeats today).")
    return ActionsReport(tuple(items), tuple(notes))


def load(path: Path) -> WorkflowHistory:
    # The file name is the workflow ID (tests/replay/export_histories.py saves them so).
    return WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))


def load_saved(directory: Path = HISTORIES) -> tuple[list[WorkflowHistory], WorkflowHistory]:
    """The saved histories that stand for a programme-year, and the onboarding programme.

    - period: program-replay-renewed (the first run of a programme that renews: enrolment, 12 cycles started,
      the renewal, continue-as-new); its onboarding steps were never done in that scenario;
    - onboarding: program-replay-onboarding (every onboarding step by Update), for those steps;
    - cycles: program-replay-onboarding-p1-m01, the one completed cycle saved (call scheduled and held,
      report drafted, approved, mailed), x 12;
    - requests: every request-*.json (SLA breach, dispatch, refused customisation), mean x 50.
    """
    histories = [load(directory / "program-replay-renewed.json"),
                 load(directory / "program-replay-onboarding-p1-m01.json"),
                 *(load(p) for p in sorted(directory.glob("request-*.json")))]
    return histories, load(directory / "program-replay-onboarding.json")


def saved_programme_year(directory: Path = HISTORIES) -> ActionsReport:
    histories, onboarding = load_saved(directory)
    return programme_year_actions(histories, onboarding=onboarding)


async def programme_year_figure(run: Run) -> None:
    """The `make bench` figure (bench/harness.py): counted from saved histories, no server."""
    from bench.results import Figure

    report = saved_programme_year()
    run.results.add(Figure("actions_per_programme_year", report.total, "Actions",
                           "1 Action: a no-op workflow (its start)", "", None, report.detail()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.actions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--histories", type=Path, default=HISTORIES, help="directory of saved histories")
    args = parser.parse_args(argv)
    report = saved_programme_year(args.histories)
    print(f"actions_per_programme_year: {report.total}")
    print()
    print(report.table())
    print()
    for it in report.items:
        top = ", ".join(f"{k} {v:g}" for k, v in list(it.activities.items())[:6])
        print(f"- {it.kind}: activities a run: {top}; upserts that change nothing: {it.unchanged_upserts:g} "
              f"of {it.per_run.get('search_attribute_upsert', 0):g} a run")
    for note in report.notes:
        print(f"- {note}")
    print(f"- rule: {DOC_URL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
