"""The daemon's Prometheus exposition: names and units by the conventions, the newest
settled point per series, and text that Prometheus's own parser reads."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prober.agent.prometheus import Exposition
from prober.measurement import Measurement

T0 = 1_795_556_293_000_000_000
V = {"vantage": "fra1"}


def access(ip: str, outcome: str, t: int = T0, **fields: float | str) -> Measurement:
    return Measurement("mail_access", {**V, "mailbox": "a@example.test", "protocol": "imap",
                                       "family": "ipv4", "outcome": outcome},
                       {"connect_s": 0.01, "total_s": 0.2, "peer_ip": ip,
                        "cert_expiry_days": 3.5, "tls_version": "TLSv1.3", **fields}, t)


def canary(outcome: str, t: int, delivery_s: float | None = None) -> Measurement:
    return Measurement("mail_roundtrip", {**V, "route": "a-b", "sender": "a@example.test",
                                          "recipient": "b@example.test",
                                          "direction": "internal"},
                       {"outcome": outcome, "canary": "0123456789abcdef", "seq": 7,
                        "delivery_s": delivery_s, "clock_skew": False, "hops": 2}, t)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:
    matches = [v for (n, lab), v in got.items()
               if n == name and set(labels.items()) <= set(lab)]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_access_points_one_series_per_address_in_base_units() -> None:
    exp = Exposition()
    exp.observe([access("127.0.0.1", "ok"), access("127.0.0.2", "fail", T0 + 1,
                                                    error="connect: refused")])
    text = exp.render()
    got = samples(text)
    assert value(got, "prober_mail_access_success", address="127.0.0.1") == 1
    assert value(got, "prober_mail_access_success", address="127.0.0.2") == 0
    assert value(got, "prober_mail_access_connect_seconds", address="127.0.0.1") == 0.01
    assert value(got, "prober_mail_access_cert_expiry_seconds",
                 address="127.0.0.1") == 3.5 * 86400
    assert value(got, "prober_mail_access_timestamp_seconds",
                 address="127.0.0.1") == pytest.approx(T0 / 1e9)
    assert "# TYPE prober_mail_access_connect_seconds gauge" in text
    # the outcome is not a label, strings are not samples
    assert not any("outcome" in dict(lab) for (n, lab) in got if n.startswith("prober_mail_a"))
    assert "TLSv1.3" not in text and "refused" not in text


def test_the_newest_point_of_a_series_wins_and_an_older_correction_does_not() -> None:
    exp = Exposition()
    exp.observe([access("127.0.0.1", "ok", T0 + 60)])
    exp.observe([access("127.0.0.1", "fail", T0)])  # older: ignored
    assert value(samples(exp.render()), "prober_mail_access_success") == 1
    exp.observe([access("127.0.0.1", "fail", T0 + 120)])
    assert value(samples(exp.render()), "prober_mail_access_success") == 0


def test_canaries_in_flight_are_not_shown_the_newest_settled_one_is() -> None:
    exp = Exposition()
    exp.observe([canary("pending", T0)])
    assert exp.render() == ""
    exp.observe([canary("delivered", T0, 1.5), canary("pending", T0 + 60)])
    got = samples(exp.render())
    assert value(got, "prober_mail_roundtrip_delivery_seconds") == 1.5
    assert value(got, "prober_mail_roundtrip_outcome", outcome="delivered") == 1
    assert value(got, "prober_mail_roundtrip_outcome", outcome="lost") == 0
    assert value(got, "prober_mail_roundtrip_clock_skew") == 0
    assert not [n for n, _ in got if n.endswith("_seq")]
    assert {lab for (n, lab) in got if n == "prober_mail_roundtrip_outcome"} == {
        tuple(sorted({**V, "route": "a-b", "sender": "a@example.test",
                      "recipient": "b@example.test", "direction": "internal",
                      "outcome": o}.items()))
        for o in ("delivered", "late", "lost", "send_failed", "abandoned")}


def test_heartbeat_counters_and_gauges() -> None:
    exp = Exposition()
    exp.observe([Measurement("prober_heartbeat", V, {
        "uptime_s": 12.5, "spool_depth": 3, "missed_ticks": 1, "version": "0.1.0"}, T0)])
    text = exp.render()
    got = samples(text)
    assert value(got, "prober_uptime_seconds") == 12.5
    assert value(got, "prober_spool_depth") == 3
    assert "# TYPE prober_missed_ticks_total counter" in text
    assert value(got, "prober_missed_ticks_total") == 1


def test_label_values_are_escaped() -> None:
    exp = Exposition()
    exp.observe([Measurement("webmail_load", {**V, "target": 'we"ird\\name\nx',
                                              "profile": "broadband", "outcome": "ok"},
                             {"open_s": 2.5, "bytes": 1000, "bytes_up": 10}, T0)])
    got = samples(exp.render())
    assert value(got, "prober_webmail_load_open_seconds", target='we"ird\\name\nx') == 2.5
    assert value(got, "prober_webmail_load_received_bytes") == 1000
    assert value(got, "prober_webmail_load_sent_bytes") == 10


def test_stale_series_are_dropped() -> None:
    now = [100.0]
    exp = Exposition(stale_after_s=60, clock=lambda: now[0])
    exp.observe([access("127.0.0.1", "ok")])
    now[0] = 150.0
    exp.observe([access("127.0.0.2", "ok")])
    now[0] = 170.0
    addresses = {dict(lab).get("address") for (_, lab) in samples(exp.render())}
    assert addresses == {"127.0.0.2"}


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def test_http_serves_metrics_and_refuses_the_rest() -> None:
    async def scenario() -> None:
        exp = Exposition()
        exp.observe([access("127.0.0.1", "ok")])
        server = await exp.serve("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            ok = await _request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            head, body = ok.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"text/plain; version=0.0.4" in head
            assert value(samples(body.decode()), "prober_mail_access_success") == 1
            missing = await _request(port, b"GET / HTTP/1.1\r\n\r\n")
            assert missing.startswith(b"HTTP/1.1 404")
            post = await _request(port, b"POST /metrics HTTP/1.1\r\n\r\n")
            assert post.startswith(b"HTTP/1.1 405")
            # an endless header is cut off, not buffered
            huge = await _request(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000)
            assert huge == b""
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
