"""Small HTTP/1.1 and HTTP/2 servers on loopback for the webmail tests and bench.

Each server runs its own asyncio loop in a daemon thread, so tests can drive the prober
with plain `asyncio.run(...)`. Routes are plain data or small async handlers; every
request is logged with the exact bytes it put on the wire (request and response, before
TLS), which the tests feed into their analytic model.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.events


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Optional streamed body (no Content-Length; chunked on HTTP/1.1): never-ending pages.
    stream: Callable[[], AsyncIterator[bytes]] | None = None
    delay_s: float = 0.0  # wait before the status line (a slow or hung server)


Handler = Callable[[Request], Awaitable[Reply]] | Reply

REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other",
           404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class LogEntry:
    path: str
    method: str
    status: int
    bytes_in: int
    bytes_out: int
    at: float
    protocol: str
    # when the request's head had arrived, and the client's port (one per connection):
    # the per-request comparison of the engines with Chromium (tests/webmail_reference.py)
    received_at: float = 0.0
    client_port: int = 0


def page(body: bytes | str, ctype: str = "text/html; charset=utf-8", compress: bool = False,
         status: int = 200, **headers: str) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    h = {"Content-Type": ctype, **headers}
    if compress:
        data = gzip.compress(data, mtime=0)
        h["Content-Encoding"] = "gzip"
    return Reply(status=status, body=data, headers=h)


def make_cert(directory: Path, name: str = "localhost",
              ips: tuple[str, ...] = ("127.0.0.1",)) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for `ips` and localhost (EC: small on the wire)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost," + ",".join(f"IP:{ip}" for ip in ips)],
        check=True, capture_output=True)
    return cert, key


def server_tls_context(cert: Path, key: Path, version: str = "1.3",
                       alpn: tuple[str, ...] = ("http/1.1",),
                       tickets: bool = False) -> ssl.SSLContext:
    """`tickets=False`: a TLS 1.3 server's session tickets come down while the client's
    first request goes up; the emulation overlaps them as a real line does, but the
    sequential analytic model `n*RTT + bytes/bandwidth` cannot, so tests turn them off."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if not tickets and version == "1.3":
        ctx.num_tickets = 0
    ctx.load_cert_chain(cert, key)
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class WebServer:
    """Serves `routes` on 127.0.0.1; HTTP/2 when its TLS context offers "h2" by ALPN."""

    def __init__(self, routes: dict[str, Handler] | None = None,
                 tls: ssl.SSLContext | None = None, keep_alive: bool = True,
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self.routes: dict[str, Handler] = dict(routes or {})
        self.tls = tls
        self.keep_alive = keep_alive
        self.log: list[LogEntry] = []
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    async def _start(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            assert self._stopping is not None
            self._stopping.set()
            self._server.close()
            # End the connections still being served, so no coroutine outlives the loop:
            # closing them lets each handler return (cancelling them makes asyncio's
            # stream callback log a traceback per connection).
            for w in list(self._writers):
                w.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:
                _, left = await asyncio.wait(others, timeout=2)
                for task in left:
                    task.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()
            self.connections = 0

    def entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self.log)

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self.log.append(entry)

    async def _reply_for(self, req: Request) -> Reply:
        handler = self.routes.get(req.path)
        if handler is None:
            return Reply(404, b"not found", {"Content-Type": "text/plain"})
        if isinstance(handler, Reply):
            return handler
        return await handler(req)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
        self._writers.add(writer)
        sslobj = writer.get_extra_info("ssl_object")
        try:
            if sslobj is not None and sslobj.selected_alpn_protocol() == "h2":
                await self._serve_h2(reader, writer)
            else:
                await self._serve_h1(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _wait_or_stop(self, seconds: float) -> bool:
        """Sleep, unless the server stops first (then False)."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _serve_h1(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client_port = int(peer[1]) if peer else 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            received_at = time.monotonic()
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = b""
            if int(headers.get("content-length", "0")):
                body = await reader.readexactly(int(headers["content-length"]))
            parts = urlsplit(target)
            req = Request(method, parts.path, parts.query, headers, body)
            reply = await self._reply_for(req)
            if reply.delay_s and not await self._wait_or_stop(reply.delay_s):
                return
            hdrs = dict(reply.headers)
            if reply.stream is None:
                hdrs["Content-Length"] = str(len(reply.body))
            else:
                hdrs["Transfer-Encoding"] = "chunked"
            if not self.keep_alive:
                hdrs["Connection"] = "close"
            status_line = f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}\r\n"
            out = (status_line + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                   + "\r\n").encode("latin-1")
            sent = len(out)
            if reply.stream is None:
                writer.write(out + reply.body)
                sent += len(reply.body)
                await writer.drain()
            else:
                writer.write(out)
                async for part in reply.stream():
                    if self._stopping is not None and self._stopping.is_set():
                        return
                    chunk = f"{len(part):x}\r\n".encode() + part + b"\r\n"
                    writer.write(chunk)
                    sent += len(chunk)
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                sent += 5
                await writer.drain()
            self._record(LogEntry(req.path, method, reply.status, len(head) + len(body), sent,
                                  time.monotonic(), "HTTP/1.1", received_at, client_port))
            if not self.keep_alive:
                return

    async def _serve_h2(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        tasks: set[asyncio.Task[None]] = set()
        flow = asyncio.Event()

        async def respond(sid: int, headers: dict[str, str], body: bytes) -> None:
            parts = urlsplit(headers.get(":path", "/"))
            req = Request(headers.get(":method", "GET"), parts.path, parts.query,
                          {k: v for k, v in headers.items() if not k.startswith(":")}, body)
            reply = await self._reply_for(req)
            if reply.delay_s and not await self._wait_or_stop(reply.delay_s):
                return
            data = reply.body
            if reply.stream is not None:
                data = b"".join([p async for p in reply.stream()])
            hdrs = [(":status", str(reply.status)), ("content-length", str(len(data)))]
            hdrs += [(k.lower(), v) for k, v in reply.headers.items()]
            conn.send_headers(sid, hdrs)
            writer.write(conn.data_to_send())
            view = memoryview(data)
            while view:
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    flow.clear()
                    await flow.wait()
                    continue
                conn.send_data(sid, bytes(view[:window]))
                view = view[window:]
                writer.write(conn.data_to_send())
                await writer.drain()
            conn.end_stream(sid)
            writer.write(conn.data_to_send())
            await writer.drain()
            self._record(LogEntry(req.path, req.method, reply.status, len(body), len(data),
                                  time.monotonic(), "HTTP/2"))

        while True:
            data = await reader.read(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    streams[event.stream_id] = (
                        {k.decode() if isinstance(k, bytes) else k:
                         v.decode() if isinstance(v, bytes) else v for k, v in event.headers},
                        bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    streams[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length,
                                                   event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    hdrs, body = streams.pop(event.stream_id)
                    task = asyncio.create_task(respond(event.stream_id, hdrs, bytes(body)))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                    flow.set()
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return
            out = conn.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
        for task in tasks:
            task.cancel()
