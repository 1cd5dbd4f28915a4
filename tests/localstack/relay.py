"""A TCP relay on loopback that can be cut: one vantage's own line to a server.

A vantage configured to reach a server through the relay sees that server fail when the
relay is cut (open connections reset, new ones refused), while every other vantage, going
to the server directly, sees nothing: a fault of that vantage, not of the provider.
Runs its own asyncio loop in a daemon thread, like tests/webserver.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class CuttableRelay:
    """Relays 127.0.0.1:`port` to `target_host`:`target_port` until cut()."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> CuttableRelay:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """Reset every relayed connection and refuse new ones (nothing listens)."""
        self._call(self._cut())

    def restore(self) -> None:
        """Listen again, on the same port."""
        self._call(self._listen())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port,
                                                      reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as a line that drops does to a client
        self._writers.clear()
        if self._tasks:  # each relay ends on its reset connections; none outlives the loop
            await asyncio.wait(self._tasks, timeout=2)
        if server is not None:
            await server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._connect(client_r, client_w)
        finally:
            self._tasks.discard(task)

    async def _connect(self, client_r: asyncio.StreamReader,
                       client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host,
                                                               self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, server_w)
        self._writers.update(pair)
        try:
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        finally:
            for w in pair:
                self._writers.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()
