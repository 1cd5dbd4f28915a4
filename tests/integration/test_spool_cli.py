"""`deliver()` (what `prober check` calls) and the `prober spool` commands, against the
real InfluxDB 1.6.7: store-only mode, --no-write, backfill once [influx] is configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from prober.agent.spool import Spool
from prober.commands.deliver import deliver
from prober.commands.spool import spool
from prober.config import load
from prober.measurement import Measurement
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration

T0 = 1_795_000_000_000_000_000


def write_config(path: Path, state: Path, influx: str = "") -> Path:
    path.write_text(f"""
[vantage]
name = "v1"
state_dir = "{state}"

[spool]
ballast_bytes = 0
min_free_bytes = 0
{influx}
""")
    return path


def influx_section(server: InfluxDB1, db: str, extra: str = "") -> str:
    return f"""
[influx]
api = "v1"
url = "{server.url}"
database = "{db}"
{extra}
"""


def points(n: int, start: int = 0) -> list[Measurement]:
    return [Measurement("mail_access", {"vantage": "v1", "protocol": "imap"},
                        {"seq": i, "total_s": 0.5}, T0 + i * 60_000_000_000)
            for i in range(start, start + n)]


def test_store_only_then_backfill_when_influx_is_configured(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    local = write_config(tmp_path / "local.toml", tmp_path / "state")
    msg = deliver(load(local), points(12))
    assert msg.startswith("12 points kept in the local spool") and "no [influx]" in msg

    runner = CliRunner()
    out = runner.invoke(spool, ["status", "-c", str(local)])
    assert out.exit_code == 0, out.output
    assert "points:           12" in out.output and "store only" in out.output
    out = runner.invoke(spool, ["export", "-c", str(local), "--measurement", "mail_access"])
    assert out.exit_code == 0
    assert out.output.splitlines() == [p.to_line() for p in points(12)]
    out = runner.invoke(spool, ["export", "-c", str(local), "--since",
                                _iso(T0 + 5 * 60_000_000_000)])
    assert out.output.splitlines() == [p.to_line() for p in points(12)[5:]]

    # The same state directory, now with [influx]: the next flush backfills everything.
    remote = write_config(tmp_path / "remote.toml", tmp_path / "state",
                          influx_section(influxdb1, influx_db))
    out = runner.invoke(spool, ["flush", "-c", str(remote)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("12 points delivered")
    rows = influxdb1.rows('SELECT "seq" FROM "mail_access"', db=influx_db)
    assert [r["seq"] for r in rows] == list(range(12))
    out = runner.invoke(spool, ["status", "-c", str(remote), "--json"])
    assert '"depth": 0' in out.output and '"mode": "deliver"' in out.output


def _iso(ns: int) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).isoformat()


def test_deliver_writes_through_or_spools(influxdb1: InfluxDB1, influx_db: str,
                                          tmp_path: Path) -> None:
    cfg = load(write_config(tmp_path / "p.toml", tmp_path / "state",
                            influx_section(influxdb1, influx_db)))
    with Spool(cfg.spool.path, cfg.spool) as sp:  # three points left by an earlier run
        assert sp.append(points(3)) == 3

    msg = deliver(cfg, points(2, start=3))
    assert msg.startswith("2 points delivered to InfluxDB") and "3 points spooled earlier" in msg
    rows = influxdb1.rows('SELECT "seq" FROM "mail_access"', db=influx_db)
    assert [r["seq"] for r in rows] == [0, 1, 2, 3, 4]


def test_deliver_reports_why_points_stay_spooled(influxdb1_auth: InfluxDB1,
                                                 tmp_path: Path, monkeypatch) -> None:
    influxdb1_auth.create_database("cli_auth")
    monkeypatch.setenv("PROBER_TEST_PW", "not-the-password")
    cfg = load(write_config(tmp_path / "p.toml", tmp_path / "state", influx_section(
        influxdb1_auth, "cli_auth", 'username = "admin"\npassword_env = "PROBER_TEST_PW"')))
    msg = deliver(cfg, points(4))
    assert msg.startswith("4 points spooled, 4 waiting")
    assert "401" in msg and "username and password" in msg
    assert "not-the-password" not in msg

    runner = CliRunner()
    out = runner.invoke(spool, ["flush", "-c", str(tmp_path / "p.toml")])
    assert out.exit_code == 1 and "401" in out.output and "4 left" in out.output


def test_deliver_when_influxdb_is_down(tmp_path: Path) -> None:
    cfg = load(write_config(tmp_path / "p.toml", tmp_path / "state",
                            '[influx]\napi = "v1"\nurl = "http://127.0.0.1:9"\n'
                            'database = "d"\ntimeout_s = 2\n'))
    msg = deliver(cfg, points(2))
    assert msg.startswith("2 points spooled") and "unreachable" in msg

