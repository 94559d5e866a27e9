"""uvicorn inside the running event loop: how the dev stack and the tests serve the portal and the codec
server beside everything else. Here, at the bottom, so both (a face and devstack/) share it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the host process (dev stack, tests) owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int, unavailable: Callable[[OSError], BaseException]) -> socket.socket:
    """Bind here, so a busy port is an exception we can explain (uvicorn would exit the process);
    `unavailable` words it for the caller's setting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise unavailable(exc) from None
    return sock


@contextlib.asynccontextmanager
async def serving_on(app: Any, sock: socket.socket, name: str,
                     lifespan: Literal["on", "off"] = "on") -> AsyncIterator[EmbeddedServer]:
    """Serve `app` on the bound `sock` as a task of the running event loop until the block ends;
    the socket is closed after."""
    server = EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"{name} stopped while starting")
            await asyncio.sleep(0.02)
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        sock.close()
