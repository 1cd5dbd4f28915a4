"""TLS is verified by default; a CA file makes a private certificate trusted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.agent.influx import InfluxWriter
from prober.agent.spool import Spool
from prober.config.delivery import InfluxSettings, SpoolSettings
from prober.measurement import Measurement
from tests.localstack.influx import InfluxDB1, VictoriaMetrics

pytestmark = pytest.mark.integration

T0 = 1_795_000_000_000_000_000


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    path = tmp_path / "prober.db"
    with Spool(path, SpoolSettings(path=str(path), ballast_bytes=0, min_free_bytes=0)) as sp:
        # 1 ms apart: VictoriaMetrics keeps milliseconds only
        sp.append([Measurement("tls_check", {"vantage": "v1"}, {"seq": i}, T0 + i * 1_000_000)
                   for i in range(3)])
        yield sp


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_untrusted_certificate_keeps_points_and_ca_file_fixes_it(
        api: str, tmp_path: Path, spool: Spool) -> None:
    server: InfluxDB1 | VictoriaMetrics
    server = (InfluxDB1(tmp_path / "srv", tls=True) if api == "v1"
              else VictoriaMetrics(tmp_path / "srv", tls=True))
    with server:
        assert server.url.startswith("https://127.0.0.1:")
        if isinstance(server, InfluxDB1):
            server.create_database("tls")
        common = {"api": api, "url": server.url, "database": "tls", "bucket": "tls",
                  "timeout_s": 5.0}

        r = InfluxWriter(InfluxSettings(**common), spool).drain_once()  # type: ignore[arg-type]
        assert not r.ok and r.status is None
        assert "TLS certificate not trusted" in (r.error or "") and "ca_file" in (r.error or "")
        assert spool.depth() == 3

        trusted = InfluxSettings(**common, ca_file=str(server.cert_file))  # type: ignore
        r = InfluxWriter(trusted, spool).drain_once()
        assert (r.ok, r.delivered) == (True, 3)
        if isinstance(server, InfluxDB1):
            rows = server.rows('SELECT "seq" FROM "tls_check"', db="tls")
            assert [row["seq"] for row in rows] == [0, 1, 2]
        else:
            [series] = server.export('{__name__="tls_check_seq"}')
            assert series["values"] == [0, 1, 2]
