"""What `make bench` measures and reports: the sizes of a run, its figures, and the run itself
(the state every measurement writes to, and `guarded`, which turns a failed step into error figures)."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Log = Callable[[str], None]
WHAT_IF_CHANGE = "`workflows` added to `SANDBOX_PASSTHROUGH` (worker.py)"


# ------------------------------------------------------------------------------ sizes


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does. The defaults are `make bench`; `smoke()` takes seconds."""

    noop: int = 200  # no-op workflows per baseline round (two rounds: before and after)
    programmes: int = 100  # programmes enrolled for program_start_ratio
    requests: int = 100  # requests opened for request_open_ratio ...
    request_customers: int = 10  # ... spread over this many of those programmes
    rss_programmes: int = 1000  # open programmes held by the worker for worker_rss_mb_1000
    memory_workflows: int = 300  # no-op workflows, then as many programmes, held for cached_programme_kib_ratio
    sla_minutes: int = 1  # TECHCONNECT_POLICY__FIRST_RESPONSE_MINUTES of the SLA scenario
    sla_requests: int = 3  # requests whose breach is timed
    report_sizes: tuple[int, ...] = (5_000, 50_000)
    report_databases: tuple[str, ...] = ("sqlite", "postgresql")
    report_runs: int = 3  # warm runs per report size (the median is the figure)
    parts: tuple[str, ...] = ("dev", "sla", "rss", "inbox", "period", "reports", "whatif")  # what to run (Bench.run)
    # Paths pyinstrument profiles (after the measurements): program_start, request_open, report.
    profiles: tuple[str, ...] = ("program_start", "request_open", "report")
    profile_size: int = 50
    # The what-if part (last) runs only if the bench is younger than this, and its RSS run (2-4 min) only if
    # younger than the second: `make bench` stays under 15 minutes on 2 cores even when the machine is busy.
    what_if_before_seconds: float = 540
    what_if_rss_before_seconds: float = 620
    concurrency: int = 50  # client calls in flight at once
    # Figures 1 and 2: rounds of (no-op, programmes, requests, no-op), the median ratio is the figure. This machine's
    # speed moves by a third within minutes (a no-op at 92/s, then 133/s): one round is not a measurement.
    rate_rounds: int = 3
    # Issue 16's lists (bench/inbox.py): programmes (first cycle running), TLs, open requests, HTTP clients;
    # the first `inbox_live` programmes and requests are started through the service, the rest are copies of
    # their rows (seeding 1,000 of each live took 8 minutes of the 15).
    inbox_programmes: int = 1000
    inbox_tls: int = 20
    inbox_requests: int = 1000
    inbox_live: int = 100
    inbox_clients: int = 20
    inbox_rounds: int = 20  # calls per client per endpoint

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(noop=4, programmes=3, requests=3, request_customers=2, rss_programmes=4, memory_workflows=3,
                   sla_minutes=0, sla_requests=1, report_sizes=(40,), report_runs=1, profile_size=2, rate_rounds=1,
                   what_if_rss_before_seconds=0,
                   inbox_programmes=4, inbox_tls=2, inbox_requests=4, inbox_live=2, inbox_clients=2, inbox_rounds=3)


# ----------------------------------------------------------------------------- figures


@dataclass
class Figure:
    """One figure of results.md, with the baseline measured in the same run."""

    name: str
    value: float | None
    unit: str
    baseline: str
    target: str = ""
    ok: bool | None = None
    detail: str = ""
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.name}: error ({self.error})"
        return f"{self.name}: {fmt(self.value)}"


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer() and abs(value) >= 100:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


@dataclass
class Results:
    sizes: Sizes
    figures: list[Figure] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)  # machine, versions, load
    notes: list[str] = field(default_factory=list)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    what_if: dict[str, Any] | None = None
    started: float = field(default_factory=time.monotonic)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)


def k_label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


class Run:
    """What every measurement reads and writes: the sizes, a work directory, the log and the results."""

    def __init__(self, sizes: Sizes, tmp: Path, log: Log | None = None) -> None:
        self.sizes = sizes
        self.tmp = tmp
        self.log: Log = log or (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
        self.results = Results(sizes=sizes)

    def elapsed(self) -> float:
        return time.monotonic() - self.results.started

    async def guarded(self, names: list[str], step: Callable[[], Awaitable[None]]) -> None:
        """Run a step; if it fails, its figures are reported as errors and the bench goes on."""
        began = time.monotonic()
        try:
            await step()
            self.log(f"{', '.join(names)}: done in {time.monotonic() - began:.1f} s")
        except Exception as exc:
            import traceback

            self.log(f"FAILED {names}: {exc!r}\n{traceback.format_exc()}")
            for name in names:
                if self.results.get(name) is None:
                    self.results.add(Figure(name, None, "", "", error=f"{type(exc).__name__}: {exc}"[:300]))
