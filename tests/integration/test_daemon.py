"""`prober run` on the local stack: ticks, restarts, late and lost canaries, outages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from prober.agent.spool import Spool
from prober.measurement import Measurement
from tests.agent_helpers import own_state_dir, spool_points, wait_for
from tests.localstack.influx import InfluxDB1
from tests.localstack.mail import HOLD_HEADER, MailStack

pytestmark = pytest.mark.integration
ROUTES = [("a-to-b", "alice", "bob"), ("b-to-c", "bob", "carol"), ("c-to-a", "carol", "alice")]


def _config(stack: MailStack, tmp: Path, vantage: str, extra: str = "",
            routes: list[tuple[str, str, str]] | None = None) -> Path:
    text = stack.probes_toml(vantage=vantage, routes=routes or ROUTES, extra=extra)
    text = own_state_dir(text, stack, tmp)
    path = tmp / "probes.toml"
    path.write_text(text)
    return path


def _start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    log = (config.parent / "daemon.log").open("ab")
    # as the `prober` executable starts it (prober.main: the daemon without click)
    return subprocess.Popen([sys.executable, "-m", "prober", "-v", "run", "-c", str(config),
                             *args], stdout=log, stderr=log, env={**os.environ, **(env or {})})


def _log(config: Path) -> str:
    return (config.parent / "daemon.log").read_text(errors="replace")


def _fates(tmp: Path) -> dict[str, list[str]]:
    """Every outcome each canary's point was written with, in order."""
    fates: dict[str, list[str]] = defaultdict(list)
    for p in spool_points(tmp, "mail_roundtrip"):
        fates[str(p.fields["canary"])].append(str(p.fields["outcome"]))
    return dict(fates)


class NotifySocket:
    """What systemd would receive on $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self._sock.close()


def test_five_ticks_three_routes_and_systemd_notify(mail_stack: MailStack, tmp_path: Path):
    config = _config(mail_stack, tmp_path, "five-ticks", "[agent]\ntick_s = 2\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        # systemd's WatchdogSec=1s: pings every 0.5 s, on a timer of their own
        proc = _start(config, "--ticks", "5", env={"NOTIFY_SOCKET": str(notify.path),
                                                   "WATCHDOG_USEC": "1000000"})
        assert proc.wait(60) == 0, _log(config)
    finally:
        notify.close()
    fates = _fates(tmp_path)
    assert len(fates) == 15
    assert all(outcomes == ["pending", "delivered"] for outcomes in fates.values()), fates
    roundtrips = spool_points(tmp_path, "mail_roundtrip")
    assert {p.tags["route"] for p in roundtrips} == {r[0] for r in ROUTES}
    heartbeats = spool_points(tmp_path, "prober_heartbeat")
    assert len(heartbeats) == 5
    assert all(h.fields["watchers"] == 3 and h.fields["missed_ticks"] == 0 for h in heartbeats)
    assert heartbeats[-1].fields["watchers_up"] == 3
    access = spool_points(tmp_path, "mail_access")
    per = defaultdict(int)
    for p in access:
        assert p.tags["outcome"] == "ok", p
        per[(p.tags["mailbox"], p.tags["protocol"])] += 1
    assert per == {(u.address, proto): 5 for u in mail_stack.users for proto in ("smtp", "imap")}
    kinds = [m.split("\n")[0] for m in notify.messages]
    assert kinds[0] == "READY=1", notify.messages
    # 5 ticks of 2 s: about 8-10 s from READY to STOPPING, so 15 or more pings
    assert kinds.count("WATCHDOG=1") >= 15, kinds
    assert all(h.fields["watchdog_s"] == 0.5 for h in heartbeats)
    assert any(m.startswith("STOPPING=1") for m in notify.messages)
    assert [k for k in kinds if k in ("READY=1", "STOPPING=1")] == ["READY=1", "STOPPING=1"]


def test_sigkill_with_canaries_in_flight_then_restart(mail_stack: MailStack, tmp_path: Path):
    hold = f'[canary]\nheaders = {{ "{HOLD_HEADER}" = "yes" }}\n'
    config = _config(mail_stack, tmp_path, "sigkill", "[agent]\ntick_s = 2\n" + hold)
    proc = _start(config)
    try:
        # two ticks of canaries accepted by Postfix and held there: in flight
        wait_for("6 held canaries", lambda: len(mail_stack.held()) >= 6, 30)
        wait_for("their pending points",
              lambda: sum(o[0] == "pending" for o in _fates(tmp_path).values()) >= 6, 10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    in_flight = {c for c, outcomes in _fates(tmp_path).items() if outcomes[0] == "pending"}
    assert len(in_flight) >= 6
    for queue_id in mail_stack.held():
        mail_stack.release(queue_id)  # delivered while the agent is down
    config.write_text(config.read_text().replace(hold, ""))
    proc = _start(config, "--ticks", "2")
    assert proc.wait(60) == 0, _log(config)
    fates = _fates(tmp_path)
    for canary in in_flight:
        finals = [o for o in fates[canary] if o != "pending"]
        assert finals in (["delivered"], ["late"]), (canary, fates[canary], _log(config))
    assert not any("lost" in outcomes for outcomes in fates.values())


def test_held_canary_late_then_lost_then_corrected(mail_stack: MailStack, tmp_path: Path):
    hold = f'headers = {{ "{HOLD_HEADER}" = "yes" }}\n'
    # lost_after 10 s: the first canary, released at 4.5 s, has 5.5 s to be delivered and
    # seen, ample beside four test workers on two cores (at 6 s it was once declared lost)
    routes_toml = ('[agent]\ntick_s = 2\n[canary]\nlate_after_s = 3\nlost_after_s = 10\n')
    config = _config(mail_stack, tmp_path, "late-lost", routes_toml, routes=[ROUTES[0]])
    config.write_text(config.read_text().replace('direction = "internal"\n',
                                                 'direction = "internal"\n' + hold))
    proc = _start(config)
    try:
        def pending() -> list[Measurement]:
            return sorted((p for p in spool_points(tmp_path, "mail_roundtrip")
                           if p.fields["outcome"] == "pending"), key=lambda p: p.time_ns)

        wait_for("two held canaries", lambda: len(pending()) >= 2, 30)
        first, second = pending()[:2]
        # the first: released after 4.5 s, past late_after (3 s), before lost_after (10 s)
        time.sleep(max(0.0, first.time_ns / 1e9 + 4.5 - time.time()))
        mail_stack.release(str(first.fields["queue_id"]))
        # the second: declared lost (at a tick after 10 s), then released
        wait_for("the lost verdict", lambda: "lost" in _fates(tmp_path)[
            str(second.fields["canary"])], 20)
        mail_stack.release(str(second.fields["queue_id"]))
        wait_for("the correction", lambda: _fates(tmp_path)[str(second.fields["canary"])][-1]
              == "late", 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, _log(config)
        mail_stack.purge_held()
    fates = _fates(tmp_path)
    assert fates[str(first.fields["canary"])] == ["pending", "late"]
    assert fates[str(second.fields["canary"])] == ["pending", "lost", "late"]
    by_canary = defaultdict(list)
    for p in spool_points(tmp_path, "mail_roundtrip"):
        by_canary[str(p.fields["canary"])].append(p)
    # the correction rewrites the same series at the same timestamp
    lost_point, late_point = by_canary[str(second.fields["canary"])][1:]
    assert (late_point.tags, late_point.time_ns) == (lost_point.tags, lost_point.time_ns)
    assert late_point.fields["delivery_s"] > 6
    assert "arrived after its lost verdict: corrected to late" in _log(config)


def test_dovecot_outage_two_ticks(mail_stack: MailStack, tmp_path: Path):
    config = _config(mail_stack, tmp_path, "outage", "[agent]\ntick_s = 2\n",
                     routes=[ROUTES[0]])
    proc = _start(config)
    try:
        wait_for("a first heartbeat", lambda: bool(spool_points(tmp_path, "prober_heartbeat")), 15)
        down_from = time.time_ns()
        mail_stack.stop_dovecot()
        time.sleep(4.2)  # two ticks
        up_from = time.time_ns()
        mail_stack.start_dovecot()
        wait_for("the watcher back", lambda: any(
            h.fields["watchers_up"] == 1 and h.time_ns > up_from
            for h in spool_points(tmp_path, "prober_heartbeat")), 30)
        wait_for("an IMAP login again", lambda: any(
            p.tags["protocol"] == "imap" and p.tags["outcome"] == "ok" and p.time_ns > up_from
            for p in spool_points(tmp_path, "mail_access")), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, _log(config)
    imap = [p for p in spool_points(tmp_path, "mail_access") if p.tags["protocol"] == "imap"]
    failed = [p for p in imap if p.tags["outcome"] == "fail"]
    assert len({p.time_ns // 2_000_000_000 for p in failed}) >= 2  # two ticks' worth
    tick_ns = 2_000_000_000  # a session begun just before the stop, or during the start
    assert all(down_from - tick_ns <= p.time_ns <= up_from + tick_ns for p in failed), \
        [(p.time_ns - down_from, up_from - down_from, p.fields["error"]) for p in failed]
    # sessions cut by the stop say so; those begun after it were refused
    assert all(str(p.fields["error"]).startswith(("connect: refused", "greeting: closed",
                                                  "auth: closed", "select: closed"))
               for p in failed), [p.fields["error"] for p in failed]
    assert any(str(p.fields["error"]) == "connect: refused: connection refused" for p in failed)
    assert any(p.tags["outcome"] == "ok" and p.time_ns > up_from for p in imap)
    log = _log(config)
    assert "watcher mailbox=bob lost" in log and "connected again" in log
    assert "Traceback" not in log


def test_influxdb_outage_loses_nothing(mail_stack: MailStack, influxdb1: InfluxDB1,
                                       influx_db: str, tmp_path: Path):
    extra = (f'[agent]\ntick_s = 2\n[influx]\napi = "v1"\nurl = "{influxdb1.url}"\n'
             f'database = "{influx_db}"\n')
    config = _config(mail_stack, tmp_path, "influx-outage", extra, routes=[ROUTES[0]])
    proc = _start(config, "--ticks", "7")
    try:
        wait_for("a first heartbeat in InfluxDB", lambda: bool(influxdb1.query(
            "SELECT count(uptime_s) FROM prober_heartbeat", db=influx_db)
            .get("results", [{}])[0].get("series")), 20)
        def beats() -> int:
            series = influxdb1.query("SELECT count(uptime_s) FROM prober_heartbeat",
                                     db=influx_db)["results"][0].get("series") or []
            return int(series[0]["values"][0][1]) if series else 0

        before = beats()
        influxdb1.stop()
        time.sleep(6.2)  # three ticks
        influxdb1.start()
        # the writer's backoff is capped (backoff_max_s = 8): the spooled points flow again
        # within 10 s of InfluxDB's return
        wait_for("the spooled heartbeats in InfluxDB", lambda: beats() >= before + 3, 10)
        assert proc.wait(60) == 0, _log(config)
    finally:
        if proc.poll() is None:
            proc.kill()
        if not influxdb1.running:
            influxdb1.start()

    def count(q: str) -> int:
        series = influxdb1.query(q, db=influx_db)["results"][0].get("series") or []
        return int(series[0]["values"][0][1]) if series else 0

    with Spool(tmp_path / "state" / "prober.db") as spool:
        assert spool.depth() == 0
    assert count("SELECT count(uptime_s) FROM prober_heartbeat") == 7
    assert count("SELECT count(total_s) FROM mail_access") == 7 * 2 * 3
    assert count("SELECT count(canary) FROM mail_roundtrip") == 7
    assert count("SELECT count(canary) FROM mail_roundtrip WHERE outcome = 'delivered'") == 7
    log = _log(config)
    assert "InfluxDB" in log
    assert "HTTP Request:" not in log  # -v: state changes, not one line per write


def test_sighup_reloads_and_a_bad_config_is_refused(mail_stack: MailStack, tmp_path: Path):
    config = _config(mail_stack, tmp_path, "reload", "[agent]\ntick_s = 2\n", routes=[ROUTES[0]])
    good = config.read_text()
    notify = NotifySocket(tmp_path / "notify.sock")
    proc = _start(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        wait_for("READY", lambda: any(m.startswith("READY=1") for m in notify.messages), 15)
        config.write_text(good + "\n[[route]]\nname = broken\n")  # a TOML syntax error
        proc.send_signal(signal.SIGHUP)
        wait_for("the refusal", lambda: any("reload refused" in m for m in notify.messages), 10)
        refused = next(m for m in notify.messages if "reload refused" in m)
        assert refused.startswith("READY=1")  # ends the reload systemd is waiting on
        assert "probes.toml:" in refused and "TOML syntax error" in refused
        config.write_text(good.replace('name = "a-to-b"', 'name = "renamed"'))
        proc.send_signal(signal.SIGHUP)
        wait_for("a canary on the new route", lambda: any(
            p.tags["route"] == "renamed" for p in spool_points(tmp_path, "mail_roundtrip")), 15)
        assert proc.poll() is None, "the daemon died on a reload"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        notify.close()
    assert code == 0, _log(config)
    kinds = [m.split("\n")[0] for m in notify.messages]
    assert kinds.count("RELOADING=1") == 2
    log = _log(config)
    assert "reload refused, keeping the running config" in log and "reloaded" in log
    fates = _fates(tmp_path)
    assert not any("lost" in o for o in fates.values())
