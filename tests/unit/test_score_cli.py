"""`prober score` end to end over a small spool: formats, -o, exit codes 1, 2 and 3."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from prober.agent.spool import Spool
from prober.cli import main
from prober.config import load
from prober.measurement import Measurement

OCT = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp()) * 10**9
MIN = 60 * 10**9


def write_config(tmp_path: Path, extra: str = "") -> Path:
    cfg = tmp_path / "probes.toml"
    cfg.write_text(f"""
[vantage]
name = "v1"
state_dir = "{tmp_path}"

[sla]
timezone = "UTC"
mailboxes = ["alice@example.test"]
{extra}
""")
    return cfg


def fill_spool(cfg: Path, minutes_down: int) -> None:
    config = load(cfg)
    ms = []
    # one vantage, alive only while alice's IMAP fails: a proven outage, little coverage
    for i in range(minutes_down):
        t = OCT + (2 * 24 * 60 + i) * MIN + 5 * 10**9
        ms.append(Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0}, t))
        ms.append(Measurement("mail_access", {"vantage": "v1", "mailbox": "alice@example.test",
                                              "protocol": "imap", "outcome": "fail"},
                              {"total_s": 0.1, "error": "refused"}, t))
    with Spool(config.spool.path, config.spool) as spool:
        spool.append(ms)


def test_breach_from_the_spool_in_every_format(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    fill_spool(cfg, 50)
    runner = CliRunner()
    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10", "--format", "json"])
    assert r.exit_code == 1, r.output
    data = json.loads(r.output)
    clauses = {c["id"]: c for c in data["clauses"]}
    assert clauses["connectivity"]["verdict"] == "breach"
    assert clauses["connectivity"]["value"] == 50
    assert clauses["connectivity"]["penalty_owed"] == "double service time for the month"
    assert clauses["fault_time"]["verdict"] == "not enough data"  # 50 <= 100, 99.9 % unknown
    assert clauses["backup"]["verdict"] == "not measured"
    assert data["connectivity"]["incidents"][0]["start"] == "2026-10-03 00:00"
    assert data["connectivity"]["incidents"][0]["minutes"] == 50
    out = tmp_path / "r.html"
    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10", "--format", "html",
                             "-o", str(out)])
    assert r.exit_code == 1 and r.output == ""
    page = out.read_text()
    assert page.count("<svg") == 4 and "<script" not in page and "http" not in page.split(
        "<body>")[1].replace('xmlns="http://www.w3.org/2000/svg"', "")
    for fmt in ("table", "markdown"):
        r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10", "--format", fmt])
        assert r.exit_code == 1
        assert "BREACH" in r.output and "2026-10-03 00:00" in r.output


def test_not_enough_data_exits_2(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    fill_spool(cfg, 3)  # 3 minutes down, the rest of October unknown
    r = CliRunner().invoke(main, ["score", "-c", str(cfg), "--month", "2026-10"])
    assert r.exit_code == 2, r.output
    assert "not enough data" in r.output


def test_errors_exit_3(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    runner = CliRunner()
    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-13"])
    assert r.exit_code == 3 and "--month must be YYYY-MM" in r.output
    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10"])
    assert r.exit_code == 3 and "no spool database" in r.output
    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10", "--bogus"])
    assert r.exit_code == 3
    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10", "--source", "influx"])
    assert r.exit_code == 3 and "no [influx]" in r.output
    bad = write_config(tmp_path, 'quorum = "all"')
    r = runner.invoke(main, ["score", "-c", str(bad), "--month", "2026-10"])
    assert r.exit_code == 3 and "sla.quorum" in r.output


def test_a_hung_influxdb_is_an_error_within_influx_timeout_s(tmp_path: Path) -> None:
    """A server that accepts the connection and never answers (the kernel completes the
    handshake from the listen backlog): the score gives up after [influx] timeout_s."""
    import socket
    import time

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        port = hung.getsockname()[1]
        cfg = write_config(tmp_path, "")
        cfg.write_text(cfg.read_text() + f'\n[influx]\napi = "v1"\nurl = "http://127.0.0.1:{port}"'
                       '\ndatabase = "prober"\ntimeout_s = 1\n')
        t0 = time.monotonic()
        r = CliRunner().invoke(main, ["score", "-c", str(cfg), "--month", "2026-10"])
        took = time.monotonic() - t0
    assert r.exit_code == 3, r.output
    assert f"127.0.0.1:{port}/query" in r.output and "Timeout" in r.output
    assert took < 10  # one statement's timeout, not the old fixed 120 s
