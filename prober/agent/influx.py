"""Drains the spool into InfluxDB in batches; a point leaves the spool only when acknowledged.

Two APIs, chosen by `[influx] api`:
- "v2": influxdb-client's synchronous WriteApi to `/api/v2/write` (url, org, bucket, token):
  InfluxDB 2.x, 3.x, Cloud, 1.8+ and VictoriaMetrics. Its batching mode is not used: it
  loses points on exit and on SIGKILL (docs/field-notes.md); the spool is the buffer.
- "v1": HTTP POST `/write` (database, retention policy, user, password) for InfluxDB 1.x
  before 1.8, which has no `/api/v2/write`.

What each answer does to the queue:
- 2xx: the batch is deleted from the spool.
- connection errors, timeouts, 429, 5xx: kept; retried with exponential backoff and jitter,
  at least as late as the server's Retry-After.
- 400, 413, 422 (the content was refused): the batch is split in halves and retried until
  each refused line stands alone; that line moves to the dead-letter table with the
  server's message and the queue goes on. InfluxDB 1.x stores the good points of a
  "partial write", and a resent good point overwrites itself (same series and timestamp),
  so the split costs requests, never duplicates on InfluxDB.
- 401, 403, 404 and other 4xx: kept; the error says what is wrong (token, permissions,
  bucket or database, API version) and is logged loudly, then retried at the slow end of
  the backoff so fixing the server side is enough.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx

from prober.agent.spool import Spool, SpoolRow
from prober.config.delivery import InfluxSettings
from prober.measurement import one_line

log = logging.getLogger("prober.influx")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CONTENT_STATUS = frozenset({400, 413, 422})
_RUN_BATCHES = 10


class SendError(Exception):
    """One write attempt failed. `status` is None when no HTTP answer came back."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUS

    @property
    def refused_content(self) -> bool:
        return self.status in CONTENT_STATUS


class Sender(Protocol):
    def send(self, body: bytes) -> None: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def server_message(body: bytes | str | None, headers: Any = None) -> str:
    """The server's own words: 1.x says {"error": ...}, 2.x {"code": ..., "message": ...}."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error"):
            if data.get(key):
                return one_line(str(data[key]))
    if text.strip():
        return one_line(text)
    if headers is not None:
        for key in ("X-Influxdb-Error", "X-Platform-Error-Code"):
            value = headers.get(key)
            if value:
                return one_line(value)
    return ""


def explain(status: int, settings: InfluxSettings, message: str) -> str:
    """A failed write's status and message plus what to check, for logs and `prober check`."""
    what = f"{settings.url} answered {status}" + (f" ({message})" if message else "")
    if status == 401:
        if settings.api == "v2":
            hint = ("unauthorized: check the token" +
                    (f" ({settings.token.source})" if settings.token else
                     "; none is configured (token_env, token_file or token_credential)"))
        else:
            hint = ("unauthorized: check username and password" +
                    (f" (user {settings.username!r}, {settings.password.source})"
                     if settings.password else "; none are configured"))
    elif status == 403:
        place = (f"bucket {settings.bucket!r}" if settings.api == "v2"
                 else f"database {settings.database!r}")
        hint = f"forbidden: the credentials may not write to {place}"
    elif status == 404:
        if settings.api == "v2":
            hint = (f"not found: no bucket {settings.bucket!r} (org {settings.org!r}), or the "
                    "server has no /api/v2/write (InfluxDB before 1.8: set api = \"v1\")")
        else:
            hint = f"not found: no database {settings.database!r}"
            if settings.retention_policy:
                hint += f" or retention policy {settings.retention_policy!r}"
    elif status in RETRYABLE_STATUS:
        hint = "server busy or failing: retrying with backoff"
    else:
        hint = "refused"
    return f"{what}: {hint}; points are kept in the spool"


class V2Sender:
    """`/api/v2/write` through influxdb-client's synchronous WriteApi (no retries of its own)."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.settings = settings
        kwargs: dict[str, Any] = {"verify_ssl": settings.tls_verify}
        if settings.ca_file:
            kwargs["ssl_ca_cert"] = settings.ca_file
        if settings.token:  # none: InfluxDB without authentication (the client allows it)
            kwargs["token"] = settings.token.reveal()
        self._client = InfluxDBClient(
            url=settings.url,
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            retries=False,
            **kwargs,
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes) -> None:
        import urllib3
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.domain.write_precision import WritePrecision

        try:
            assert self.settings.bucket is not None  # api = "v2" requires it
            self._write.write(bucket=self.settings.bucket, org=self.settings.org, record=body,
                              # the client's own constant, which its annotations call a str
                              write_precision=WritePrecision.NS)  # type: ignore[arg-type]
        except InfluxDBError as exc:
            response = getattr(exc, "response", None)
            status = getattr(exc, "status", None) or getattr(response, "status", None)
            body_text = getattr(exc, "body", None) or getattr(response, "data", None)
            message = server_message(body_text, getattr(exc, "headers", None)) or exc.message
            if not status:  # the client reports connection and TLS failures as status 0
                raise unreachable(self.settings.url, exc) from None
            raise SendError(message, int(status),
                            parse_retry_after(getattr(exc, "retry_after", None))) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise unreachable(self.settings.url, exc) from None

    def close(self) -> None:
        self._client.close()


class V1Sender:
    """`POST /write` of InfluxDB 1.x, with HTTP basic auth (not u/p in the URL, which
    would land in proxy and server logs)."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        verify: bool | ssl.SSLContext = settings.tls_verify
        if settings.tls_verify and settings.ca_file:
            verify = ssl.create_default_context(cafile=settings.ca_file)
        auth = None
        if settings.username and settings.password:
            auth = httpx.BasicAuth(settings.username, settings.password.reveal())
        self._params = {"db": settings.database or "", "precision": "ns"}
        if settings.retention_policy:
            self._params["rp"] = settings.retention_policy
        self._client = httpx.Client(base_url=settings.url, auth=auth, verify=verify,
                                    timeout=settings.timeout_s)

    def send(self, body: bytes) -> None:
        try:
            r = self._client.post("/write", params=self._params, content=body,
                                  headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            raise unreachable(self.settings.url, exc) from None
        if 200 <= r.status_code < 300:
            return
        raise SendError(server_message(r.content, r.headers) or r.reason_phrase,
                        r.status_code, parse_retry_after(r.headers.get("Retry-After")))

    def close(self) -> None:
        self._client.close()


def _causes(exc: BaseException) -> list[BaseException]:
    # urllib3 and httpx wrap the OS or TLS error several levels deep.
    chain = [exc]
    while len(chain) < 8:
        inner = chain[-1]
        nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException) or nxt in chain:
            break
        chain.append(nxt)
    return chain


def unreachable(url: str, exc: BaseException) -> SendError:
    """A write that got no HTTP answer; a TLS verification failure says how to fix it."""
    chain = _causes(exc)
    text = " ".join(str(e) for e in chain)
    if (any(isinstance(e, ssl.SSLCertVerificationError) for e in chain)
            or "CERTIFICATE_VERIFY_FAILED" in text):
        return SendError(f"{url}: TLS certificate not trusted ({one_line(str(chain[-1]), 200)}); "
                         "set ca_file to the CA that signed it (or tls_verify = false)")
    inner = chain[-1]
    return SendError(f"{url} unreachable: {one_line(str(inner) or type(inner).__name__, 300)}")


def make_sender(settings: InfluxSettings) -> Sender:
    return V2Sender(settings) if settings.api == "v2" else V1Sender(settings)


@dataclass(frozen=True)
class DrainResult:
    """What one drain pass did. `error` is None when the spool was emptied."""

    delivered: int = 0
    dead: int = 0
    batches: int = 0
    remaining: int = 0
    error: str | None = None
    status: int | None = None
    retryable: bool = True
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class WriterStatus:
    """For the heartbeat and the logs. Times are UNIX seconds."""

    target: str
    state: str = "starting"  # starting, ok, failing
    last_error: str | None = None
    last_status: int | None = None
    last_success: float | None = None
    failing_since: float | None = None
    delivered_total: int = 0
    dead_total: int = 0
    attempts_failed: int = 0
    next_retry_in_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class InfluxWriter:
    def __init__(self, settings: InfluxSettings, spool: Spool,
                 sender: Sender | None = None) -> None:
        self.settings = settings
        self.spool = spool
        self._sender = sender
        self._status = WriterStatus(target=settings.target)
        self._lock = threading.Lock()
        self._failures = 0
        self._wake: asyncio.Event | None = None

    @property
    def sender(self) -> Sender:
        if self._sender is None:
            self._sender = make_sender(self.settings)
        return self._sender

    @property
    def status(self) -> WriterStatus:
        with self._lock:
            return replace(self._status, extra=dict(self._status.extra))

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    # -- one pass ------------------------------------------------------------------------

    def drain_once(self, max_batches: int | None = None) -> DrainResult:
        """Write batches until the spool is empty or a write fails; never raises for a
        server or network problem (the result says what happened)."""
        delivered = dead = batches = 0
        size = self.settings.batch_size
        while max_batches is None or batches < max_batches:
            rows = self.spool.read_batch(size)
            if not rows:
                break
            batches += 1
            try:
                ok, bad = self._send_rows(rows)
            except SendError as exc:
                return self._failed(exc, delivered, dead, batches)
            delivered += ok
            dead += bad
            self._record_success(ok, bad)
        return DrainResult(delivered=delivered, dead=dead, batches=batches,
                           remaining=self.spool.depth())

    def _send_rows(self, rows: Sequence[SpoolRow]) -> tuple[int, int]:
        """Deliver rows; returns (delivered, dead-lettered). Raises SendError for anything
        that is not the content's fault, with the refused part still in the spool."""
        body = "\n".join(r.line for r in rows).encode("utf-8")
        try:
            self.sender.send(body)
        except SendError as exc:
            if not exc.refused_content:
                raise
            if len(rows) == 1:
                reason = exc.message or f"HTTP {exc.status}"
                self.spool.dead_letter(rows, exc.status, reason)
                log.error("InfluxDB refused a point (HTTP %s: %s); moved to the dead-letter "
                          "table: %s", exc.status, reason, one_line(rows[0].line, 300))
                return 0, 1
            mid = len(rows) // 2
            a = self._send_rows(rows[:mid])
            b = self._send_rows(rows[mid:])
            return a[0] + b[0], a[1] + b[1]
        self.spool.ack([r.id for r in rows])
        return len(rows), 0

    def _record_success(self, delivered: int, dead: int) -> None:
        with self._lock:
            st = self._status
            if st.state == "failing" and st.failing_since is not None:
                log.warning("InfluxDB back at %s after %.0f s; delivering the spooled points",
                            self.settings.target, time.time() - st.failing_since)
            st.state = "ok"
            st.last_success = time.time()
            st.failing_since = None
            st.last_error = None
            st.last_status = None
            st.next_retry_in_s = None
            st.delivered_total += delivered
            st.dead_total += dead
            self._failures = 0

    def _failed(self, exc: SendError, delivered: int, dead: int, batches: int) -> DrainResult:
        if exc.status is None:
            text = f"InfluxDB unreachable: {exc.message}; points are kept in the spool"
        else:
            text = explain(exc.status, self.settings, exc.message)
        with self._lock:
            st = self._status
            first = st.state != "failing" or st.last_error != text
            if st.state != "failing":
                st.failing_since = time.time()
            st.state = "failing"
            st.last_error = text
            st.last_status = exc.status
            st.attempts_failed += 1
            self._failures += 1
        # Once per outage (or when the cause changes), not on every retry.
        if first:
            level = logging.WARNING if exc.retryable else logging.ERROR
            log.log(level, "%s", text)
        return DrainResult(delivered=delivered, dead=dead, batches=batches,
                           remaining=self.spool.depth(), error=text, status=exc.status,
                           retryable=exc.retryable, retry_after=exc.retry_after)

    # -- the daemon's loop ---------------------------------------------------------------

    def backoff_s(self, result: DrainResult) -> float:
        """Exponential in the consecutive failures, with jitter (half fixed, half random),
        at least the server's Retry-After. Non-retryable errors (auth, missing bucket) wait
        the maximum: a person has to act, and the next attempt finds out when they did."""
        s = self.settings
        if not result.retryable:
            delay = s.backoff_max_s
        else:
            # the exponent capped: 2 ** 1024 overflows a float after a long outage
            base = min(s.backoff_max_s, s.backoff_min_s * 2 ** min(max(0, self._failures - 1), 60))
            delay = base / 2 + random.uniform(0, base / 2)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        return delay

    def notify(self) -> None:
        """Ask the running loop to drain now (e.g. right after an append)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Drain in a worker thread until `stop` is set; the event loop never blocks on
        SQLite or HTTP. A batch in flight when stop is set is finished (bounded by
        timeout_s); what is not acknowledged stays in the spool for the next start."""
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        # One dedicated thread: it keeps one SQLite connection and one HTTP client.
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="influx-writer")
        try:
            while not stop.is_set():
                try:
                    # A bounded pass, so a stop request waits for at most a few batches
                    # even when a long backlog is being delivered.
                    result = await loop.run_in_executor(pool, self.drain_once, _RUN_BATCHES)
                except Exception as exc:  # the spool itself failed: say so, keep trying
                    log.exception("spool drain failed: %s", exc)
                    result = DrainResult(error=str(exc), retryable=True)
                    with self._lock:
                        self._failures += 1
                if result.ok:
                    with self._lock:
                        self._status.next_retry_in_s = None
                    if result.remaining:
                        continue
                    delay = self.settings.interval_s
                else:
                    delay = self.backoff_s(result)
                    with self._lock:
                        self._status.next_retry_in_s = delay
                self._wake.clear()
                waits = [asyncio.ensure_future(stop.wait())]
                if result.ok:
                    waits.append(asyncio.ensure_future(self._wake.wait()))
                _, pending = await asyncio.wait(waits, timeout=delay,
                                                return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            self._wake = None
            await loop.run_in_executor(pool, self.close)
            pool.shutdown(wait=True)
