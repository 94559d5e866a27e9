"""Serving the portal: alone (`techconnect portal`) or in-process beside the dev stack (`make run`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from config import http_server
from config.http_server import EmbeddedServer
from config.settings import Settings
from portal.app import create_app
from storage.db import SessionFactory

DEMO_PASSWORD = "techconnect-demo"
# (e-mail, name, role, customer, TL ID): one per role, matching the demo programme (devstack/demo/).
DEMO_USERS: list[tuple[str, str, str, str | None, str | None]] = [
    ("admin@techconnect.example", "Ada Admin", "admin", None, None),
    ("ops@techconnect.example", "Oscar Ops", "ops", None, None),
    ("manager@techconnect.example", "Sam Manager", "support_manager", None, None),
    ("desk@techconnect.example", "Dana Desk", "support_rep", None, None),
    ("gts@techconnect.example", "Gina GTS", "gts", None, None),
    ("alice@support.example", "Alice Martin", "tl", None, "tl-alice"),
    ("carol@acme.example", "Carol Diaz", "contact", "acme", None),
]


def bind(host: str, port: int) -> socket.socket:
    """Bind here, so a busy port is an exception we can explain (uvicorn would exit the process)."""
    sock = http_server.bind(host, port, lambda exc: RuntimeError(
        f"the portal cannot listen on {host}:{port} ({exc.strerror}); set TECHCONNECT_PORTAL_PORT to a free port"))
    sock.set_inheritable(True)
    return sock


@contextlib.asynccontextmanager
async def serving(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[EmbeddedServer]:
    """Serve `app` as a task of the running event loop until the block ends."""
    async with http_server.serving_on(app, bind(host, port), "the portal") as server:
        yield server


def bound_port(server: uvicorn.Server) -> int:
    for srv in server.servers:
        for s in srv.sockets:
            return int(s.getsockname()[1])
    raise RuntimeError("the portal is not listening")


async def ensure_demo_users(sessions: SessionFactory) -> int:
    """One user per role, created once (a second `make run` leaves them as they are)."""
    from storage.credentials import hash_password
    from storage.users import Role, add_user

    created = 0
    password_hash = hash_password(DEMO_PASSWORD)
    async with sessions() as session, session.begin():
        for email, name, role, customer, tl_id in DEMO_USERS:
            result = await add_user(session, email=email, name=name, role=Role(role), customer_id=customer,
                                    technical_lead_id=tl_id, password_hash=password_hash, exist_ok=True)
            created += int(result.created)
    return created


def demo_banner(url: str, mail_dir: str = ".data/mail") -> str:
    width = max(len(e) for e, *_ in DEMO_USERS)
    lines = [f"\n  Portal          : {url}  (API docs: {url}/api/docs)",
             f"    sign in with password {DEMO_PASSWORD!r} as:"]
    for email, _name, role, customer, tl_id in DEMO_USERS:
        extra = f", workspace {customer}" if customer else f", {tl_id}" if tl_id else ""
        lines.append(f"      {email:<{width}}  {role}{extra}")
    lines.append(f"    customer contacts may also ask for a sign-in link (mailed to {mail_dir})")
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def dev_portal(client: Client, settings: Settings) -> AsyncIterator[str]:
    """The portal of `make run` on settings.portal_port, with demo users; yields the banner lines."""
    from storage.db import make_engine, make_session_factory

    engine = make_engine(settings.effective_database_url)
    try:
        sessions = make_session_factory(engine)
        await ensure_demo_users(sessions)
        app = create_app(settings, sessions=sessions, client=client)
        async with serving(app, "127.0.0.1", settings.portal_port):
            yield demo_banner(f"http://127.0.0.1:{settings.portal_port}", str(settings.mail_dir))
    finally:
        await engine.dispose()


async def run_portal(settings: Settings, host: str = "127.0.0.1", port: int | None = None) -> None:
    """`techconnect portal`: the portal alone; uvicorn handles Ctrl-C."""
    port = port or settings.portal_port
    try:
        sock = bind(host, port)
    except RuntimeError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"TechConnect portal on http://{host}:{port} (API docs /api/docs); Temporal {settings.temporal.address}",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info", lifespan="on"))
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
