"""The writer's decisions, with a scripted sender (no server) and, for the two senders'
mapping of HTTP answers, a tiny scripted HTTP endpoint on loopback."""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import ClassVar

import pytest

from prober.agent.influx import (
    DrainResult,
    InfluxWriter,
    SendError,
    V1Sender,
    V2Sender,
    explain,
    parse_retry_after,
    server_message,
)
from prober.agent.spool import Spool
from prober.config.delivery import InfluxSettings, SpoolSettings
from prober.config.reader import Secret
from prober.measurement import Measurement

T0 = 1_700_000_000_000_000_000


class ScriptedSender:
    """Refuses lines containing 'BAD' like InfluxDB 1.x (400, good ones stored), or fails
    whole requests from a script of SendErrors."""

    def __init__(self, failures: list[SendError] | None = None) -> None:
        self.failures = list(failures or [])
        self.stored: list[str] = []
        self.requests = 0

    def send(self, body: bytes) -> None:
        self.requests += 1
        if self.failures:
            raise self.failures.pop(0)
        lines = body.decode().split("\n")
        self.stored.extend(x for x in lines if "BAD" not in x)
        bad = [x for x in lines if "BAD" in x]
        if bad:
            raise SendError(f"partial write: unable to parse '{bad[0]}': invalid field format "
                            "dropped=0", 400)

    def close(self) -> None:
        pass


def v1(**kw: object) -> InfluxSettings:
    base: dict = {"api": "v1", "url": "http://127.0.0.1:9", "database": "mail",
                  "batch_size": 4, "backoff_min_s": 1.0, "backoff_max_s": 60.0}
    base.update(kw)
    return InfluxSettings(**base)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    path = tmp_path / "p.db"
    with Spool(path, SpoolSettings(path=str(path), ballast_bytes=0, min_free_bytes=0)) as sp:
        yield sp


def fill(spool: Spool, n: int) -> None:
    spool.append([Measurement("m", {"vantage": "v1"}, {"seq": i}, T0 + i) for i in range(n)])


def test_drains_everything_in_batches_and_acks(spool: Spool) -> None:
    fill(spool, 10)
    sender = ScriptedSender()
    r = InfluxWriter(v1(), spool, sender).drain_once()
    assert (r.ok, r.delivered, r.batches, r.remaining) == (True, 10, 3, 0)
    assert sender.stored == [f"m,vantage=v1 seq={i}i {T0 + i}" for i in range(10)]


def test_a_refused_line_goes_to_dead_letters_and_the_rest_is_delivered(spool: Spool) -> None:
    fill(spool, 3)
    spool.append_lines(["m,vantage=v1 seq=BAD 5"])
    fill(spool, 3)
    sender = ScriptedSender()
    r = InfluxWriter(v1(batch_size=100), spool, sender).drain_once()
    assert (r.ok, r.delivered, r.dead, r.remaining) == (True, 6, 1, 0)
    dead = spool.dead_rows()
    assert [d.line for d in dead] == ["m,vantage=v1 seq=BAD 5"]
    assert dead[0].status == 400 and "unable to parse" in dead[0].reason
    assert {x for x in sender.stored} >= {f"m,vantage=v1 seq={i}i {T0 + i}" for i in range(3)}


@pytest.mark.parametrize(("error", "retryable"), [
    (SendError("connection refused"), True),
    (SendError("busy", 429, 7.0), True),
    (SendError("oops", 503), True),
    (SendError("authorization failed", 401), False),
    (SendError("forbidden", 403), False),
    (SendError("database not found", 404), False),
])
def test_failures_keep_the_points(spool: Spool, error: SendError, retryable: bool) -> None:
    fill(spool, 5)
    w = InfluxWriter(v1(), spool, ScriptedSender([error]))
    r = w.drain_once()
    assert not r.ok and r.retryable is retryable
    assert r.remaining == 5 and r.delivered == 0
    assert w.status.state == "failing" and w.status.last_error == r.error
    assert spool.dead_rows() == []
    assert w.drain_once().delivered == 5  # the next attempt sends the kept points


def test_error_texts_name_the_cause() -> None:
    s2 = InfluxSettings(api="v2", url="http://h", bucket="mail", org="acme",
                        token=Secret("env:INFLUX_TOKEN", "tok-value"))
    t = explain(401, s2, "unauthorized access")
    assert "401" in t and "token" in t and "env:INFLUX_TOKEN" in t and "tok-value" not in t
    assert "kept" in t
    assert "api = \"v1\"" in explain(404, s2, "404 page not found")
    s1 = v1(username="prober", password=Secret("file:/etc/pw", "pw-value"))
    t = explain(401, s1, "authorization failed")
    assert "username and password" in t and "'prober'" in t and "pw-value" not in t
    assert "database 'mail'" in explain(403, s1, "")
    assert "no database 'mail'" in explain(404, s1, "database not found")


def test_backoff_grows_with_jitter_and_honours_retry_after(spool: Spool) -> None:
    w = InfluxWriter(v1(backoff_min_s=1, backoff_max_s=16), spool, ScriptedSender())
    fail = DrainResult(error="x", retryable=True)
    delays = []
    for n in range(1, 8):
        w._failures = n
        delays.append(w.backoff_s(fail))
    for n, d in enumerate(delays, start=1):
        base = min(16, 2 ** (n - 1))
        assert base / 2 <= d <= base
    w._failures = 1
    assert w.backoff_s(DrainResult(error="x", retry_after=30.0)) >= 30.0
    assert w.backoff_s(DrainResult(error="401", retryable=False)) == 16


def test_by_default_the_writer_is_back_within_10_s_of_influxdb_after_any_outage(
        spool: Spool) -> None:
    settings = InfluxSettings(api="v1", url="http://127.0.0.1:9", database="mail")
    w = InfluxWriter(settings, spool, ScriptedSender())
    for n in (1, 5, 10, 100, 10_000):  # a day of failed attempts
        w._failures = n
        assert w.backoff_s(DrainResult(error="unreachable", retryable=True)) <= 10.0


def test_retry_after_forms() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    date = formatdate(time.time() + 100, usegmt=True)
    assert 95 <= parse_retry_after(date) <= 101  # type: ignore[operator]


def test_server_message_reads_both_versions() -> None:
    assert server_message(b'{"error":"database not found: \\"x\\""}') == 'database not found: "x"'
    assert server_message(b'{"code":"invalid","message":"unable to parse"}') == "unable to parse"
    assert server_message(b"plain\ntext") == "plain text"
    assert server_message(b"", {"X-Influxdb-Error": "from header"}) == "from header"


def test_run_logs_an_outage_once_and_the_return_once(spool: Spool, caplog) -> None:
    fill(spool, 6)
    failures = [SendError("connection refused") for _ in range(4)]
    sender = ScriptedSender(failures)
    w = InfluxWriter(v1(backoff_min_s=0.01, backoff_max_s=0.02, interval_s=0.01), spool, sender)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(w.run(stop))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if spool.depth() == 0:
                break
        stop.set()
        await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.INFO, "prober.influx"):
        asyncio.run(main())
    assert spool.depth() == 0 and len(sender.stored) == 6
    assert caplog.text.count("unreachable") == 1
    assert caplog.text.count("back at") == 1
    assert w.status.state == "ok" and w.status.delivered_total == 6


class _Scripted(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append((self.path, self.headers.get("Authorization", ""), body))
        status, headers, payload = type(self).answers.pop(0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[_Scripted]]]:
    handler = type("H", (_Scripted,), {"answers": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_v2_sender_maps_answers(scripted: tuple[str, type[_Scripted]]) -> None:
    url, h = scripted
    h.answers += [
        (204, {}, b""),
        (429, {"Retry-After": "7"}, b'{"code":"too many requests","message":"slow down"}'),
        (400, {}, b'{"code":"invalid","message":"unable to parse \'x\'"}'),
    ]
    s = InfluxSettings(api="v2", url=url, bucket="b", org="o",
                       token=Secret("env:T", "tok"))
    sender = V2Sender(s)
    sender.send(b"m f=1 1")
    path, auth, body = h.seen[0]
    assert path.startswith("/api/v2/write?") and "bucket=b" in path and "precision=ns" in path
    assert auth == "Token tok" and body == b"m f=1 1"
    with pytest.raises(SendError) as e:
        sender.send(b"m f=1 1")
    assert (e.value.status, e.value.retry_after, e.value.message) == (429, 7.0, "slow down")
    with pytest.raises(SendError) as e:
        sender.send(b"x")
    assert e.value.status == 400 and e.value.refused_content
    assert "unable to parse" in e.value.message
    sender.close()


def test_v1_sender_uses_basic_auth_not_the_url(scripted: tuple[str, type[_Scripted]]) -> None:
    url, h = scripted
    h.answers += [(204, {}, b""), (503, {"Retry-After": "3"}, b'{"error":"overloaded"}')]
    s = v1(url=url, retention_policy="rp1", username="u", password=Secret("env:P", "pw"))
    sender = V1Sender(s)
    sender.send(b"m f=1 1")
    path, auth, _ = h.seen[0]
    assert path.startswith("/write?") and "db=mail" in path and "rp=rp1" in path
    assert "pw" not in path and auth.startswith("Basic ")
    with pytest.raises(SendError) as e:
        sender.send(b"m f=1 1")
    assert (e.value.status, e.value.retry_after, e.value.message) == (503, 3.0, "overloaded")
    assert e.value.retryable
    sender.close()


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_unreachable_is_a_send_error_without_status(api: str) -> None:
    s = InfluxSettings(api=api, url="http://127.0.0.1:9", bucket="b", database="d",
                       timeout_s=2)
    sender = V1Sender(s) if api == "v1" else V2Sender(s)
    with pytest.raises(SendError) as e:
        sender.send(b"m f=1 1")
    assert e.value.status is None and e.value.retryable
    assert "refused" in e.value.message.lower()
    sender.close()
