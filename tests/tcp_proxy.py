"""A TCP proxy a test can cut: the network between the worker and its database, in-process.

`cut()` closes the listening socket (new connections are refused, as with a database that is
down) and aborts every open connection (as with a dropped network). `restore()` listens again
on the same port. `cut_when(request, reply)` cuts at a precise moment of the conversation:
once a client has sent bytes containing `request`, the proxy waits for the server's reply
containing `reply` and cuts *instead of* forwarding it. With PostgreSQL's
`cut_when(b"INSERT INTO documents", b"COMMIT\\0")` the server commits the row but the
worker never hears so: the hardest case for "written once".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.connections = 0  # accepted while up
        self.cuts = 0
        self.cut_done = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._trigger: tuple[bytes, bytes] | None = None
        self._armed: set[int] = set()  # connections that sent the trigger's request

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> int:
        if self.port == 0:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = int(s.getsockname()[1])
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        return self.port

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    def cut_when(self, request: bytes, reply: bytes) -> None:
        self._trigger = (request, reply)

    async def cut(self) -> None:
        self._trigger = None
        self.cuts += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.transport.abort()  # RST, no FIN handshake: what a dropped link looks like to the client
        self._writers.clear()
        if server is not None:
            await server.wait_closed()
        self.cut_done.set()

    async def close(self) -> None:
        await self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._server is None:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        conn = id(client_w)
        self._writers |= {client_w, server_w}
        tasks = [asyncio.create_task(self._pipe(conn, client_r, server_w, upstream=True)),
                 asyncio.create_task(self._pipe(conn, server_r, client_w, upstream=False))]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)
            self._armed.discard(conn)
            for w in (client_w, server_w):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    upstream: bool) -> None:
        tail = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                trigger = self._trigger
                if trigger is not None:
                    window = tail + data  # a pattern split across two reads is still seen
                    if upstream and trigger[0] in window:
                        self._armed.add(conn)
                    elif not upstream and conn in self._armed and trigger[1] in window:
                        await self.cut()  # the reply is never forwarded
                        return
                    tail = window[-64:]
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
