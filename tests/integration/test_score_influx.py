"""The scenario month written into the real InfluxDB 1.6.7 and into the spool, then scored:
the InfluxQL reductions give the known truth, and the spool gives the same scorecard."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import httpx
import pytest

from prober.agent.spool import Spool
from prober.config.delivery import SpoolSettings
from prober.sla.local import spool_evidence
from prober.sla.query import InfluxEvidence, InfluxTarget
from prober.sla.report import to_dict
from prober.sla.score import BREACH, PASS, score
from tests.localstack.influx import InfluxDB1
from tests.sla_scenarios import build

pytestmark = pytest.mark.integration
NOW = time.time_ns()


@functools.cache
def lines(variant: str) -> tuple[str, ...]:
    return tuple(m.to_line() for m in build(variant).measurements)


def write(server: InfluxDB1, db: str, variant: str) -> None:
    body = lines(variant)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(0, len(body), 20000):
            r = client.post("/write", params={"db": db, "precision": "ns"},
                            content="\n".join(body[i:i + 20000]).encode())
            assert r.status_code == 204, r.text


def comparable(card) -> dict:  # type: ignore[no-untyped-def]
    d = to_dict(card)
    d.pop("source")
    return d


@pytest.mark.parametrize("variant", ["a", "b"])
def test_influx_and_spool_give_the_known_truth(variant: str, influxdb1: InfluxDB1,
                                               influx_db: str, tmp_path: Path) -> None:
    sc = build(variant)
    write(influxdb1, influx_db, variant)
    ev = InfluxEvidence(InfluxTarget(influxdb1.url, influx_db))
    try:
        card = score(ev, sc.settings, 2026, 9, now_ns=NOW, contracted=sc.contracted)
    finally:
        ev.close()
    v = {x.clause.id: x.status for x in card.verdicts}
    c = card.conn
    if variant == "a":
        assert len(c.down) == 47
        assert [i.minutes for i in c.incidents] == [20, 1, 1, 15, 10]
        assert (v["connectivity"], v["receive_delay"], v["send_delay"]) == (BREACH, BREACH, PASS)
        assert (card.send.over_count, card.receive.over_count) == (2, 3)
        assert v["webmail_narrowband"] == BREACH
    else:
        assert len(c.down) == 27
        assert [i.minutes for i in c.incidents] == [1, 1, 15, 10]
        assert (v["connectivity"], v["receive_delay"], v["send_delay"]) == (PASS, PASS, BREACH)
        assert (card.send.over_count, card.receive.over_count) == (3, 2)
        assert v["webmail_narrowband"] == PASS
    assert len(c.unknown) == 30
    assert c.unknown_by_vantage == {"v1": 30, "v2": 30, "v3": 390}
    assert c.below_quorum == ({"v1": 35, "v2": 1} if variant == "a" else {"v1": 35})
    assert (len(c.maintenance), c.down_in_maintenance, c.down_in_exclusions) == (60, 30, 10)
    assert card.send.mean_s == pytest.approx(sc.send_mean, rel=1e-12)
    assert card.receive.mean_s == pytest.approx(sc.receive_mean, rel=1e-12)
    assert card.webmail["narrowband"].mean_s == pytest.approx(sc.narrowband_mean, rel=1e-12)
    assert card.webmail["broadband"].mean_s == pytest.approx(sc.broadband_mean, rel=1e-12)
    assert card.exit_code == 1

    settings = SpoolSettings(path=str(tmp_path / "prober.db"), retain=True,
                             max_age_s=10 * 365 * 86400.0)
    with Spool(settings.path, settings) as spool:
        spool.append_lines(lines(variant))
    local = score(spool_evidence(settings.path, card.month.start_ns, card.month.end_ns),
                  sc.settings, 2026, 9, now_ns=NOW, contracted=sc.contracted)
    a, b = comparable(card), comparable(local)
    # sums over millions of floats may differ in the last bits between the two engines
    for side in ("send_delay", "receive_delay"):
        assert b[side].pop("mean_s") == pytest.approx(a[side].pop("mean_s"), rel=1e-12)
        for route in a[side]["by_route"]:
            assert b[side]["by_route"][route].pop("mean_s") == pytest.approx(
                a[side]["by_route"][route].pop("mean_s"), rel=1e-12)
    for name in a["webmail"]:
        assert b["webmail"][name].pop("mean_s") == pytest.approx(
            a["webmail"][name].pop("mean_s"), rel=1e-12)
        da, db = a["webmail"][name].pop("daily_mean_s"), b["webmail"][name].pop("daily_mean_s")
        assert db == pytest.approx(da, rel=1e-12)
    for x, y in zip(a["clauses"], b["clauses"], strict=True):
        if isinstance(x["value"], float):
            assert y.pop("value") == pytest.approx(x.pop("value"), rel=1e-12)
            x.pop("measured"), y.pop("measured"), x.pop("detail"), y.pop("detail")
    assert a == b


def test_dashboard_queries_run_on_influxdb_1_6(influxdb1: InfluxDB1, influx_db: str) -> None:
    """Every InfluxQL query of the Grafana dashboard parses and runs on the oldest server."""
    import json

    dash = json.loads((Path(__file__).resolve().parents[2] / "dashboards" /
                       "prober-sla.json").read_text())
    write(influxdb1, influx_db, "a")
    queries = [t["query"] for p in dash["panels"] for t in p["targets"]]
    assert len(queries) == 11
    for q in queries:
        q = q.replace("$timeFilter", "time >= '2026-09-03T00:00:00Z' AND "
                      "time < '2026-09-09T00:00:00Z'").replace("$__interval", "10m")
        result = influxdb1.query(q, db=influx_db)
        assert "error" not in result["results"][0], (q, result)
        # the scenario has no webmail failures of the provider's class, nothing of ours
        if ("webmail_load\" WHERE \"outcome\" != 'ok'" not in q and "spool_depth" not in q
                and "\"error_class\" = 'prober'" not in q):
            assert result["results"][0].get("series"), q  # the scenario has data for these


def test_dashboard_send_delay_panel_shows_internal_routes_without_split_hops(
        influxdb1: InfluxDB1, influx_db: str) -> None:
    """On one provider the hops of an internal canary cannot be told apart: the panel must
    show its delivery_s, or it is empty for every internal route."""
    import json

    dash = json.loads((Path(__file__).resolve().parents[2] / "dashboards" /
                       "prober-sla.json").read_text())
    panel = next(p for p in dash["panels"] if p["title"].startswith("Send delay"))
    t0 = 1_790_000_000 * 10**9
    body = "\n".join(
        f"mail_roundtrip,direction=internal,recipient=b@x.test,route=local,sender=a@x.test,"
        f'vantage=v1 canary="c{i}",delivery_s={0.5 + i},outcome="delivered" {t0 + i * 60 * 10**9}'
        for i in range(3))
    r = httpx.post(f"{influxdb1.url}/write", params={"db": influx_db, "precision": "ns"},
                   content=body.encode())
    assert r.status_code == 204, r.text
    q = panel["targets"][0]["query"].replace(
        "$timeFilter", f"time >= {t0} AND time < {t0 + 3600 * 10**9}").replace(
        "$__interval", "1h")
    series = influxdb1.query(q, db=influx_db)["results"][0]["series"]
    assert series[0]["tags"] == {"route": "local"}
    row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
    assert row["delivery_s"] == pytest.approx(1.5)
