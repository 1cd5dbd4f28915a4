"""The emulated line for a real browser: a SOCKS5 proxy on loopback, in-process.

The browser engine points Chromium at this proxy (`--proxy-server=socks5://...`), so
every connection it opens crosses the same `Link` model as the httpx engine's: the name
lookup (Chromium sends names to a SOCKS5 proxy; 1 RTT per new name per load), the TCP
handshake (1 RTT), every byte up through the uplink's serializer and every byte down
through the downlink's, one RTT on the reply path (so each request turnaround and each TLS
flight costs one RTT), the bandwidth shared by all connections of the load. TLS stays
end to end between Chromium and the server: the proxy only sees and times bytes.

DevTools throttling, which this replaces, is per request: it charges no DNS, TCP or TLS
round trips and lets parallel responses each have the whole bandwidth (issue 15 measured
it 3-8 % fast against a packet-level line). The agent stays unprivileged: no namespace,
no TUN device, only a listening socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct

import httpcore

from prober.probes.throttle import EmulatedBackend, Link, ShapedStream

_READ = 65536


class SocksLine:
    """A SOCKS5 (no authentication, CONNECT only) proxy whose connections share `link`."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.backend = EmulatedBackend(link)
        self.port = 0
        # Why connections to the target failed, for the probe's error text: Chromium says
        # only ERR_SOCKS_CONNECTION_FAILED.
        self.failures: list[tuple[str, BaseException]] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> SocksLine:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_READ)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: httpcore.AsyncNetworkStream | None = None
        try:
            host, port = await self._handshake(reader, writer)
            try:
                upstream = await self.backend.connect_tcp(host, port)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                self.failures.append((f"{host}:{port}", exc.__cause__ or exc))
                writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
                await writer.drain()
                return
            writer.write(b"\x05\x00\x00\x01" + bytes(6))
            await writer.drain()
            assert isinstance(upstream, ShapedStream)
            await self._relay(reader, writer, upstream)
        except (OSError, asyncio.IncompleteReadError, ValueError, httpcore.NetworkError):
            pass  # the browser or the server went away: its own error says so
        except asyncio.CancelledError:
            # close() ends the load's connections: this task ends normally, as asyncio's
            # server would log a traceback for a cancelled connection handler
            pass
        finally:
            if upstream is not None:
                with contextlib.suppress(Exception):
                    await upstream.aclose()
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         ) -> tuple[str, int]:
        version, n = await reader.readexactly(2)
        if version != 5:
            raise ValueError("not SOCKS5")
        await reader.readexactly(n)
        writer.write(b"\x05\x00")  # no authentication
        await writer.drain()
        version, cmd, _, atyp = await reader.readexactly(4)
        if version != 5 or cmd != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))  # command not supported
            await writer.drain()
            raise ValueError("not CONNECT")
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif atyp == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode("idna")
        else:
            raise ValueError("unknown address type")
        (port,) = struct.unpack(">H", await reader.readexactly(2))
        return host, port

    @staticmethod
    async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     upstream: ShapedStream) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def up() -> None:
            while data := await reader.read(_READ):
                await upstream.write(data)  # through the uplink, then to the server

        async def down() -> None:
            while chunk := await upstream.read(_READ):
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        tasks = [asyncio.ensure_future(up()), asyncio.ensure_future(down())]
        try:
            # Either end closing ends the connection (browsers do not half-close).
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
