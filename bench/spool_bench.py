"""Spool append rate and drain rate into a local InfluxDB 1.6.7 (and VictoriaMetrics).

    .venv/bin/python bench/spool_bench.py [--append N] [--drain N] [--batch N]

Append: points committed one by one (one transaction, one fsync each), as the probes
produce them. Drain: the spool emptied into the server through the writer, including
reading the rows and deleting them after each acknowledged batch. Targets on the 2-core
reference machine: append >= 2,000 points/s, drain >= 20,000 points/s.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

# the local test servers live under tests/, which is not installed: run from a clone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prober.agent.influx import InfluxWriter
from prober.agent.spool import Spool
from prober.config.delivery import InfluxSettings, SpoolSettings
from prober.measurement import Measurement
from tests.localstack.influx import InfluxDB1, VictoriaMetrics

T0 = 1_795_000_000_000_000_000


def point(i: int) -> Measurement:
    # Shaped like a mail_access point: a handful of tags, five fields.
    return Measurement("mail_access",
                       {"vantage": "bench", "mailbox": f"box{i % 20}", "protocol": "imap",
                        "outcome": "ok"},
                       {"connect_s": 0.0123, "tls_s": 0.0456, "auth_s": 0.0789,
                        "total_s": 0.1368, "seq": i}, T0 + i * 1000)


def bench_disk_ceiling(directory: Path, n: int) -> float:
    """Bare SQLite commits (WAL, synchronous=FULL) on the same disk: the fsync-bound
    ceiling any one-point-per-transaction spool can reach here."""
    conn = sqlite3.connect(directory / "ceiling.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, line TEXT)")
    line = point(0).to_line()
    start = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (line) VALUES (?)", (line,))
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def bench_append(spool: Spool, n: int) -> float:
    points = [point(i) for i in range(n)]
    start = time.perf_counter()
    for p in points:
        spool.append([p])
    return n / (time.perf_counter() - start)


def fill(spool: Spool, n: int, offset: int) -> None:
    for s in range(0, n, 10_000):
        spool.append([point(offset + i) for i in range(s, min(n, s + 10_000))])


def bench_drain(spool: Spool, settings: InfluxSettings, n: int, offset: int) -> float:
    fill(spool, n, offset)
    writer = InfluxWriter(settings, spool)
    start = time.perf_counter()
    result = writer.drain_once()
    elapsed = time.perf_counter() - start
    writer.close()
    if not result.ok or result.delivered < n:
        raise SystemExit(f"drain failed: {result}")
    return result.delivered / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--append", type=int, default=5000, help="points appended one by one")
    ap.add_argument("--drain", type=int, default=200_000, help="points drained per server")
    ap.add_argument("--batch", type=int, default=5000, help="[influx] batch_size")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as tmp:
        d = Path(tmp)
        path = d / "prober.db"
        spool = Spool(path, SpoolSettings(path=str(path)))
        ceiling = bench_disk_ceiling(d, args.append)
        rate = bench_append(spool, args.append)
        print(f"append (one point per transaction, synchronous=FULL): {rate:,.0f} points/s "
              f"({args.append} points, target >= 2,000)")
        print(f"  disk ceiling, bare SQLite commits on the same disk: {ceiling:,.0f} /s")
        spool.ack([r.id for r in spool.read_batch(10**9)])
        with InfluxDB1(d / "influxdb") as influx:
            influx.create_database("bench")
            s = InfluxSettings(api="v1", url=influx.url, database="bench",
                               batch_size=args.batch)
            rate = bench_drain(spool, s, args.drain, 0)
            print(f"drain to InfluxDB 1.6.7 (v1 /write, batch {args.batch}): {rate:,.0f} "
                  f"points/s ({args.drain} points, target >= 20,000)")
            count = influx.rows('SELECT count("seq") FROM "mail_access"', db="bench")[0]
            assert count["count"] == args.drain, count
        with VictoriaMetrics(d / "vm") as vm:
            s = InfluxSettings(api="v2", url=vm.url, bucket="bench", batch_size=args.batch)
            rate = bench_drain(spool, s, args.drain, args.drain)
            print(f"drain to VictoriaMetrics (v2 /api/v2/write via influxdb-client, batch "
                  f"{args.batch}): {rate:,.0f} points/s ({args.drain} points)")
        spool.close()


if __name__ == "__main__":
    main()
