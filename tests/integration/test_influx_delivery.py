"""Delivery into real servers: InfluxDB 1.6.7 over /write (v1), VictoriaMetrics over
/api/v2/write (v2). Read back with InfluxQL and /api/v1/export."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.agent.influx import InfluxWriter
from prober.agent.spool import Spool, SpoolFull
from prober.config.delivery import InfluxSettings, MiB, SpoolSettings
from prober.config.reader import Secret
from prober.measurement import Measurement
from tests.localstack.influx import InfluxDB1, VictoriaMetrics

pytestmark = pytest.mark.integration

# Sub-microsecond digits on purpose: nanoseconds must survive the trip.
T0 = 1_795_000_000_123_456_789


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    path = tmp_path / "prober.db"
    with Spool(path, SpoolSettings(path=str(path), ballast_bytes=0, min_free_bytes=0)) as sp:
        yield sp


def v1(server: InfluxDB1, db: str, **kw: object) -> InfluxSettings:
    return InfluxSettings(api="v1", url=server.url, database=db, **kw)  # type: ignore[arg-type]


def v2(server: VictoriaMetrics, **kw: object) -> InfluxSettings:
    return InfluxSettings(api="v2", url=server.url, bucket="mail", org="acme",  # type: ignore
                          token=Secret("env:T", "any"), **kw)


def seq_points(n: int, name: str = "mail_access", start: int = 0) -> list[Measurement]:
    return [Measurement(name, {"vantage": "v1", "mailbox": "alice"},
                        {"seq": i, "total_s": i / 1000}, T0 + i * 1_000_000)
            for i in range(start, start + n)]


def test_v1_points_read_back_exact(influxdb1: InfluxDB1, influx_db: str, spool: Spool) -> None:
    points = [
        Measurement("mail_roundtrip",
                    {"vantage": "v-1", "route": "out bound,x=y", "direction": "outbound"},
                    {"outcome": 'del"ivered\\', "smtp_total_s": 0.12345678901234568,
                     "hops": 3, "big": 2**62, "negative": -7, "flag": True, "off": False},
                    T0),
        Measurement("mail_roundtrip",
                    {"vantage": "v-1", "route": "out bound,x=y", "direction": "outbound"},
                    {"outcome": "late", "smtp_total_s": 1e-9, "hops": 0, "big": 1,
                     "negative": 0, "flag": False, "off": True},
                    T0 + 1),
    ]
    spool.append(points)
    r = InfluxWriter(v1(influxdb1, influx_db), spool).drain_once()
    assert (r.ok, r.delivered, r.remaining) == (True, 2, 0)

    rows = influxdb1.rows('SELECT * FROM "mail_roundtrip" GROUP BY *', db=influx_db)
    assert len(rows) == 2
    for row, p in zip(sorted(rows, key=lambda r: r["time"]), points, strict=True):
        assert row["time"] == p.time_ns
        for k, v in p.tags.items():
            assert row[k] == v
        for k, v in p.fields.items():
            if isinstance(v, float):  # JSON may render 2.0 as 2: the type is checked below
                assert float(row[k]) == v, k
            else:
                assert row[k] == v and type(row[k]) is type(v), k
    types = {r["fieldKey"]: r["fieldType"]
             for r in influxdb1.rows('SHOW FIELD KEYS FROM "mail_roundtrip"', db=influx_db)}
    assert types == {"outcome": "string", "smtp_total_s": "float", "hops": "integer",
                     "big": "integer", "negative": "integer", "flag": "boolean",
                     "off": "boolean"}
    tags = influxdb1.rows('SHOW TAG KEYS FROM "mail_roundtrip"', db=influx_db)
    assert {r["tagKey"] for r in tags} == {"vantage", "route", "direction"}


def test_v2_points_read_back_from_victoriametrics(victoriametrics: VictoriaMetrics,
                                                  spool: Spool) -> None:
    # VictoriaMetrics keeps numbers only (a string field reads back as 0, a bool as 0/1)
    # and milliseconds; ns exactness is checked on InfluxDB above.
    name = "vm_roundtrip"
    points = [Measurement(name, {"vantage": "v 1", "mailbox": "a,b=c"},
                          {"total_s": 0.123456789, "bytes": 2**40 + i, "ok": i % 2 == 0},
                          T0 + i * 1_000_000) for i in range(5)]
    spool.append(points)
    r = InfluxWriter(v2(victoriametrics), spool).drain_once()
    assert (r.ok, r.delivered) == (True, 5)
    series = {s["metric"]["__name__"]: s
              for s in victoriametrics.export(f'{{__name__=~"{name}_.*"}}')}
    assert set(series) == {f"{name}_total_s", f"{name}_bytes", f"{name}_ok"}
    for s in series.values():
        assert s["metric"]["vantage"] == "v 1" and s["metric"]["mailbox"] == "a,b=c"
        assert s["timestamps"] == [p.time_ns // 1_000_000 for p in points]
    assert series[f"{name}_total_s"]["values"] == [0.123456789] * 5
    assert series[f"{name}_bytes"]["values"] == [2**40 + i for i in range(5)]
    assert series[f"{name}_ok"]["values"] == [1, 0, 1, 0, 1]


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_outage_of_1000_points_then_all_arrive_once(api: str, tmp_path: Path,
                                                    spool: Spool) -> None:
    # Its own server: this test stops it.
    server: InfluxDB1 | VictoriaMetrics
    server = InfluxDB1(tmp_path / "srv") if api == "v1" else VictoriaMetrics(tmp_path / "srv")
    with server:
        if isinstance(server, InfluxDB1):
            server.create_database("outage")
            settings = v1(server, "outage", batch_size=300)
        else:
            settings = v2(server, batch_size=300)
        writer = InfluxWriter(settings, spool)
        spool.append(seq_points(10))
        assert writer.drain_once().delivered == 10

        server.stop()
        for i, p in enumerate(seq_points(1000, start=10)):
            spool.append([p])  # one by one, as the probes produce them
            if i % 100 == 0:
                r = writer.drain_once()
                assert not r.ok and r.status is None and "unreachable" in (r.error or "")
        assert spool.depth() == 1000
        assert writer.status.state == "failing"

        server.start()
        r = writer.drain_once()
        assert (r.ok, r.delivered, r.remaining) == (True, 1000, 0)
        assert writer.status.state == "ok"

        if isinstance(server, InfluxDB1):
            rows = server.rows('SELECT "seq" FROM "mail_access"', db="outage")
            seqs = [row["seq"] for row in rows]
        else:
            [s] = server.export('{__name__="mail_access_seq"}')
            seqs = s["values"]  # VictoriaMetrics keeps duplicates: a resend would show
        assert sorted(seqs) == list(range(1010))


def test_malformed_line_goes_to_dead_letters_good_lines_stored(
        influxdb1: InfluxDB1, influx_db: str, spool: Spool) -> None:
    spool.append(seq_points(5))
    spool.append_lines([f"mail_access,vantage=v1 seq= {T0 + 99}"])  # no field value
    spool.append(seq_points(5, start=5))
    # a field type conflict: seq was an integer, this says string
    spool.append([Measurement("mail_access", {"vantage": "v1"}, {"seq": "ten"}, T0 + 7)])
    r = InfluxWriter(v1(influxdb1, influx_db, batch_size=100), spool).drain_once()
    assert (r.ok, r.delivered, r.dead, r.remaining) == (True, 10, 2, 0)

    rows = influxdb1.rows('SELECT "seq" FROM "mail_access"', db=influx_db)
    assert sorted(row["seq"] for row in rows) == list(range(10))
    dead = spool.dead_rows()
    assert [d.line for d in dead] == [f"mail_access,vantage=v1 seq= {T0 + 99}",
                                      f'mail_access,vantage=v1 seq="ten" {T0 + 7}']
    assert all(d.status == 400 for d in dead)
    assert "unable to parse" in dead[0].reason and "missing field value" in dead[0].reason
    assert "field type conflict" in dead[1].reason


def test_wrong_password_keeps_points_and_names_the_cause(
        influxdb1_auth: InfluxDB1, spool: Spool, caplog) -> None:
    server = influxdb1_auth
    server.create_database("authdb")
    server.create_user("writer", "right-pw")
    server.grant("WRITE", "authdb", "writer")
    spool.append(seq_points(20))
    bad = v1(server, "authdb", username="writer", password=Secret("env:INFLUX_PW", "wrong-pw"))
    with caplog.at_level(logging.ERROR, "prober.influx"):
        r = InfluxWriter(bad, spool).drain_once()
    assert not r.ok and r.status == 401 and not r.retryable
    assert "401" in (r.error or "") and "username and password" in (r.error or "")
    assert "env:INFLUX_PW" in (r.error or "") and "wrong-pw" not in caplog.text
    assert "401" in caplog.text
    assert spool.depth() == 20

    # a user without WRITE on the database: 403, kept
    server.create_user("reader", "reader-pw")
    ro = v1(server, "authdb", username="reader", password=Secret("env:X", "reader-pw"))
    r = InfluxWriter(ro, spool).drain_once()
    assert r.status == 403 and "may not write" in (r.error or "") and spool.depth() == 20

    good = v1(server, "authdb", username="writer", password=Secret("env:INFLUX_PW", "right-pw"))
    assert InfluxWriter(good, spool).drain_once().delivered == 20
    assert len(server.rows('SELECT "seq" FROM "mail_access"', db="authdb")) == 20


def test_wrong_token_keeps_points_and_names_the_cause(tmp_path: Path, spool: Spool) -> None:
    with VictoriaMetrics(tmp_path / "vm", username="prober", password="pw") as vm:
        spool.append(seq_points(7))
        r = InfluxWriter(v2(vm), spool).drain_once()
        assert not r.ok and r.status == 401
        assert "check the token" in (r.error or "") and "env:T" in (r.error or "")
        assert spool.depth() == 7


def test_v2_against_influxdb_1_6_says_use_v1(influxdb1: InfluxDB1, spool: Spool) -> None:
    spool.append(seq_points(3))
    s = InfluxSettings(api="v2", url=influxdb1.url, bucket="mail", org="acme")
    r = InfluxWriter(s, spool).drain_once()
    assert r.status == 404 and 'api = "v1"' in (r.error or "") and spool.depth() == 3


def test_free_space_floor_refuses_new_points_and_keeps_draining(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path, caplog) -> None:
    path = tmp_path / "floor.db"
    with Spool(path, SpoolSettings(path=str(path), ballast_bytes=0, min_free_bytes=0)) as sp:
        sp.append(seq_points(5))
    floor = shutil.disk_usage(tmp_path).free + 512 * MiB
    with Spool(path, SpoolSettings(path=str(path), ballast_bytes=MiB,
                                   min_free_bytes=floor)) as sp:
        with caplog.at_level(logging.ERROR, "prober.spool"), pytest.raises(SpoolFull) as e:
            sp.append(seq_points(3, start=5))
        assert "min_free_bytes" in str(e.value) and sp.refused_count == 3
        assert "refused 3 new point(s)" in caplog.text
        assert sp.depth() == 5
        # below the floor, delivered points can still leave the spool
        r = InfluxWriter(v1(influxdb1, influx_db), sp).drain_once()
        assert (r.ok, r.delivered) == (True, 5)
    rows = influxdb1.rows('SELECT "seq" FROM "mail_access"', db=influx_db)
    assert sorted(row["seq"] for row in rows) == [0, 1, 2, 3, 4]


def test_daemon_loop_rides_out_an_outage(tmp_path: Path, spool: Spool, caplog) -> None:
    """The daemon's `run()`: points appended while InfluxDB is down arrive after it returns;
    the outage and the return are each logged once."""
    import asyncio

    server = InfluxDB1(tmp_path / "srv")
    with server:
        server.create_database("daemon")
        settings = v1(server, "daemon", batch_size=100, backoff_min_s=0.05,
                      backoff_max_s=0.2, interval_s=0.05)
        writer = InfluxWriter(settings, spool)

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(writer.run(stop))
            server.stop()
            for p in seq_points(300):
                spool.append([p])
                writer.notify()
                await asyncio.sleep(0)
            await asyncio.sleep(0.5)  # several failed attempts with backoff
            assert writer.status.state == "failing" and spool.depth() == 300
            server.start()
            for _ in range(200):
                if spool.depth() == 0:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 10)

        with caplog.at_level(logging.INFO, "prober.influx"):
            asyncio.run(main())
        assert spool.depth() == 0 and writer.status.state == "ok"
        rows = server.rows('SELECT "seq" FROM "mail_access"', db="daemon")
        assert sorted(r["seq"] for r in rows) == list(range(300))
        assert caplog.text.count("InfluxDB unreachable") == 1
        assert caplog.text.count("InfluxDB back") == 1
