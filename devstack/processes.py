"""The long-running processes, each started alone (`techconnect worker`, `techconnect portal`).

The command line is a face and may not import another face (the portal) nor the worker's
composition; this module is the one place above them all that does (tests/test_architecture.py).
"""

from __future__ import annotations

from config.settings import Settings


async def run_worker() -> None:
    from worker import main

    await main()


async def run_portal(settings: Settings, host: str, port: int | None) -> None:
    from portal.server import run_portal as serve_portal

    await serve_portal(settings, host=host, port=port)
