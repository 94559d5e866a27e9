"""Issue 16's list figures: the inbox, the ops inbox, the desk queue and the programme list at the size of a real
support organisation, against the portal's cheapest authenticated JSON endpoint in the same run.

Seeded through the service, live (these lists are what running workflows project): `inbox_programmes`
programmes led by `inbox_tls` TLs, their period begun yesterday so each runs its first monthly cycle, and one
open request on each. Then the portal runs as its own process (`techconnect portal`) on the same database, and
`inbox_clients` clients ask each endpoint at once, `inbox_rounds` times each; the p95 of each endpoint over
the p95 of `/api/me` is its ratio. `step list` is timed as a whole command (`python -m cli step list --json`).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.drive import PARIS, _subscriptions
from bench.meter import bounded, until
from bench.results import Figure, Run, fmt
from bench.stack import DevStack
from domain.request import NewRequest
from storage.credentials import digest, new_api_token
from storage.tables import OpenStepRow, SupportRequestRow, WorkspaceRow
from storage.users import Role, add_user, create_api_token
from testing.enrolment import enrolment
from testing.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench-inbox-"


def _tl(i: int) -> dict[str, str]:
    return {"id": f"tl-bench-{i:02d}", "name": f"Bench TL {i:02d}", "email": f"tl{i:02d}@support.example"}


async def _count(stack: DevStack, stmt: Any) -> int:
    async with stack.sessions() as session:
        return int(await session.scalar(stmt) or 0)


async def seed(run: Run, stack: DevStack) -> dict[str, float]:
    """Programmes with their first cycle running, then one open request each; seconds each took."""
    from starter.programs import start_program
    from starter.requests import open_request

    s = run.sizes
    n = s.inbox_programmes
    w = await stack.spawn_worker("inbox")
    settings = stack.settings(w.task_queue)
    customers = [f"{PREFIX}{i:04d}" for i in range(n)]
    start = datetime.now(PARIS).date() - timedelta(days=1)  # begun yesterday: the first cycle runs at once
    await _subscriptions(stack.sessions, customers, start)
    began = time.monotonic()
    await bounded([lambda i=i, c=c: start_program(stack.client, settings, enrolment(
        c, start, technical_lead=_tl(i % s.inbox_tls)), "bench") for i, c in enumerate(customers)], s.concurrency)

    async def cycles_projected() -> bool:  # every programme registered and its first cycle's call in the inbox
        spaces = await _count(stack, select(func.count()).where(WorkspaceRow.customer_id.like(f"{PREFIX}%")))
        calls = await _count(stack, select(func.count()).where(OpenStepRow.workflow_id.like(f"program-{PREFIX}%-m01"),
                                                               OpenStepRow.step == "schedule_call"))
        return spaces >= n and calls >= n

    out = {"programmes": await until(cycles_projected, f"{n} programmes and cycles", timeout=120 + n) - began}
    run.log(f"inbox: {n} programmes and their first cycles in the projection after {out['programmes']:.1f} s")
    news = [NewRequest.model_validate({"customer_id": c, "kind": "support", "priority": "medium",
                                       "summary": f"Bench inbox request {i}", "filed_by": "carol"})
            for i, c in enumerate(customers[:s.inbox_requests])]
    began = time.monotonic()
    await bounded([lambda r=r: open_request(stack.client, settings, r, sessions=stack.sessions) for r in news],
                  s.concurrency)

    async def requests_stored() -> bool:
        return await _count(stack, select(func.count()).where(
            SupportRequestRow.customer_id.like(f"{PREFIX}%"), SupportRequestRow.state == "open")) >= len(news)

    out["requests"] = await until(requests_stored, f"{len(news)} open requests", timeout=120 + n) - began
    run.log(f"inbox: {len(news)} open requests stored after {out['requests']:.1f} s")
    return out


async def _token(stack: DevStack, email: str, role: Role, tl: str | None = None) -> str:
    token, prefix = new_api_token()
    async with stack.sessions() as session, session.begin():
        user = (await add_user(session, email=email, name=email, role=role, technical_lead_id=tl)).row
        await create_api_token(session, user_id=user.id, name="bench", token_hash=digest(token), prefix=prefix)
    return token


async def _portal(stack: DevStack, port: int) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TECHCONNECT_", "TEMPORAL_", "BENCH_"))}
    env.update({"TECHCONNECT_DATABASE_URL": stack.database_url, "TECHCONNECT_DATA_DIR": str(stack.tmp / "portal"),
                "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host, "PYTHONUNBUFFERED": "1"})
    log = (stack.tmp / "portal.log").open("wb")
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", "portal", "--port", str(port), cwd=ROOT,
                                                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)


async def p95(http: httpx.AsyncClient, path: str, token: str, clients: int, rounds: int) -> tuple[float, int]:
    """The p95 latency (ms) of `path` with `clients` callers at once, `rounds` calls each; and the total listed."""
    times: list[float] = []
    totals: set[str] = set()

    async def caller() -> None:
        for _ in range(rounds):
            began = time.perf_counter()
            r = await http.get(path, headers={"Authorization": f"Bearer {token}"})
            times.append((time.perf_counter() - began) * 1000)
            r.raise_for_status()
            totals.add(r.headers.get("X-Total-Count", "0"))

    await asyncio.gather(*(caller() for _ in range(clients)))
    return statistics.quantiles(times, n=20)[-1], max(int(t) for t in totals)


async def step_list_seconds(stack: DevStack, runs: int = 3) -> tuple[float, list[float]]:
    """Wall time of the whole `step list --json` command for everyone (median of `runs`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TECHCONNECT_", "TEMPORAL_", "BENCH_"))}
    env.update({"TECHCONNECT_DATABASE_URL": stack.database_url, "TECHCONNECT_DATA_DIR": str(stack.tmp / "cli"),
                "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host})
    walls = []
    for _ in range(runs):
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", "step", "list", "--json", cwd=ROOT,
                                                    env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        walls.append(time.monotonic() - began)
        if proc.returncode != 0 or b'"total"' not in out:
            raise RuntimeError(f"step list exited {proc.returncode}: {err.decode()[-500:]}")
    return statistics.median(walls), walls


async def inbox_figures(run: Run, stack: DevStack) -> None:
    s = run.sizes
    seeded = await seed(run, stack)
    tl_token = await _token(stack, "tl@support.example", Role.tl, _tl(min(3, s.inbox_tls - 1))["id"])
    ops_token = await _token(stack, "ops@support.example", Role.ops)
    port = free_port()
    portal = await _portal(stack, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                     limits=httpx.Limits(max_connections=s.inbox_clients)) as http:
            async def up() -> bool:
                if portal.returncode is not None:
                    raise RuntimeError(f"portal exited {portal.returncode}: see {stack.tmp / 'portal.log'}")
                try:
                    return (await http.get("/api/me", headers={"Authorization": f"Bearer {ops_token}"})
                            ).status_code == 200
                except httpx.TransportError:
                    return False

            await until(up, "portal answering", 60)
            measured: dict[str, tuple[float, int]] = {}
            for _ in range(2):  # warm-up: imports, first queries, connection pool
                await p95(http, "/api/me", ops_token, s.inbox_clients, 2)
            for name, path, token in (("me", "/api/me", tl_token), ("tl_inbox", "/api/inbox", tl_token),
                                      ("ops_inbox", "/api/inbox", ops_token), ("desk", "/api/desk", ops_token),
                                      ("programmes", "/api/programmes", ops_token),
                                      ("me_after", "/api/me", ops_token)):
                measured[name] = await p95(http, path, token, s.inbox_clients, s.inbox_rounds)
                run.log(f"inbox: {path} p95 {measured[name][0]:.1f} ms (total listed {measured[name][1]})")
    finally:
        portal.terminate()
        await portal.wait()
    base = statistics.mean([measured["me"][0], measured["me_after"][0]])
    n, calls = s.inbox_programmes, s.inbox_clients * s.inbox_rounds
    baseline = (f"{base:.1f} ms: p95 of `GET /api/me` (mean of {measured['me'][0]:.1f} before and "
                f"{measured['me_after'][0]:.1f} after), same portal process, same {s.inbox_clients} clients")
    how = (f"{s.inbox_clients} clients at once, {calls} calls; {n} programmes with their first cycle running "
           f"({s.inbox_tls} TLs), {s.inbox_requests} open requests, seeded live in {seeded['programmes']:.0f} s + "
           f"{seeded['requests']:.0f} s; the portal (`techconnect portal`, SQLite) as its own process")
    tl_p95, tl_total = measured["tl_inbox"]
    tl = _tl(min(3, s.inbox_tls - 1))["id"]
    run.results.add(Figure("inbox_p95_ratio", tl_p95 / base, "", baseline, "<= 3", tl_p95 / base <= 3,
                           f"`GET /api/inbox` as TL {tl} ({tl_total} open steps, a page of 50): p95 "
                           f"{tl_p95:.1f} ms; {how}"))
    for key, figure, path, who in (("ops_inbox", "ops_inbox_p95_ms", "/api/inbox", "ops"),
                                   ("desk", "desk_queue_p95_ms", "/api/desk", "ops"),
                                   ("programmes", "programme_list_p95_ms", "/api/programmes", "ops")):
        ms, total = measured[key]
        ratio = ms / base
        run.results.add(Figure(figure, ms, "ms", baseline, "ratio <= 5", ratio <= 5,
                               f"`GET {path}` as {who} ({total} in the list, a page of 50): ratio {fmt(ratio)}; {how}"))
    median, walls = await step_list_seconds(stack)
    run.results.add(Figure(
        "step_list_all_seconds", median, "s", f"p95 of `GET /api/me`: {base:.1f} ms (above)", "< 1", median < 1,
        f"`python -m cli step list --json` for everyone, the whole command (interpreter start, imports, "
        f"database migration check, one page of 50 and its total): median of {', '.join(f'{x:.2f}' for x in walls)} s"))
