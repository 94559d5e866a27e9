"""The long-running processes, each started alone (`techconnect worker`, `techconnect portal`).

The command line is a face and may not import another face (the portal) nor the worker's
composition; this module is the one place above them all that does (tests/test_architecture.py).
"""

from __future__ import annotations

import asyncio
import signal

from temporalio.client import Client

from config.settings import Settings


async def run_worker() -> None:
    from worker import main

    await main()


async def run_portal(settings: Settings, host: str, port: int | None) -> None:
    from portal.server import run_portal as serve_portal

    await serve_portal(settings, host=host, port=port)


async def run_inbound(settings: Settings, client: Client) -> None:
    """The inbound receiver alone (`techconnect inbound`) until SIGINT or SIGTERM."""
    from inbound.service import inbound_receiver

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with inbound_receiver(settings, client) as port:
        print(f"inbound SMTP receiver on {settings.inbound_host}:{port}, replies to *@{settings.reply_domain}",
              flush=True)
        await stop.wait()
