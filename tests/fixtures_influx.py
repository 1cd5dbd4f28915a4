"""Fixtures for the local InfluxDB 1.6.7 and VictoriaMetrics.

The servers are session-scoped (each starts in about 0.1 s, but sharing them keeps the
suite lean); tests that need isolation take `influx_db`, a fresh database per test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.localstack.influx import InfluxDB1, VictoriaMetrics


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """InfluxDB 1.6.7 without auth: `/write` (v1 API) and InfluxQL on `/query`."""
    with InfluxDB1(tmp_path_factory.mktemp("influxdb1")) as server:
        yield server


@pytest.fixture(scope="session")
def influxdb1_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """InfluxDB 1.6.7 with HTTP auth on; `.admin_user` / `.admin_password` can do anything."""
    with InfluxDB1(tmp_path_factory.mktemp("influxdb1-auth"), auth=True) as server:
        yield server


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """VictoriaMetrics: `/api/v2/write` (v2 API) and `/api/v1/export` to read back."""
    with VictoriaMetrics(tmp_path_factory.mktemp("victoriametrics")) as server:
        yield server


@pytest.fixture
def influx_db(influxdb1: InfluxDB1, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on `influxdb1`, named after the test, dropped afterwards."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:6]}"
    influxdb1.create_database(name)
    yield name
    influxdb1.drop_database(name)
