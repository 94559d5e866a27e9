"""Issue 16's list figures: the inbox, the ops inbox, the desk queue and the programme list at the size of a real
support organisation, against the portal's cheapest authenticated JSON endpoint in the same run.

`inbox_programmes` programmes led by `inbox_tls` TLs, their period begun yesterday so each runs its first
monthly cycle, and one open request on each. The first `inbox_live` are started through the service (these
lists are what running workflows project); the others are copies of their rows, renamed (`copy_rows`:
seeding all 1,000 live took 8 of `make bench`'s 15 minutes). Then the portal runs as its own process
(`techconnect portal`) on the same database, and `inbox_clients` clients ask each endpoint at once,
`inbox_rounds` times each; the p95 of each endpoint over the p95 of `/api/me` is its ratio. `step list` is
timed as a whole command (`python -m cli step list --json`), beside the same interpreter importing only the
libraries any database command needs (its floor).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

from bench.drive import PARIS, _subscriptions
from bench.meter import bounded, until
from bench.results import Figure, Run, fmt
from bench.stack import DevStack
from domain.request import NewRequest
from storage.credentials import digest, new_api_token
from storage.repositories.programmes import workspace_id_for
from storage.tables import CustomerRow, OpenStepRow, ProgrammeRow, SupportRequestRow, WorkspaceRow
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
    """`inbox_live` programmes with their first cycle running and one open request each, through the service;
    then the rest as copies of their rows (`copy_rows`); seconds each part took."""
    from starter.programs import start_program
    from starter.requests import open_request

    s = run.sizes
    live = min(s.inbox_live, s.inbox_programmes)
    w = await stack.spawn_worker("inbox")
    settings = stack.settings(w.task_queue)
    customers = [f"{PREFIX}{i:04d}" for i in range(s.inbox_programmes)]
    start = datetime.now(PARIS).date() - timedelta(days=1)  # begun yesterday: the first cycle runs at once
    await _subscriptions(stack.sessions, customers[:live], start)
    began = time.monotonic()
    await bounded([lambda i=i, c=c: start_program(stack.client, settings, enrolment(
        c, start, technical_lead=_tl(i % s.inbox_tls)), "bench") for i, c in enumerate(customers[:live])],
        s.concurrency)

    async def cycles_projected() -> bool:  # every programme registered and its first cycle's call in the inbox
        spaces = await _count(stack, select(func.count()).where(WorkspaceRow.customer_id.like(f"{PREFIX}%")))
        calls = await _count(stack, select(func.count()).where(OpenStepRow.workflow_id.like(f"program-{PREFIX}%-m01"),
                                                               OpenStepRow.step == "schedule_call"))
        return spaces >= live and calls >= live

    out = {"programmes": await until(cycles_projected, f"{live} programmes and cycles", timeout=120 + live) - began}
    run.log(f"inbox: {live} programmes and their first cycles in the projection after {out['programmes']:.1f} s")
    news = [NewRequest.model_validate({"customer_id": c, "kind": "support", "priority": "medium",
                                       "summary": f"Bench inbox request {i}", "filed_by": "carol"})
            for i, c in enumerate(customers[:min(live, s.inbox_requests)])]
    began = time.monotonic()
    await bounded([lambda r=r: open_request(stack.client, settings, r, sessions=stack.sessions) for r in news],
                  s.concurrency)

    async def requests_stored() -> bool:
        return await _count(stack, select(func.count()).where(
            SupportRequestRow.customer_id.like(f"{PREFIX}%"), SupportRequestRow.state == "open")) >= len(news)

    out["requests"] = await until(requests_stored, f"{len(news)} open requests", timeout=120 + live) - began
    run.log(f"inbox: {len(news)} open requests stored after {out['requests']:.1f} s")
    began = time.monotonic()
    await copy_rows(stack, customers, live, s.inbox_requests, s.inbox_tls)
    out["copies"] = time.monotonic() - began
    return out


# What the lists read of a programme, keyed by its customer: each copy is one of these rows with the names changed.
_COPIED = (CustomerRow, ProgrammeRow, WorkspaceRow, OpenStepRow)


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """`value` with every live name (customer, workflow or TL ID) replaced by its copy's, inside JSON too."""
    if isinstance(value, str):
        for old, new in names.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict | list):
        return json.loads(_renamed(json.dumps(value), names))
    return value


async def copy_rows(stack: DevStack, customers: list[str], live: int, requests: int, tls: int) -> None:
    """Programme `j` (j >= live) as a copy of the rows live programme `j % live` and its workflows wrote (customer,
    programme and its status, workspace, open steps of the programme and its cycle, its open request), led by TL
    `j % tls`. Same row shapes, same number of rows a programme: what the lists read at 1,000 programmes, without
    starting 900 more through the service. No workflow runs behind a copy (the lists never ask one)."""
    async with stack.sessions() as session:
        sources: dict[str, dict[type[Any], list[dict[str, Any]]]] = {c: {} for c in customers[:live]}
        for table in (*_COPIED, SupportRequestRow):
            columns = table.__table__.columns
            key: Any = CustomerRow.id if table is CustomerRow else table.customer_id  # type: ignore[union-attr]
            for row in (await session.execute(select(table).where(key.in_(sources)))).scalars():
                values = {c.key: getattr(row, c.key) for c in columns}
                sources[getattr(row, key.key)].setdefault(table, []).append(values)
        for j in range(live, len(customers)):
            source = customers[j % live]
            (programme,) = sources[source][ProgrammeRow]  # its TL, as read above
            names = {source: customers[j], programme["technical_lead_id"]: _tl(j % tls)["id"]}
            tables = (*_COPIED, SupportRequestRow) if j < requests else _COPIED
            for table in tables:
                rows = [{k: _renamed(v, names) for k, v in values.items()} for values in sources[source].get(table, [])]
                for copied in rows:
                    if table is SupportRequestRow:
                        copied["tracking_number"] = f"{copied['tracking_number']}-copy-{j:04d}"
                    elif table is WorkspaceRow:
                        copied["id"] = workspace_id_for(customers[j])
                if rows:
                    await session.execute(insert(table), rows)
        await session.commit()


async def _token(stack: DevStack, email: str, role: Role, tl: str | None = None) -> str:
    token, prefix = new_api_token()
    async with stack.sessions() as session, session.begin():
        user = (await add_user(session, email=email, name=email, role=role, technical_lead_id=tl)).row
        await create_api_token(session, user_id=user.id, name="bench", token_hash=digest(token), prefix=prefix)
    return token


def _service_env(stack: DevStack, data_dir: str) -> dict[str, str]:
    """This environment without the bench's own settings, pointed at the stack's database and server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TECHCONNECT_", "TEMPORAL_", "BENCH_"))}
    env.update({"TECHCONNECT_DATABASE_URL": stack.database_url, "TECHCONNECT_DATA_DIR": str(stack.tmp / data_dir),
                "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host})
    return env


async def _portal(stack: DevStack, port: int) -> asyncio.subprocess.Process:
    env = {**_service_env(stack, "portal"), "PYTHONUNBUFFERED": "1"}
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


# What any command reading the database imports before it does anything (the step list's floor).
FLOOR_IMPORTS = "import typer, rich.console, pydantic_settings, sqlalchemy.ext.asyncio, sqlalchemy.orm, aiosqlite"


async def _walls(args: list[str], env: dict[str, str] | None = None, runs: int = 3,
                 expect: bytes = b"") -> tuple[float, list[float]]:
    """Wall time of `python <args>` from start to exit (median of `runs`); it must exit 0 and print `expect`."""
    walls = []
    for _ in range(runs):
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        walls.append(time.monotonic() - began)
        if proc.returncode != 0 or expect not in out:
            raise RuntimeError(f"python {' '.join(args)} exited {proc.returncode}: {err.decode()[-500:]}")
    return statistics.median(walls), walls


async def floor_seconds() -> tuple[float, list[float]]:
    """The interpreter importing `FLOOR_IMPORTS` and exiting."""
    return await _walls(["-c", FLOOR_IMPORTS])


async def step_list_seconds(stack: DevStack) -> tuple[float, list[float]]:
    """The whole `step list --json` command for everyone."""
    return await _walls(["-m", "cli", "step", "list", "--json"], _service_env(stack, "cli"), expect=b'"total"')


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
           f"({s.inbox_tls} TLs), {s.inbox_requests} open requests, {min(s.inbox_live, n)} of each seeded live "
           f"(programmes {seeded['programmes']:.0f} s, requests {seeded['requests']:.0f} s), the rest copies of their "
           f"rows ({seeded['copies']:.1f} s); the portal (`techconnect portal`, SQLite) as its own process")
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
    floor, floors = await floor_seconds()
    run.results.add(Figure(
        "step_list_all_seconds", median, "s",
        f"{floor:.2f} s: `python -c '{FLOOR_IMPORTS}'` (median of {', '.join(f'{x:.2f}' for x in floors)} s)",
        "< 1", median < 1,
        f"`python -m cli step list --json` for everyone ({n} programmes), the whole command (interpreter start, "
        f"imports, database schema check, one page of 50 and its total): median of "
        f"{', '.join(f'{x:.2f}' for x in walls)} s"))
