"""`prober check` in a process that cannot open sockets (RLIMIT_NOFILE lowered, as a host
out of descriptors): against a real Postfix and Dovecot every access check and the canary
are the prober's own failures, error_class "prober", shown UNKNOWN (exit 3), never the
provider's CRITICAL; and the judge, over InfluxDB 1.6.7 and over a spool file, charges
no down minute for them."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import spool_evidence
from prober.sla.query import SEND_FAILED_PROBER, InfluxEvidence, InfluxTarget
from prober.sla.score import score
from tests.evidence import write_both
from tests.fixtures_mail import write_config
from tests.localstack.influx import InfluxDB1
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration

# Enough descriptors for Python, the config, the canary key and the event loop, none left
# for a socket (measured: 7 and 8 made every row fail at connect or loading the CA file,
# 12 and more let some checks through).
NOFILE = 7


def _no_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _check(cfg: Path, stack: MailStack, limit: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prober.cli", "check", "-c", str(cfg),
                           "--no-write", "--json"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **stack.env()},
                          preexec_fn=_no_descriptors if limit else None)


def test_a_check_out_of_descriptors_is_unknown_and_never_charged(
        mail_stack: MailStack, influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    cfg = write_config(mail_stack, tmp_path)
    control = _check(cfg, mail_stack, limit=False)
    assert control.returncode == 0, control.stdout + control.stderr  # the stack answers

    r = _check(cfg, mail_stack, limit=True)
    print(r.returncode, r.stdout[:600], r.stderr[-600:])
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["state"] == "UNKNOWN" and doc["summary"].startswith("PROBER UNKNOWN - ")
    rows = doc["rows"]
    assert sorted({row["check"] for row in rows}) == ["canary", "imap", "smtp"]
    for row in rows:
        assert row["state"] == "UNKNOWN", row
        assert row["detail"].startswith("not measured (the prober's own failure): "), row
        assert "EMFILE" in row["detail"], row
    points = [Measurement.from_line(line) for line in doc["measurements"]]
    access = [p for p in points if p.name == "mail_access"]
    canaries = [p for p in points if p.name == "mail_roundtrip"]
    assert len(access) == 6 and len(canaries) == 1
    assert all(p.tags["outcome"] == "fail" and p.fields["error_class"] == "prober"
               for p in access)
    assert canaries[0].fields["outcome"] == "send_failed"
    assert canaries[0].fields["error_class"] == "prober"

    # the judge: a heartbeat for each minute around the check, then the check's points
    t = min(p.time_ns for p in points) // 60_000_000_000
    beats = [Measurement("prober_heartbeat", {"vantage": "local"}, {"uptime_s": 1.0},
                         (t + i) * 60_000_000_000) for i in range(-2, 3)]
    body = [m.to_line() for m in beats] + list(doc["measurements"])
    write_both(influxdb1.url, influx_db, tmp_path / "prober.db", body)
    when = datetime.fromtimestamp(t * 60, UTC)
    now = time.time_ns() + 120 * 10**9
    ev = InfluxEvidence(InfluxTarget(influxdb1.url, influx_db))
    try:
        influx = score(ev, SlaSettings(), when.year, when.month, now_ns=now)
    finally:
        ev.close()
    local = score(spool_evidence(str(tmp_path / "prober.db"), influx.month.start_ns,
                                 influx.month.end_ns),
                  SlaSettings(), when.year, when.month, now_ns=now)
    for card in (influx, local):
        checks = sum(n for n, _ in card.conn.not_measured.values())
        print(card.source, "down", len(card.conn.down), "access not measured", checks,
              "not judged", card.not_judged)
        assert card.conn.down == set() and card.conn.incidents == []
        assert checks == 6
        assert card.not_judged.get(SEND_FAILED_PROBER) == 1
        assert card.events == []
