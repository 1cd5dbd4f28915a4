"""Link emulation for httpx: one shared access link per page load, below HTTP.

The probe host sits on a fast line; the contract speaks of a customer's narrowband or
broadband line. This module makes httpx behave as if every byte crossed such a line:

- an httpcore network backend (`EmulatedBackend`) whose streams all share one `Link`:
  one serializer per direction with a virtual clock, work-conserving (the link is reserved
  only for data that is ready, in slices of about 10 ms of link time, so parallel
  connections interleave as TCP flows sharing a bottleneck do);
- round trips charged where they happen: 1 RTT per DNS lookup of a new name (once per
  load, like a browser's DNS cache), 1 RTT for the TCP handshake, and the whole RTT on the
  reply path of every byte the server sends, so each request/response turnaround and each
  TLS flight (1 for TLS 1.3, 2 for TLS 1.2) costs exactly one RTT, while HTTP/2's own small
  writes (SETTINGS ACK, WINDOW_UPDATE) cost none;
- TLS runs through the shaped stream (`ssl.MemoryBIO`), so handshake bytes pay the link
  too, and ALPN can pick h2;
- `EmulatedTransport`, a small `httpx.AsyncBaseTransport` around
  `httpcore.AsyncConnectionPool(network_backend=...)` (httpx 0.28.1 has no public way to
  pass a network backend; httpx and httpcore are pinned for that reason).

RTT convention: WebPageTest's. A profile's `rtt_ms` is the full round trip; sitespeed.io
calls half of that "rtt" for the same profile names. The emulation adds to the probe
host's own round trip to the target, which is measured (real TCP connect time) and
reported next to it. TCP slow start and packet loss are not emulated: at the profiles'
bandwidth-delay products (0.7 KB on dial, 17.5 KB on cable) an initial window of 10
segments is rarely the limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import os
import socket
import ssl
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpcore
import httpx

from prober.config.profiles import Profile

# ---------------------------------------------------------------------------------------
# The link

# Delivery slices of about 10 ms of link time: bigger slices delay the first byte of every
# response by a whole slice (4 KB slices added 82 ms of TTFB at 400 kbit/s).
SLICE_S = 0.010
MIN_SLICE_BYTES = 64
# A reader that wakes a little late still continues the link where it left off, so timer
# slack does not add up over thousands of slices; longer idle gaps are real idle time.
BACKDATE_S = 0.050
# What one connection may hold that the server sent and the line has not yet delivered:
# a receive window. Without it a server faster than the line (an endless page on dial)
# fills memory at loopback speed. Twice the bandwidth-delay product, so the window never
# limits the line's own rate; the kernel's socket buffers push back on the server beyond.
MIN_WINDOW_BYTES = 256 * 1024
MAX_WINDOW_BYTES = 16 * 1024 * 1024
READ_BYTES = 65536
# A desktop Chromium's ClientHello (a post-quantum key share, GREASE, padding) weighs
# 1,931-1,995 bytes, measured through the browser engine's line; Python's is 517. The
# line charges the browser's, as the customer's browser sends it: on a 30 kbit/s uplink
# the difference is 0.4 s a connection.
BROWSER_CLIENT_HELLO_BYTES = 1960
# What the line carries besides payload, packet by packet, as a packet-level line charges
# it (measured on the reference line, tests/tunline.py: on a narrowband inbox the TCP
# control packets alone took 2.5 KB of the downlink and 4.7 KB of the uplink):
# - every TCP segment carries 52 bytes of headers (IPv4 20, TCP 20, timestamps 12) and
#   at most MSS bytes of payload (1500-byte packets); a short write is a short segment
#   with whole headers, so the headers are counted per segment, not as a share of bytes;
# - the TCP handshake: a SYN up and a SYN-ACK down of 60 bytes each (their options: MSS,
#   SACK, timestamps, window scale), then a 52-byte ACK up;
# - the receiver's ACKs, 52 bytes each, on the other direction: Linux acknowledges every
#   segment of a connection's first 16 (quick ACKs, TCP_MAX_QUICKACKS), then every second
#   one, and the last one of a burst when its delayed-ACK timer fires.
MSS = 1448
SEGMENT_HEADER_BYTES = 52
SYN_BYTES = 60
ACK_BYTES = 52
QUICKACKS = 16
# A sender's tail loss probe (RFC 8985, as Linux schedules it): when no ACK has come back
# within PTO = 2 x its smoothed RTT of sending a flight (plus TCP_RTO_MIN, 200 ms, when
# the flight is one segment: the receiver may be delaying its ACK), it sends the flight's
# last segment again. Nothing is lost on the line, but a flight that takes longer than
# that to cross it is probed all the same: on the reference line each 2-segment
# ClientHello (0.55 s on a 30 kbit/s uplink against a PTO of 0.29 s) and requests queued
# behind them. The smoothed RTT starts at the handshake's and follows each flight's
# (RFC 6298's gain of 1/8).
TCP_RTO_MIN_S = 0.200


def segments(offset: int, nbytes: int) -> int:
    """How many segments start in bytes [offset, offset + nbytes) of one burst."""
    return -(-(offset + nbytes) // MSS) - -(-offset // MSS)


def wire_bytes(nbytes: int) -> int:
    """`nbytes` of payload written at once, with the headers of their segments."""
    return nbytes + SEGMENT_HEADER_BYTES * segments(0, nbytes)


class _Acks:
    """Which of a connection's received segments one side acknowledges (Linux)."""

    def __init__(self) -> None:
        self.received = 0

    def acks(self, ended: int, burst_done: bool) -> int:
        """ACKs for `ended` more segments received; `burst_done`: the sender has paused,
        so a segment left unacknowledged gets its ACK from the delayed-ACK timer."""
        count = 0
        for _ in range(ended):
            self.received += 1
            if self.received <= QUICKACKS or self.received % 2 == 0:
                count += 1
        if burst_done and ended and self.received > QUICKACKS and self.received % 2:
            count += 1
        return count


class _Serializer:
    """One direction of the access link: a virtual clock of when it is next free."""

    def __init__(self, kbps: float) -> None:
        self.bytes_per_s = kbps * 1000.0 / 8.0
        self.free_at = 0.0
        self.busy_s = 0.0
        self.slice_bytes = max(MIN_SLICE_BYTES, int(self.bytes_per_s * SLICE_S))

    def reserve(self, nbytes: int, ready_at: float) -> float:
        """Book the link for `nbytes` ready at `ready_at`; returns when they are through."""
        start = max(ready_at, self.free_at)
        duration = nbytes / self.bytes_per_s
        self.free_at = start + duration
        self.busy_s += duration
        return self.free_at


@dataclass
class ConnectionRecord:
    """What one emulated connection cost, for the load's phase breakdown."""

    host: str
    port: int
    started_at: float
    dns_s: float = 0.0  # 0 for IP literals and names already resolved in this load
    connect_s: float = 0.0  # TCP handshake, emulated RTT included
    tls_s: float | None = None
    host_connect_s: float = 0.0  # the real TCP connect on the probe host's own line
    tls_version: str | None = None
    alpn: str | None = None


@dataclass
class Link:
    """One emulated access line, shared by every connection of one page load."""

    profile: Profile
    bytes_down: int = 0
    bytes_up: int = 0
    probes_up: int = 0  # tail loss probes the client sent (segments sent twice)
    connections: list[ConnectionRecord] = field(default_factory=list)
    _dns: dict[str, asyncio.Future[tuple[list[str], float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.down = _Serializer(self.profile.down_kbps)
        self.up = _Serializer(self.profile.up_kbps)
        bdp = self.down.bytes_per_s * self.profile.rtt_s
        self.window_bytes = int(min(MAX_WINDOW_BYTES, max(MIN_WINDOW_BYTES, 2 * bdp)))

    @property
    def rtt_s(self) -> float:
        return self.profile.rtt_s

    @property
    def host_rtt_s(self) -> float | None:
        """The probe host's own round trip: the fastest real TCP connect of this load."""
        times = [c.host_connect_s for c in self.connections if c.host_connect_s > 0]
        return min(times) if times else None

    async def resolve(self, host: str, port: int) -> tuple[list[str], float]:
        """Addresses for `host` and the emulated time it cost (0 when cached or a literal)."""
        try:
            ipaddress.ip_address(host)
            return [host], 0.0
        except ValueError:
            pass
        pending = self._dns.get(host)
        if pending is not None:
            addrs, _ = await asyncio.shield(pending)
            return addrs, 0.0
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[list[str], float]] = loop.create_future()
        self._dns[host] = fut
        started = loop.time()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
            # One round trip to the resolver, on top of the real lookup.
            await asyncio.sleep(self.rtt_s)
        except BaseException as exc:
            del self._dns[host]
            fut.set_exception(exc)
            fut.exception()  # retrieved: concurrent waiters re-raise it themselves
            raise
        result = (addrs, loop.time() - started)
        fut.set_result(result)
        return result


# ---------------------------------------------------------------------------------------
# Streams


class ShapedStream(httpcore.AsyncNetworkStream):
    """A TCP stream whose bytes cross the emulated link."""

    def __init__(self, link: Link, record: ConnectionRecord, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self._link = link
        self._record = record
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        # (eligible_at, data | b"" for EOF | exception): what the server sent, stamped with
        # the time it reaches the client's end of the line, before serialization.
        self._arrivals: collections.deque[tuple[float, bytes | BaseException]] = (
            collections.deque())
        self._arrived = asyncio.Event()
        self._head = 0  # bytes of the first arrival already delivered
        self._buffered = 0  # bytes read from the socket and not yet delivered
        self._room = asyncio.Event()
        self._room.set()
        # A slice whose link time is booked but not yet handed over (survives cancellation,
        # so a cancelled read never pays the link twice).
        self._in_flight: tuple[float, bytes] | None = None
        self._closed = False
        self._acks_down = _Acks()  # the client acknowledging what the server sent
        self._acks_up = _Acks()  # the server acknowledging what the client sent
        self._srtt = record.connect_s or link.rtt_s  # the client's, from its handshake
        self._pad_up = 0  # bytes a browser sends more, added to the next write
        self._pump = asyncio.create_task(self._pump_loop())

    async def _pump_loop(self) -> None:
        # Read eagerly so each chunk is stamped with when the server really sent it: the
        # delay line then adds one RTT to that, whenever the client gets round to reading.
        while True:
            if self._buffered >= self._link.window_bytes:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                data = await self._reader.read(READ_BYTES)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self._arrivals.append((self._loop.time() + self._link.rtt_s, exc))
                self._arrived.set()
                return
            self._arrivals.append((self._loop.time() + self._link.rtt_s, data))
            self._buffered += len(data)
            self._arrived.set()
            if not data:
                return

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout(f"no data from {self._record.host} within "
                                       f"{timeout} s") from None

    async def _read(self, max_bytes: int) -> bytes:
        if self._in_flight is None:
            while not self._arrivals:
                if self._closed:
                    raise httpcore.ReadError("stream closed")
                self._arrived.clear()
                await self._arrived.wait()
            eligible, item = self._arrivals[0]
            now = self._loop.time()
            if eligible > now:
                await asyncio.sleep(eligible - now)
            if isinstance(item, BaseException):
                self._arrivals.popleft()
                raise httpcore.ReadError(f"connection to {self._record.host} failed: {item}")
            if not item:
                return b""  # EOF stays queued: every later read sees it too
            start = self._head
            n = min(len(item) - start, max(1, max_bytes), self._link.down.slice_bytes)
            chunk = item[start:start + n]
            end = start + n
            if end < len(item):
                self._head = end
            else:
                self._arrivals.popleft()
                self._head = 0
            self._buffered -= n
            if self._buffered < self._link.window_bytes:
                self._room.set()
            # What one read of the server's burst holds is taken as sent together: its
            # segments are full but for the last.
            headers = SEGMENT_HEADER_BYTES * segments(start, n)
            ended = end // MSS - start // MSS + (end == len(item) and end % MSS != 0)
            ready = max(eligible, self._loop.time() - BACKDATE_S)
            self._in_flight = (self._link.down.reserve(n + headers, ready), chunk)
            self._link.bytes_down += n
            acks = self._acks_down.acks(ended, end == len(item))
            if acks:  # the client's ACKs take their turn on the uplink
                self._link.up.reserve(ACK_BYTES * acks, self._loop.time())
        done_at, chunk = self._in_flight
        wait = done_at - self._loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._in_flight = None
        return chunk

    def _reserve_up(self, nbytes: int) -> tuple[float, int]:
        """Book the uplink for `nbytes` written at once, with their segments' headers and
        a tail loss probe when the flight outlasts the sender's PTO; returns when they
        are through and how many ACKs the server sends for them."""
        now = self._loop.time()
        n_segments = segments(0, nbytes)
        done_at = self._link.up.reserve(nbytes + SEGMENT_HEADER_BYTES * n_segments, now)
        self._link.bytes_up += nbytes
        acks = self._acks_up.acks(n_segments, True)
        rtt = done_at + self._link.rtt_s - now  # when the server's ACK is back
        pto = 2 * self._srtt + (TCP_RTO_MIN_S if n_segments == 1 else 0.0)
        if rtt > pto:  # the last segment again, behind the flight; the server ACKs it
            self._link.up.reserve(nbytes - MSS * (n_segments - 1) + SEGMENT_HEADER_BYTES,
                                  now)
            self._link.probes_up += 1
            acks += 1
        self._srtt += (rtt - self._srtt) / 8
        return done_at, acks

    def _server_acks(self, acks: int) -> None:
        """The server's ACKs take their turn on the downlink once the data is through
        (booked then: the line's clock reserves no time ahead)."""
        if acks:
            self._link.down.reserve(ACK_BYTES * acks, self._loop.time())

    def pad_next_write(self, nbytes: int) -> None:
        """The next write weighs `nbytes` more on the uplink (what a browser sends more:
        its ClientHello), in the same flight."""
        self._pad_up += nbytes

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._closed:
            raise httpcore.WriteError("stream closed")
        done_at, acks = self._reserve_up(len(buffer) + self._pad_up)
        self._pad_up = 0
        try:
            async with asyncio.timeout(timeout):
                wait = done_at - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._server_acks(acks)
                # Handed to the server only once through the uplink: it cannot answer
                # before the request has fully crossed the customer's line.
                self._writer.write(buffer)
                await self._writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout(f"write to {self._record.host} timed out") from None
        except OSError as exc:
            raise httpcore.WriteError(f"write to {self._record.host} failed: {exc}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pump.cancel()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        tls = TlsStream(self, self._record, ssl_context, server_hostname)
        started = self._loop.time()
        try:
            async with asyncio.timeout(timeout):
                await tls.handshake()
        except TimeoutError:
            await self.aclose()
            raise httpcore.ConnectTimeout(f"TLS handshake with {self._record.host} timed "
                                          f"out after {timeout} s") from None
        except (ssl.SSLError, httpcore.ReadError, httpcore.WriteError) as exc:
            await self.aclose()
            raise httpcore.ConnectError(f"TLS handshake with {self._record.host} failed: "
                                        f"{exc}") from exc
        self._record.tls_s = self._loop.time() - started
        self._record.tls_version = tls.ssl_object.version()
        self._record.alpn = tls.ssl_object.selected_alpn_protocol()
        return tls

    def has_arrivals(self) -> bool:
        return bool(self._arrivals) or self._in_flight is not None

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # httpcore asks this of an idle keep-alive connection: readable means the
            # server closed it (or sent garbage), so it must not be reused. Counted from
            # when the close really happened, not RTT later: a browser that reuses a
            # connection closing under it retries the request, httpcore would fail it.
            return self.has_arrivals()
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        return None


class TlsStream(httpcore.AsyncNetworkStream):
    """TLS over a shaped stream, so every handshake flight and record pays the link."""

    def __init__(self, raw: ShapedStream, record: ConnectionRecord, context: ssl.SSLContext,
                 server_hostname: str | None) -> None:
        self._raw = raw
        self._record = record
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self._incoming, self._outgoing, server_side=False,
                                           server_hostname=server_hostname)

    async def _flush(self, timeout: float | None = None) -> None:
        data = self._outgoing.read()
        if data:
            await self._raw.write(data, timeout)

    async def _fill(self, timeout: float | None = None) -> None:
        data = await self._raw.read(65536, timeout)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def handshake(self) -> None:
        first = True
        while True:
            try:
                self.ssl_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                if first:  # the ClientHello: charged at a browser's size
                    first = False
                    pending = self._outgoing.pending
                    if pending < BROWSER_CLIENT_HELLO_BYTES:
                        self._raw.pad_next_write(BROWSER_CLIENT_HELLO_BYTES - pending)
                await self._flush()
                await self._fill()
        await self._flush()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:
            try:
                return self.ssl_object.read(max_bytes)
            except ssl.SSLWantReadError:
                await self._flush(timeout)
                await self._fill(timeout)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # Many servers close without close_notify; for HTTP that is a plain EOF.
                return b""
            except ssl.SSLError as exc:
                raise httpcore.ReadError(f"TLS error from {self._record.host}: {exc}") from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self.ssl_object.write(buffer)
        except ssl.SSLError as exc:
            raise httpcore.WriteError(f"TLS error towards {self._record.host}: {exc}") from exc
        await self._flush(timeout)

    async def aclose(self) -> None:
        await self._raw.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("TLS inside TLS (an HTTPS proxy) is not emulated")

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "ssl_object":
            return self.ssl_object
        if info == "is_readable":
            return self.ssl_object.pending() > 0 or self._raw.has_arrivals()
        return self._raw.get_extra_info(info)


# ---------------------------------------------------------------------------------------
# Backend and transport


class EmulatedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend whose connections all cross one `Link`."""

    def __init__(self, link: Link) -> None:
        self.link = link

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[typing.Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        record = ConnectionRecord(host=host, port=port, started_at=loop.time())
        try:
            async with asyncio.timeout(timeout):
                addrs, record.dns_s = await self.link.resolve(host, port)
                started = loop.time()
                reader, writer = await self._open(addrs, port, local_address)
                record.host_connect_s = loop.time() - started
                # SYN out, SYN-ACK back: one round trip and two small packets on the line
                # before the first byte can go; the handshake's ACK goes up with it.
                await self._wait_until(self.link.up.reserve(SYN_BYTES, loop.time()))
                await asyncio.sleep(self.link.rtt_s)
                await self._wait_until(self.link.down.reserve(SYN_BYTES, loop.time()))
                self.link.up.reserve(ACK_BYTES, loop.time())
                record.connect_s = loop.time() - started
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connect to {host}:{port} timed out after "
                                          f"{timeout} s") from None
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise httpcore.ConnectError(f"connect to {host}:{port} failed: {why}") from exc
        self.link.connections.append(record)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ShapedStream(self.link, record, reader, writer)

    @staticmethod
    async def _wait_until(at: float) -> None:
        wait = at - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    @staticmethod
    async def _open(addrs: list[str], port: int, local_address: str | None,
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: OSError | None = None
        for addr in addrs:
            try:
                local = (local_address, 0) if local_address else None
                # a small reader buffer: the window above is what may pile up
                return await asyncio.open_connection(addr, port, local_addr=local,
                                                     limit=READ_BYTES)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[typing.Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not emulated")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    # most specific first
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
)


def _to_httpx(exc: Exception) -> Exception:
    for core, mapped in _EXCEPTIONS:
        if isinstance(exc, core):
            return mapped(str(exc))
    return exc


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> typing.AsyncIterator[bytes]:
        try:
            async for part in self._stream:
                yield part
        except httpcore.TimeoutException as exc:
            raise _to_httpx(exc) from exc
        except httpcore.NetworkError as exc:
            raise _to_httpx(exc) from exc
        except httpcore.ProtocolError as exc:
            raise _to_httpx(exc) from exc

    async def aclose(self) -> None:
        closer = getattr(self._stream, "aclose", None)
        if closer is not None:
            await closer()


class _BrowserPool(httpcore.AsyncConnectionPool):
    """An httpcore pool that opens connections as a browser does once it knows an origin.

    httpcore takes a connection still in its handshake for one that may turn out HTTP/2
    and queues the other requests on it: over HTTP/1.1 it then opens one more connection
    per handshake, one after the other. Chromium, once an origin's first connection chose
    HTTP/1.1 by ALPN, opens a connection for each request waiting (up to its limit) at
    once: on the reference line (narrowband inbox) four SYNs within 8 ms, where the httpx
    engine opened them 1.3 s apart, a whole handshake each. So here a new connection to
    an origin whose earlier connection of this load chose HTTP/1.1 is HTTP/1.1 only."""

    def __init__(self, link: Link, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)
        self._link = link

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        host, port = origin.host.decode("ascii"), origin.port
        if origin.scheme == b"https" and self._http1 and any(
                c.host == host and c.port == port and c.tls_version is not None
                and c.alpn != "h2" for c in self._link.connections):
            return httpcore.AsyncHTTPConnection(
                origin=origin, ssl_context=self._ssl_context,
                keepalive_expiry=self._keepalive_expiry, http1=True, http2=False,
                retries=self._retries, local_address=self._local_address, uds=self._uds,
                network_backend=self._network_backend, socket_options=self._socket_options)
        return super().create_connection(origin)


class EmulatedTransport(httpx.AsyncBaseTransport):
    """httpx transport over an httpcore pool on the emulated link (one per page load)."""

    def __init__(self, link: Link, ssl_context: ssl.SSLContext, http2: bool = True,
                 keepalive_expiry: float = 60.0) -> None:
        self.link = link
        self._pool = _BrowserPool(
            link,
            ssl_context=ssl_context,
            max_connections=None,  # the loader enforces a browser's per-host limit
            max_keepalive_connections=None,
            keepalive_expiry=keepalive_expiry,
            http1=True,
            http2=http2,
            retries=0,
            network_backend=EmulatedBackend(link),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
                httpcore.UnsupportedProtocol, httpcore.PoolTimeout) as exc:
            raise _to_httpx(exc) from exc
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()
