"""DNS lookup and TCP connect, timed apart from the protocol on top."""

from __future__ import annotations

import asyncio
import socket

from prober.probes.errors import ProbeError, classify


async def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """A connected non-blocking socket; tries each address the name resolves to."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except Exception as exc:
        raise classify(exc, "connect") from None
    last: ProbeError | None = None
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
            return sock
        except Exception as exc:
            sock.close()
            last = classify(exc, "connect")
    raise last or ProbeError("dns", "connect", f"{host} has no address")
