"""How long `prober score` takes for a month of one-minute data, from InfluxDB and from the
local spool, and how much memory the spool's scoring needs.

20 routes x 3 vantages send a canary every minute (written twice, "pending" then with its
fate, as the agent does), 10 mailboxes x 2 protocols are checked every minute, plus
heartbeats and two webmail profiles: September 2026. The same points go into the local
InfluxDB 1.6.7 and into a spool file. Then, interleaved, `--runs` times:
- the score from InfluxDB (target: within 1.5x of the raw InfluxQL it sends),
- the same InfluxQL requests sent with curl, one after the other (the database's own time),
- the score from the spool, in a child process whose peak RSS is read from the kernel
  (target: under 60 s and under 300 MB).
Run: .venv/bin/python bench/score_bench.py [--days 30] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prober.agent.spool import Spool  # noqa: E402
from prober.config.delivery import SpoolSettings  # noqa: E402
from prober.config.sla import SlaSettings  # noqa: E402
from prober.sla.query import InfluxEvidence, InfluxTarget  # noqa: E402
from prober.sla.score import score  # noqa: E402
from tests.localstack.influx import InfluxDB1  # noqa: E402

VANTAGES = ("v1", "v2", "v3")
MAILBOXES = [f"m{i}@example.test" for i in range(10)]
DIRECTIONS = ("outbound", "inbound", "internal")
ROUTES = [(f"r{i:02d}", MAILBOXES[i % 10], MAILBOXES[(i + 3) % 10], DIRECTIONS[i % 3])
          for i in range(20)]
START = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp())

# Scores the spool in a child process, so that its peak RSS is the scoring's own.
CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
from prober.config.sla import SlaSettings
from prober.sla.local import spool_evidence
from prober.sla.score import score
t0 = time.monotonic()
ev = spool_evidence({path!r}, {start}, {end})
card = score(ev, SlaSettings(), 2026, 9, now_ns=time.time_ns())
ev.close()
took = time.monotonic() - t0
# VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
cpu = sum(os.times()[:2])
print(took, card.send.n, round(card.send.mean_s, 6), len(card.conn.down), hwm, cpu)
"""


def lines_for_minute(m: int, rnd: random.Random) -> tuple[list[str], list[str]]:
    """(lines for InfluxDB, lines for the spool: the same plus each canary's pending write)."""
    out: list[str] = []
    pending: list[str] = []
    for k, v in enumerate(VANTAGES):
        ns = (START + m * 60 + 7 * k) * 10**9
        out.append(f'prober_heartbeat,vantage={v} uptime_s={m * 60.0},missed_ticks=0i,'
                   f'version="bench" {ns}')
        for mb in MAILBOXES:
            for proto in ("smtp", "imap"):
                out.append(f"mail_access,mailbox={mb},outcome=ok,protocol={proto},vantage={v} "
                           f"total_s=0.21,connect_s=0.01 {ns + 1000}")
        for name, sender, recipient, direction in ROUTES:
            d = 20 + rnd.random() * 30
            split = ("" if direction == "inbound"
                     else f",send_delay_s={d * 0.4},receive_delay_s={d * 0.6}")
            key = (f"mail_roundtrip,direction={direction},recipient={recipient},"
                   f"route={name},sender={sender},vantage={v}")
            pending.append(f'{key} canary="c{m}{k}{name}",outcome="pending",smtp_total_s=0.3 '
                           f"{ns + 2000}")
            out.append(f'{key} canary="c{m}{k}{name}",delivery_s={d}{split},outcome="delivered",'
                       f"smtp_total_s=0.3 {ns + 2000}")
        if m % 5 == 0:
            for profile, base in (("narrowband", 20.0), ("broadband", 5.0)):
                r = rnd.random()
                out.append(f"webmail_load,outcome=ok,profile={profile},target=wm,vantage={v} "
                           f'load_s={base + r},open_s={base + r},contract_class="{profile}",'
                           f"status=200i {ns + 3000}")
    return out, pending + out


class RecordingEvidence(InfluxEvidence):
    """Keeps every request's statements, so curl can send exactly the same."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.requests: list[list[str]] = []

    def run(self, statements):  # type: ignore[no-untyped-def]
        self.requests.append(list(statements))
        return super().run(statements)


def curl_time(url: str, db: str, requests: list[list[str]], folder: Path) -> float:
    """Seconds for curl to send the requests one after the other and read every answer."""
    files = []
    for i, statements in enumerate(requests):
        f = folder / f"q{i}.txt"
        f.write_text(";\n".join(statements))
        files.append(f)
    t0 = time.monotonic()
    for f in files:
        subprocess.run(["curl", "-sS", "-o", "/dev/null", "--fail", "-X", "POST",
                        f"{url}/query", "--data-urlencode", f"db={db}", "--data-urlencode",
                        "epoch=ns", "--data-urlencode", f"q@{f}"], check=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    minutes = args.days * 1440
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp, InfluxDB1(tmp) as server:
        folder = Path(tmp)
        server.create_database("bench")
        spool_path = folder / "spool" / "prober.db"
        settings = SpoolSettings(path=str(spool_path), retain=True, max_age_s=1e9,
                                 max_bytes=2**40, ballast_bytes=0, min_free_bytes=0)
        t0 = time.monotonic()
        influx_points = spool_points = 0
        influx_s = spool_s = 0.0
        with httpx.Client(base_url=server.url, timeout=300) as client, \
                Spool(spool_path, settings) as spool:
            batch: list[str] = []
            sbatch: list[str] = []
            for m in range(minutes):
                a, b = lines_for_minute(m, rnd)
                batch.extend(a)
                sbatch.extend(b)
                if len(batch) >= 50_000 or m == minutes - 1:
                    t1 = time.monotonic()
                    r = client.post("/write", params={"db": "bench", "precision": "ns"},
                                    content="\n".join(batch).encode())
                    r.raise_for_status()
                    t2 = time.monotonic()
                    spool.append_lines(sbatch)
                    influx_s += t2 - t1
                    spool_s += time.monotonic() - t2
                    influx_points += len(batch)
                    spool_points += len(sbatch)
                    batch, sbatch = [], []
        print(f"month: {args.days} days, {influx_points:,} points in InfluxDB 1.6.7 "
              f"(written in {influx_s:.1f} s), {spool_points:,} rows in the spool "
              f"({spool_path.stat().st_size / 2**20:,.0f} MiB, written in {spool_s:.1f} s); "
              f"generated and written in {time.monotonic() - t0:.1f} s")
        end_ns = (START + minutes * 60) * 10**9
        influx_times, curl_times, spool_times, spool_rss = [], [], [], []
        spool_cpu: list[float] = []
        load_before = os.getloadavg()[0]
        requests: list[list[str]] = []
        for attempt in range(1, args.runs + 1):
            qdir = folder / f"q{attempt}"
            qdir.mkdir()
            raw = 0.0
            if attempt % 2 == 0:  # alternate which goes first: the machine's load drifts
                raw = curl_time(server.url, "bench", requests, qdir)
            ev = RecordingEvidence(InfluxTarget(server.url, "bench"), timeout_s=600)
            t0, c0 = time.monotonic(), time.process_time()
            card = score(ev, SlaSettings(), 2026, 9, now_ns=time.time_ns())
            took, cpu = time.monotonic() - t0, time.process_time() - c0
            ev.close()
            requests = ev.requests
            if attempt % 2 == 1:
                raw = curl_time(server.url, "bench", requests, qdir)
            influx_times.append(took)
            curl_times.append(raw)
            print(f"run {attempt}: InfluxDB score {took:.1f} s (the scorer's own CPU {cpu:.1f} s; "
                  f"{ev.queries} statements in {len(ev.requests)} requests); the same requests "
                  f"with curl {raw:.1f} s; ratio {took / raw:.2f}; send mean "
                  f"{card.send.mean_s:.4f} s over {card.send.n:,} canaries, down "
                  f"{len(card.conn.down)} min")
            child = subprocess.run(
                [sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(spool_path),
                                                     start=START * 10**9, end=end_ns)],
                check=True, capture_output=True, text=True)
            took_s, n, mean, down, rss_kb, cpu_s = child.stdout.split()
            spool_cpu.append(float(cpu_s))
            spool_times.append(float(took_s))
            spool_rss.append(int(rss_kb) / 1024)
            print(f"run {attempt}: spool score {float(took_s):.1f} s (CPU {float(cpu_s):.1f} s), "
                  f"peak RSS "
                  f"{int(rss_kb) / 1024:.0f} MB; send mean {float(mean):.4f} s over "
                  f"{int(n):,} canaries, down {down} min")
            shutil.rmtree(qdir)
        print(f"median: InfluxDB {statistics.median(influx_times):.1f} s, raw InfluxQL with "
              f"curl {statistics.median(curl_times):.1f} s, ratio "
              f"{statistics.median(influx_times) / statistics.median(curl_times):.2f} "
              f"(target <= 1.5); spool {statistics.median(spool_times):.1f} s, CPU "
              f"{statistics.median(spool_cpu):.1f} s (target < 60), peak RSS "
              f"{max(spool_rss):.0f} MB (target < 300); load average {load_before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after (2 cores)")


if __name__ == "__main__":
    main()
