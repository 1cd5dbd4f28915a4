"""DNS lookup and TCP connect, timed apart from the protocol on top.

A host name may stand for several front ends (A and AAAA records, a pool). A client
connects to the one its resolver and network pick, so the access checks try each address
on its own (`resolve`, then `open_socket(..., address=)`): one dead member of a pool is
then a failure of that address instead of a silent fallback. The canary's submission and
the IMAP watcher connect as a client does: the first address that answers.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from prober.probes.errors import ProbeError, classify

FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
# A name with more addresses than this has its first MAX_ADDRESSES probed; the point's
# `addresses` field says how many there were.
MAX_ADDRESSES = 16


@dataclass(frozen=True)
class Address:
    """One address a host name resolved to, ready to connect to."""

    family: int  # socket.AF_INET or socket.AF_INET6
    sockaddr: tuple[Any, ...]

    @property
    def ip(self) -> str:
        return str(self.sockaddr[0])

    @property
    def family_name(self) -> str:
        """The `family` tag: `ipv4` or `ipv6`."""
        return "ipv6" if self.family == socket.AF_INET6 else "ipv4"


async def resolve(host: str, port: int, timeout: float, family: str = "any") -> list[Address]:
    """The addresses of `host` in `family` (`any`, `ipv4`, `ipv6`), in the resolver's order,
    each once. Raises ProbeError("dns", "connect", ...) when there is none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, family=FAMILIES[family], type=socket.SOCK_STREAM),
            timeout)
    except Exception as exc:
        raise classify(exc, "connect") from None
    seen: set[tuple[Any, ...]] = set()
    out: list[Address] = []
    for fam, _, _, _, addr in infos:
        if fam not in (socket.AF_INET, socket.AF_INET6) or addr in seen:
            continue
        seen.add(addr)
        out.append(Address(fam, tuple(addr)))
    if not out:
        which = "" if family == "any" else f" {family}"
        raise ProbeError("dns", "connect", f"{host} has no{which} address")
    return out


async def open_socket(host: str, port: int, timeout: float, family: str = "any",
                      address: Address | None = None) -> socket.socket:
    """A connected non-blocking socket: to `address` only when given, else to the first of
    the host's addresses (in `family`) that accepts, as a client falls back."""
    candidates = [address] if address else await resolve(host, port, timeout, family)
    last: ProbeError | None = None
    for cand in candidates:
        try:
            return await _connect(cand, timeout)
        except ProbeError as exc:
            last = exc
    assert last is not None
    raise last


async def _connect(address: Address, timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, address.sockaddr), timeout)
        return sock
    except Exception as exc:
        sock.close()
        raise classify(exc, "connect") from None

