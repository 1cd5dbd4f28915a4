"""How long `prober score` takes for a month of one-minute data on the local InfluxDB 1.6.7.

20 routes x 3 vantages send a canary every minute, 10 mailboxes x 2 protocols are checked
every minute, plus heartbeats and two webmail profiles: about 5.4 million points for
September 2026. The points are written once (timed separately), then the month is scored
(target: under 30 s). Run: .venv/bin/python bench/score_bench.py
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prober.config.sla import SlaSettings
from prober.sla.query import InfluxEvidence, InfluxTarget
from prober.sla.score import score
from tests.localstack.influx import InfluxDB1

VANTAGES = ("v1", "v2", "v3")
MAILBOXES = [f"m{i}@example.test" for i in range(10)]
DIRECTIONS = ("outbound", "inbound", "internal")
ROUTES = [(f"r{i:02d}", MAILBOXES[i % 10], MAILBOXES[(i + 3) % 10], DIRECTIONS[i % 3])
          for i in range(20)]
START = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp())
MINUTES = 30 * 1440


def lines_for_minute(m: int, rnd: random.Random) -> list[str]:
    out = []
    for k, v in enumerate(VANTAGES):
        ns = (START + m * 60 + 7 * k) * 10**9
        out.append(f"prober_heartbeat,vantage={v} uptime_s={m * 60.0},missed_ticks=0i {ns}")
        for mb in MAILBOXES:
            for proto in ("smtp", "imap"):
                out.append(f"mail_access,mailbox={mb},outcome=ok,protocol={proto},vantage={v} "
                           f"total_s=0.21,connect_s=0.01 {ns + 1000}")
        for name, sender, recipient, direction in ROUTES:
            d = 20 + rnd.random() * 30
            split = ("" if direction == "inbound"
                     else f",send_delay_s={d * 0.4},receive_delay_s={d * 0.6}")
            out.append(f"mail_roundtrip,direction={direction},recipient={recipient},"
                       f"route={name},sender={sender},vantage={v} "
                       f'canary="c{m}{k}{name}",delivery_s={d}{split},outcome="delivered" '
                       f"{ns + 2000}")
        if m % 5 == 0:
            for profile, base in (("narrowband", 20.0), ("broadband", 5.0)):
                r = rnd.random()
                out.append(f"webmail_load,outcome=ok,profile={profile},target=wm,vantage={v} "
                           f'load_s={base + r},open_s={base + r},contract_class="{profile}" '
                           f"{ns + 3000}")
    return out


def main() -> None:
    rnd = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp, InfluxDB1(tmp) as server:
        server.create_database("bench")
        t0 = time.monotonic()
        points = 0
        with httpx.Client(base_url=server.url, timeout=300) as client:
            batch: list[str] = []
            for m in range(MINUTES):
                batch.extend(lines_for_minute(m, rnd))
                if len(batch) >= 50_000 or m == MINUTES - 1:
                    r = client.post("/write", params={"db": "bench", "precision": "ns"},
                                    content="\n".join(batch).encode())
                    r.raise_for_status()
                    points += len(batch)
                    batch = []
        write_s = time.monotonic() - t0
        print(f"wrote {points:,} points for 2026-09 in {write_s:.1f} s "
              f"({points / write_s:,.0f} points/s)")
        for attempt in (1, 2):
            ev = InfluxEvidence(InfluxTarget(server.url, "bench"), timeout_s=600)
            t0 = time.monotonic()
            card = score(ev, SlaSettings(), 2026, 9, now_ns=time.time_ns())
            took = time.monotonic() - t0
            ev.close()
            print(f"score run {attempt}: {took:.1f} s, {ev.queries} InfluxQL statements; "
                  f"send mean {card.send.mean_s:.2f} s over {card.send.n:,} canaries, "
                  f"receive mean {card.receive.mean_s:.2f} s, down {len(card.conn.down)} min, "
                  f"unknown {len(card.conn.unknown)} min")


if __name__ == "__main__":
    main()
