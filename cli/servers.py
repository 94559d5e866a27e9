"""`techconnect dev`, `worker`, `portal`, `codec-server`, `inbound`: the long-running processes."""

from __future__ import annotations

import asyncio
import signal

import typer

from cli import runtime
from config.settings import Settings


def dev() -> None:
    """Start the whole embedded stack (what `make run` calls)."""
    from devstack.dev import run_dev_stack

    asyncio.run(run_dev_stack(Settings()))


def worker() -> None:
    """Run one worker on the configured task queue."""
    from devstack.processes import run_worker

    asyncio.run(run_worker())


def portal(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int | None = typer.Option(None, "--port", help="Default: TECHCONNECT_PORTAL_PORT (8000)"),
) -> None:
    """Run the workspace portal alone (web pages and the /api), against the configured Temporal and database."""
    from devstack.processes import run_portal

    asyncio.run(run_portal(Settings(), host=host, port=port))


def codec_server() -> None:
    """Serve the payload codec for the Temporal UI (TECHCONNECT_CODEC_HOST/PORT, token TECHCONNECT_CODEC_TOKEN)."""
    from devstack.codec_server import check_exposure, codec_app_from_settings, serving

    settings = Settings()
    app_ = codec_app_from_settings(settings)
    if app_ is None:
        runtime.fail("no payload key configured (TECHCONNECT_PAYLOAD_KEYS, TECHCONNECT_PAYLOAD_KEY_ID)", 2)
    check_exposure(settings)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with serving(app_, settings.codec_host, settings.codec_port) as url:
            runtime.out.print(f"codec server on {url}")
            await stop.wait()

    asyncio.run(serve())


def inbound() -> None:
    """Receive replies to request mails (SMTP on TECHCONNECT_INBOUND_HOST/PORT) and post them to their requests."""
    from devstack.processes import run_inbound

    async def serve(settings: Settings) -> None:
        await run_inbound(settings, await runtime.client_for(settings))  # unreachable Temporal: exit 1, a message

    asyncio.run(serve(Settings()))


def register(app: typer.Typer) -> None:
    """The server commands sit at the top level (`techconnect dev`), not in a group."""
    app.command()(dev)
    app.command()(worker)
    app.command()(portal)
    app.command("codec-server")(codec_server)
    app.command()(inbound)


__all__ = ["register"]
