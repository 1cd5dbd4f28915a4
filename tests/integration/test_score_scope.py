"""The judge never passes, or breaches, on evidence it does not have (issue 12).

Each scenario is a small September 2026 written into the real InfluxDB 1.6.7 and into a
spool, and scored from both: a declared vantage absent all month, a declared mailbox and
a declared route with no points, a month with 1 % coverage, webmail points without open_s,
points the judge cannot use, and a judge's config with no probe secrets and no [vantage].
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from prober.agent.spool import Spool
from prober.cli import main
from prober.config.delivery import SpoolSettings
from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.sla.local import spool_evidence
from prober.sla.query import InfluxEvidence, InfluxTarget
from prober.sla.report import to_dict
from prober.sla.score import BREACH, NOT_MEASURED, PASS, PENDING, UNKNOWN, Scorecard, score
from tests.localstack.influx import InfluxDB1

pytestmark = pytest.mark.integration

SEP = int(datetime(2026, 9, 1, tzinfo=UTC).timestamp()) * 10**9
MIN = 60 * 10**9
MONTH_MIN = 30 * 1440
ALICE, BOB, CAROL, EXT = ("alice@example.test", "bob@example.test", "carol@example.test",
                          "ext@other.test")
ROUTES = {"out": (ALICE, EXT, "outbound"), "in": (EXT, BOB, "inbound"),
          "int": (ALICE, BOB, "internal")}


def month(vantages: tuple[str, ...] = ("v1", "v2"), minutes: Iterator[int] | range = range(
        MONTH_MIN), down: range = range(0), webmail_open_s: bool = True) -> list[Measurement]:
    """Heartbeats in `minutes`, access checks and canaries every 30 of them, webmail hourly;
    alice's IMAP fails at every vantage in the `down` minutes."""
    out = []
    for m in minutes:
        for k, v in enumerate(vantages):
            t = SEP + m * MIN + k * 10**9
            out.append(Measurement("prober_heartbeat", {"vantage": v},
                                   {"uptime_s": 60.0 * m, "version": "test"}, t))
            for mb in (ALICE, BOB):
                for proto in ("smtp", "imap"):
                    fail = mb == ALICE and proto == "imap" and m in down
                    if fail or m % 30 == 0:
                        out.append(Measurement("mail_access", {
                            "vantage": v, "mailbox": mb, "protocol": proto,
                            "outcome": "fail" if fail else "ok"}, {"total_s": 0.2}, t + 1000))
            if m % 30 == 0:
                for name, (sender, recipient, direction) in ROUTES.items():
                    tags = {"vantage": v, "route": name, "sender": sender,
                            "recipient": recipient, "direction": direction}
                    out.append(Measurement("mail_roundtrip", tags, {
                        "outcome": "pending", "canary": f"c{m}{v}{name}"}, t + 2000))
                    out.append(Measurement("mail_roundtrip", tags, {
                        "outcome": "delivered", "canary": f"c{m}{v}{name}", "delivery_s": 2.0,
                        "send_delay_s": 1.0, "receive_delay_s": 1.0}, t + 2000))
            if m % 60 == 0:
                fields: dict[str, float | str | int] = {"load_s": 3.0, "status": 200,
                                                        "contract_class": "broadband"}
                if webmail_open_s:
                    fields["open_s"] = 3.0
                out.append(Measurement("webmail_load", {
                    "vantage": v, "target": "wm", "profile": "broadband", "outcome": "ok"},
                    fields, t + 3000))
    return out


def _write_influx(server: InfluxDB1, db: str, lines: list[str]) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(0, len(lines), 20000):
            r = client.post("/write", params={"db": db, "precision": "ns"},
                            content="\n".join(lines[i:i + 20000]).encode())
            assert r.status_code == 204, r.text


def judge(points: list[Measurement], settings: SlaSettings, contracted: set[str] | None,
          server: InfluxDB1, db: str, tmp_path: Path, extra_lines: tuple[str, ...] = ()
          ) -> dict[str, Scorecard]:
    """The same points scored from InfluxDB and from a spool."""
    lines = [m.to_line() for m in points] + list(extra_lines)
    _write_influx(server, db, [line for line in lines if "uptime_s= " not in line])
    now = time.time_ns()
    ev = InfluxEvidence(InfluxTarget(server.url, db))
    try:
        from_influx = score(ev, settings, 2026, 9, now_ns=now, contracted=contracted)
    finally:
        ev.close()
    path = tmp_path / "prober.db"
    with Spool(path, SpoolSettings(path=str(path), retain=True, max_age_s=3e8,
                                   ballast_bytes=0, min_free_bytes=0)) as sp:
        sp.append_lines(lines)
    local = spool_evidence(str(path), SEP, SEP + MONTH_MIN * MIN)
    try:
        from_spool = score(local, settings, 2026, 9, now_ns=now, contracted=contracted)
    finally:
        local.close()
    return {"influx": from_influx, "spool": from_spool}


def verdicts(card: Scorecard) -> dict[str, str]:
    return {v.clause.id: v.status for v in card.verdicts if v.status != NOT_MEASURED}


def test_a_declared_vantage_absent_all_month(influxdb1: InfluxDB1, influx_db: str,
                                            tmp_path: Path) -> None:
    points = month(("v1", "v2"))
    declared = SlaSettings(vantages=("v1", "v2", "v3"))
    cards = judge(points, declared, {ALICE, BOB}, influxdb1, influx_db, tmp_path)
    for source, card in cards.items():
        v = verdicts(card)
        assert v.pop("adjustment_time") == PASS  # the config's maintenance, known in full
        assert v.pop("fault_free_days") == PENDING  # 2026 is not over
        assert set(v.values()) == {UNKNOWN}, (source, v)
        conn = next(x for x in card.verdicts if x.clause.id == "connectivity")
        assert conn.coverage.share == pytest.approx(2 / 3)
        assert conn.coverage.absent == ("vantage v3",)
        assert "not enough data" in conn.detail and "vantage v3" in conn.detail
        d = to_dict(card)
        assert d["scope"]["vantages"]["absent"] == ["v3"]
        assert d["scope"]["vantages"]["coverage_by_vantage"]["v3"] == {
            "declared": True, "points": 0, "coverage": 0.0}
        assert card.exit_code == 2
    # with nothing declared, the same month passes, and the report says what it found
    influxdb1.create_database(influx_db + "b")
    (tmp_path / "b").mkdir()
    try:
        cards = judge(points, SlaSettings(), None, influxdb1, influx_db + "b", tmp_path / "b")
    finally:
        influxdb1.drop_database(influx_db + "b")
    for source, card in cards.items():
        v = verdicts(card)
        assert v.pop("fault_free_days") == PENDING
        assert v.pop("webmail_narrowband") == UNKNOWN  # no narrowband loads at all
        assert set(v.values()) == {PASS}, source
        assert card.scope.found_vantages == ["v1", "v2"]
        assert card.scope.found_mailboxes == [ALICE, BOB]
        assert card.scope.found_routes == {"in": "inbound", "int": "internal",
                                           "out": "outbound"}


def test_a_declared_mailbox_and_a_declared_route_with_no_points(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    points = month(("v1", "v2"))
    settings = SlaSettings(routes=("out", "in", "int", "carol-out"))
    cards = judge(points, settings, {ALICE, BOB, CAROL}, influxdb1, influx_db, tmp_path)
    for source, card in cards.items():
        v = verdicts(card)
        for clause in ("connectivity", "fault_time", "availability", "send_delay",
                       "receive_delay"):
            assert v[clause] == UNKNOWN, (source, clause)
        conn = next(x for x in card.verdicts if x.clause.id == "connectivity")
        assert conn.coverage.absent == (f"mailbox {CAROL}", "route carol-out")
        assert conn.coverage.share == pytest.approx(2 / 3 * 3 / 4)
        send = next(x for x in card.verdicts if x.clause.id == "send_delay")
        assert send.coverage.absent == ("route carol-out",)
        # no mailbox, route or vantage feeds the page-open clause: it still passes
        assert v["webmail_broadband"] == PASS
        assert card.scope.absent_mailboxes == [CAROL]
        assert card.scope.absent_routes == ["carol-out"]


def test_a_month_with_one_percent_coverage_passes_nothing_unproven(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    alive = range(1440 * 3, 1440 * 3 + 432)  # 432 of 43,200 minutes: 1 %
    points = month(("v1",), alive)
    cards = judge(points, SlaSettings(), {ALICE, BOB}, influxdb1, influx_db, tmp_path)
    for source, card in cards.items():
        v = verdicts(card)
        # the adjustment time is the config's maintenance, known in full; nothing else passes
        assert v.pop("adjustment_time") == PASS
        assert v.pop("fault_free_days") == PENDING
        assert set(v.values()) == {UNKNOWN}, (source, v)
        send = next(x for x in card.verdicts if x.clause.id == "send_delay")
        assert "coverage 1.00 % (minimum 99 %)" in send.detail
        assert card.send.n == 15 * 2  # the canaries were there, and fine: still not a pass


def test_a_breach_proven_on_one_percent_coverage_says_so(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    alive = range(1440 * 3, 1440 * 3 + 432)
    points = month(("v1",), alive, down=range(1440 * 3 + 100, 1440 * 3 + 150))
    cards = judge(points, SlaSettings(), {ALICE, BOB}, influxdb1, influx_db, tmp_path)
    for card in cards.values():
        conn = next(x for x in card.verdicts if x.clause.id == "connectivity")
        assert conn.status == BREACH and conn.value == 50
        assert "proven although coverage 1.00 % (minimum 99 %)" in conn.detail
        assert next(x for x in card.verdicts if x.clause.id == "fault_time").status == UNKNOWN
        assert card.exit_code == 1


def test_webmail_points_without_open_s_are_judged_by_load_s(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path) -> None:
    points = month(("v1", "v2"), webmail_open_s=False)
    # a narrowband profile of one slow timeout next to many good loads: judged on all of them
    for d in range(30):
        points.append(Measurement("webmail_load", {"vantage": "v1", "target": "wm",
                                                   "profile": "narrowband", "outcome": "ok"},
                                  {"load_s": 20.0, "contract_class": "narrowband"},
                                  SEP + d * 1440 * MIN + 5 * 10**9))
    points.append(Measurement("webmail_load", {"vantage": "v1", "target": "wm",
                                               "profile": "narrowband", "outcome": "timeout"},
                              {"timeout_s": 60.0, "contract_class": "narrowband"},
                              SEP + 7 * 10**9))
    cards = judge(points, SlaSettings(), {ALICE, BOB}, influxdb1, influx_db, tmp_path)
    for source, card in cards.items():
        bb, nb = card.webmail["broadband"], card.webmail["narrowband"]
        assert (bb.n, bb.n_by_load, bb.mean_s) == (2 * 720, 2 * 720, pytest.approx(3.0)), source
        assert (nb.n, nb.n_by_load) == (31, 30)
        assert nb.mean_s == pytest.approx((30 * 20.0 + 60.0) / 31)
        v = verdicts(card)
        assert v["webmail_broadband"] == PASS and v["webmail_narrowband"] == PASS
        d = to_dict(card)
        assert d["webmail"]["narrowband"]["judged_by_load_s"] == 30
        detail = next(x for x in card.verdicts if x.clause.id == "webmail_broadband").detail
        assert "1440 without open_s judged by load_s" in detail


def test_points_read_and_not_judged_are_counted(influxdb1: InfluxDB1, influx_db: str,
                                                tmp_path: Path) -> None:
    points = month(("v1", "v2", "v9"), range(0, 60))
    t = SEP + 10 * MIN
    extra = (
        f"prober_heartbeat version=\"x\",uptime_s=1 {t}",  # no vantage
        f"prober_heartbeat,vantage=v1 version=\"x\" {t + 5}",  # no uptime_s
        f'webmail_load,outcome=ok,profile=broadband,target=wm,vantage=v1 status=200i {t + 7}',
        f'mail_roundtrip,direction=internal,recipient={BOB},route=int,sender={ALICE},vantage=v1 '
        f'canary="x",outcome="delivered" {t + 9}',  # arrived without delivery_s
        f"prober_heartbeat,vantage=v1 uptime_s= {t + 11}",  # InfluxDB refuses it
        # canaries not judged: still pending when scored, and no answer seen to the DATA
        f'mail_roundtrip,direction=internal,recipient={BOB},route=int,sender={ALICE},vantage=v1 '
        f'canary="p",outcome="pending" {t + 13}',
        f'mail_roundtrip,direction=internal,recipient={BOB},route=int,sender={ALICE},vantage=v2 '
        f'canary="u",outcome="send_uncertain" {t + 15}',
        # the agent died inside the SMTP session; the canary never arrived: not the provider's
        f'mail_roundtrip,direction=outbound,recipient={EXT},route=out,sender={ALICE},vantage=v1 '
        f'canary="a",outcome="abandoned",error="data: closed: agent stopped" {t + 17}',
    )
    settings = SlaSettings(vantages=("v1", "v2"))
    cards = judge(points, settings, {ALICE}, influxdb1, influx_db, tmp_path, extra)
    for source, card in cards.items():
        got = card.unusable
        assert got[("prober_heartbeat", "no vantage tag")] == 1, source
        assert got[("prober_heartbeat", "no uptime_s field (not a heartbeat this judge can "
                    "read)")] == 1
        assert got[("webmail_load", "ok load without open_s or load_s")] == 1
        assert got[("mail_roundtrip", "delivered or late without delivery_s")] == 1
        assert got[("prober_heartbeat", "vantage 'v9' is not in [sla] vantages")] == 60
        assert got[("mail_access", "mailbox 'bob@example.test' is not contracted")] == 2 * 2 * 2
        if source == "spool":
            assert got[("prober_heartbeat", "not valid line protocol")] == 1
        # every written canary went pending first: only the one never rewritten is counted
        assert card.not_judged == {"abandoned": 1, "pending": 1, "send_uncertain": 1}, source
        assert card.conn.down == set() and card.send.over_count == 0  # never charged
        assert not [e for e in card.events if e.canary == "a"]
        assert ("mail_roundtrip", "an outcome this judge does not know") not in got
        d = to_dict(card)
        assert {"measurement": "mail_roundtrip", "reason": "vantage 'v9' is not in [sla] "
                "vantages", "points": 2 * 3} in d["unusable_points"]


def test_a_judge_config_needs_no_probe_secrets_and_no_vantage(
        influxdb1: InfluxDB1, influx_db: str, tmp_path: Path, monkeypatch) -> None:
    points = month(("v1", "v2"), range(0, 120), down=range(10, 70))
    _write_influx(influxdb1, influx_db, [m.to_line() for m in points])
    spool = tmp_path / "evidence.db"
    with Spool(spool, SpoolSettings(path=str(spool), retain=True, max_age_s=3e8,
                                    ballast_bytes=0, min_free_bytes=0)) as sp:
        sp.append(points)
    monkeypatch.delenv("PROBER_ALICE_PW", raising=False)
    runner = CliRunner()
    judge_only = tmp_path / "judge.toml"
    judge_only.write_text(f'[spool]\npath = "{spool}"\n\n[sla]\nvantages = ["v1", "v2"]\n'
                          f'mailboxes = ["{ALICE}"]\n\n[influx]\napi = "v1"\n'
                          f'url = "{influxdb1.url}"\ndatabase = "{influx_db}"\n')
    # a probe host's file: a mailbox whose password variable is not set here, a [vantage]
    probe_host = tmp_path / "probes.toml"
    probe_host.write_text(
        f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path}"\n\n[spool]\npath = "{spool}"\n\n'
        f'[[mailbox]]\nname = "alice"\naddress = "{ALICE}"\npassword_env = "PROBER_ALICE_PW"\n'
        '[mailbox.smtp]\nhost = "smtp.example.test"\ntls = "starttls"\n'
        '[mailbox.imap]\nhost = "imap.example.test"\ntls = "tls"\n\n'
        '[sla]\nmailboxes = ["alice"]\n')
    for cfg, source in ((judge_only, "spool"), (judge_only, "influx"), (probe_host, "spool")):
        r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-09", "--source",
                                 source, "--format", "json"])
        assert r.exit_code == 1, (cfg.name, source, r.output)
        data = json.loads(r.output)
        clauses = {c["id"]: c for c in data["clauses"]}
        assert clauses["connectivity"]["verdict"] == "breach"
        assert clauses["connectivity"]["value"] == 60
        assert data["scope"]["mailboxes"]["declared"] == [ALICE]
    r = runner.invoke(main, ["spool", "status", "-c", str(judge_only)])
    assert r.exit_code == 0 and "points:" in r.output
    # prober config check still wants the secret: the judge's leniency is its own
    r = runner.invoke(main, ["config", "check", "-c", str(probe_host)])
    assert r.exit_code == 3 and "PROBER_ALICE_PW" in r.output


def test_scope_settings_are_checked(tmp_path: Path) -> None:
    from prober.config.judge import parse_judge
    from prober.config.reader import ConfigError

    with pytest.raises(ConfigError, match=r"sla.vantages\[1\]: 'v1' is listed twice"):
        parse_judge({"sla": {"vantages": ["v1", "v1"]}})
    with pytest.raises(ConfigError, match=r"sla\.clauses\.connectivity\.min_coverage"):
        parse_judge({"sla": {"clauses": {"connectivity": {"min_coverage": 1.5}}}})
    cfg = parse_judge({"sla": {"min_coverage": 0.9, "clauses": {
        "send_delay": {"min_coverage": 0.5}}}})
    assert cfg.sla.min_coverage == 0.9 and dict(cfg.sla.clause_min_coverage) == {
        "send_delay": 0.5}
    # min_coverage is the judge's, not one of the contract's limits
    assert dict(cfg.sla.clauses["send_delay"]) == {}
    assert "min_coverage" not in cfg.contract.clause("send_delay").params
