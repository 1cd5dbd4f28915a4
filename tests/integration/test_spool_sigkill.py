"""The writer SIGKILLed mid-drain, again and again: no point is lost, none counted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prober.agent.influx import InfluxWriter
from prober.agent.spool import Spool
from prober.config import load
from prober.measurement import Measurement
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration

TOTAL = 20_000
T0 = 1_795_000_000_000_000_000
ROOT = Path(__file__).resolve().parents[2]


def test_writer_killed_mid_batch_then_restarted_loses_nothing(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    cfg = tmp_path / "probes.toml"
    cfg.write_text(f"""
[vantage]
name = "v1"
state_dir = "{tmp_path}"

[spool]
ballast_bytes = 0
min_free_bytes = 0

[influx]
api = "v1"
url = "{influxdb1.url}"
database = "{influx_db}"
batch_size = 500
""")
    config = load(cfg)
    spool = Spool(config.spool.path, config.spool)
    for start in range(0, TOTAL, 5000):
        spool.append([Measurement("mail_access", {"vantage": "v1"}, {"seq": i}, T0 + i)
                      for i in range(start, start + 5000)])

    kills = 0
    for _ in range(3):
        before = spool.depth()
        proc = subprocess.Popen([sys.executable, "-m", "prober.commands.spool", "flush",
                                 "-c", str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # Kill once a few batches went through: the next one is then in flight.
        while spool.depth() > before - 1700 and proc.poll() is None:
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.002)
        if proc.poll() is not None:
            pytest.fail(f"writer finished before it could be killed: "
                        f"{proc.stderr.read().decode() if proc.stderr else ''}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
        kills += 1
        after = spool.depth()
        assert 0 < after < before
        # Everything acknowledged (deleted from the spool) is in InfluxDB already.
        stored = influxdb1.rows('SELECT count("seq") FROM "mail_access"', db=influx_db)
        # (In trial runs about half the kills fell between InfluxDB's 204 and the delete,
        # so the next run resends that batch: InfluxDB overwrites it, the count stays exact.)
        assert stored[0]["count"] >= TOTAL - after

    assert kills == 3
    r = InfluxWriter(config.influx, spool).drain_once()  # type: ignore[arg-type]
    assert r.ok and spool.depth() == 0
    spool.close()
    counts = influxdb1.rows('SELECT count("seq"), count(distinct("seq")), min("seq"), '
                            'max("seq") FROM "mail_access"', db=influx_db)[0]
    assert (counts["count"], counts["count_1"], counts["min"], counts["max"]) == (
        TOTAL, TOTAL, 0, TOTAL - 1)
