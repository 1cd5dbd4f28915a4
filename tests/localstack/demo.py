"""The quick-start demo: the whole product on one machine, in a few minutes.

    python -m tests.localstack.demo [--minutes N] [--tick-s S] [--report FILE] [--keep]
    python -m tests.localstack.demo --check-only [--keep] [-- extra prober check options]

Everything runs on free 127.0.0.1 ports from one temporary directory, and is used through
the `prober` commands as an operator would:

1. a real Postfix + Dovecot (Debian packages, installed when missing) and a small
   webmail-like page set, then `prober check` against them;
2. a local InfluxDB 1.6.7 and two vantages, two `prober run` daemons with their own state
   directories and spools, ticking every few seconds; vantage demo-b reaches IMAP through a
   relay the demo can cut. Two faults are injected, each announced when it starts and ends:
   Dovecot stopped (the provider's fault: both vantages see it), then demo-b's relay cut
   (a fault of that vantage only);
3. each vantage loads the webmail page set on the narrowband and broadband profiles;
4. `prober score` over that window, with `[sla] quorum = 2`: the provider's fault is counted
   in whole minutes, demo-b's is not; the HTML report is written to a file;
5. everything it started is stopped, also on Ctrl-C (or SIGTERM).

--check-only is the short form: the stack and `prober check`, nothing else.
--keep leaves the servers running at the end, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from tests.localstack import webmail_pages
from tests.localstack.influx import InfluxDB1
from tests.localstack.mail import PACKAGES as MAIL_PACKAGES
from tests.localstack.mail import MailStack
from tests.localstack.packages import StackError, ensure_packages
from tests.localstack.relay import CuttableRelay

ROUTES = [("alice-to-bob", "alice", "bob"), ("bob-to-carol", "bob", "carol"),
          ("carol-to-alice", "carol", "alice")]
VANTAGES = ("demo-a", "demo-b")  # demo-b's IMAP goes through the relay
CUT = VANTAGES[1]
DATABASE = "prober"
MINUTE_S = 60
PROBER = [sys.executable, "-m", "prober.cli"]


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything and leave."""


def say(text: str = "") -> None:
    print(text, flush=True)


def clock(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%H:%M:%S")


def hhmm(minute: int) -> str:
    return datetime.fromtimestamp(minute * MINUTE_S, UTC).strftime("%H:%M")


@contextlib.contextmanager
def still(what: str, every_s: float = 15.0) -> Iterator[None]:
    """Say "... still <what>" every `every_s` while the block runs: never a silent minute."""
    done = threading.Event()
    started = time.monotonic()

    def remind() -> None:
        while not done.wait(every_s):
            say(f"  ... still {what} ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=remind, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_prober(args: list[str], env: dict[str, str], shown: str) -> subprocess.CompletedProcess:
    say(f"$ prober {shown}")
    return subprocess.run([*PROBER, *args], env=env, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------- the setup

@dataclass
class Fault:
    """An injected fault: who sees it, when, and how it is made and undone."""

    name: str
    start: float  # planned, epoch s
    end: float
    begin: Callable[[], None]
    undo: Callable[[], None]
    begin_text: str
    end_text: str
    began: float = 0.0  # actual: the injection started / was undone
    ended: float = 0.0
    active: bool = False


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="prober-demo-"))
        self.tmp.chmod(0o755)
        (self.tmp / "mail").mkdir()
        self.stack = MailStack(workdir=self.tmp / "mail")
        self.web_password = os.urandom(9).hex()
        self.env = {**os.environ, **self.stack.env(),
                    webmail_pages.PASSWORD_ENV: self.web_password}
        self.web: Any = None
        self.influx: InfluxDB1 | None = None
        self.relay: CuttableRelay | None = None
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.configs: dict[str, Path] = {}
        self.faults: list[Fault] = []

    # -- configuration, as an operator writes it --------------------------------------------
    def base_toml(self, vantage: str, state: str, webmail: bool) -> str:
        text = self.stack.probes_toml(vantage=vantage, routes=ROUTES)
        text = text.replace(f'state_dir = "{self.stack.dir / "state"}"',
                            f'state_dir = "{self.tmp / state}"')
        if webmail and self.web is not None:
            text += (f'\n[[webmail]]\nname = "webmail"\nurl = "{self.web.base}/"\n'
                     'profiles = ["narrowband", "broadband"]\n'
                     f"interval_s = {self.args.webmail_interval_s}\n"
                     f'[webmail.login]\nuser = "{webmail_pages.USER}"\n'
                     f'password_env = "{webmail_pages.PASSWORD_ENV}"\nexpect_text = "Inbox"\n')
        return text

    def vantage_toml(self, vantage: str) -> str:
        assert self.influx is not None and self.relay is not None
        text = self.base_toml(vantage, vantage, webmail=True)
        if vantage == CUT:
            # this vantage's IMAP goes through the relay; its SMTP, and demo-a, go direct
            text = text.replace(f"port = {self.stack.imap_port}\n", f"port = {self.relay.port}\n")
        return text + (
            f"\n[agent]\ntick_s = {self.args.tick_s:g}\n"
            f'\n[influx]\napi = "v1"\nurl = "{self.influx.url}"\ndatabase = "{DATABASE}"\n'
            "\n[sla]\n"
            f"vantages = {json.dumps(list(VANTAGES))}  # the vantages this score is made of\n"
            "# two vantages: a minute is down only when both saw the mailbox down\n"
            "# (a majority of 2 is 2); what one vantage alone sees is its own fault\n"
            "quorum = 2\n")

    # -- 1. the stack and the check ---------------------------------------------------------
    def start_stack(self, with_influx: bool) -> None:
        packages = dict(MAIL_PACKAGES)
        if with_influx:
            packages["influxd"] = "influxdb"
        with still("installing Debian packages (apt-get) and starting Postfix and Dovecot"):
            ensure_packages(packages)
            say(f"starting Postfix and Dovecot on 127.0.0.1 in {self.stack.dir} ...")
            self.stack.start()
        st = self.stack
        say(f"  Postfix: submission 127.0.0.1:{st.submission_port}, submissions "
            f"127.0.0.1:{st.submissions_port}, smtp 127.0.0.1:{st.smtp_port}; Dovecot: imap "
            f"127.0.0.1:{st.imap_port}, imaps 127.0.0.1:{st.imaps_port}")

    def check(self, extra: list[str], webmail: bool) -> int:
        config = self.tmp / "check.toml"
        config.write_text(self.base_toml("demo", "check-state", webmail))
        say()
        with still("waiting for prober check"):
            code = run_prober(["check", "-c", str(config), *extra], self.env,
                              f"check -c {config} {' '.join(extra)}".rstrip()).returncode
        say(f"(exit status {code}: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)")
        return code

    # -- 2. InfluxDB, the relay and the two daemons -----------------------------------------
    def start_servers(self) -> None:
        self.web = webmail_pages.start(self.web_password)
        say(f"webmail-like page set on {self.web.base}/ (sign-in page, login form, inbox)")

    def start_vantages(self) -> None:
        self.influx = InfluxDB1(self.tmp / "influxdb")
        with still("starting InfluxDB"):
            self.influx.start()
        self.influx.create_database(DATABASE)
        say(f"InfluxDB 1.6.7 on {self.influx.url} (database {DATABASE!r})")
        self.relay = CuttableRelay(self.stack.host, self.stack.imap_port).start()
        say(f"{CUT}'s own line to IMAP: a relay on 127.0.0.1:{self.relay.port} -> "
            f"127.0.0.1:{self.stack.imap_port}")
        for v in VANTAGES:
            self.configs[v] = self.tmp / f"{v}.toml"
            self.configs[v].write_text(self.vantage_toml(v))
        say()
        for v in VANTAGES:
            say(f"$ prober run -c {self.configs[v]}        (vantage {v}, state in "
                f"{self.tmp / v}, log in {self.tmp / (v + '.log')})")
            with (self.tmp / f"{v}.log").open("ab") as log:
                # a session of its own: a Ctrl-C in the terminal reaches the demo, which then
                # stops the daemons with SIGTERM as systemd would
                self.daemons[v] = subprocess.Popen(
                    [*PROBER, "run", "-c", str(self.configs[v])], env=self.env,
                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    def query(self, q: str) -> list[dict[str, Any]]:
        assert self.influx is not None
        return self.influx.rows(q, db=DATABASE)

    def last_heartbeats(self) -> dict[str, int]:
        rows = self.query("SELECT last(uptime_s) FROM prober_heartbeat WHERE time > now() - 10m "
                          "GROUP BY vantage")
        return {r["vantage"]: int(r["time"]) for r in rows}

    def daemons_alive(self) -> None:
        for v, proc in self.daemons.items():
            if proc.poll() is not None:
                tail = (self.tmp / f"{v}.log").read_text(errors="replace")[-1500:]
                raise StackError(f"prober run for {v} exited with status {proc.returncode}; "
                                 f"its log ends:\n{tail}")

    def wait_first_ticks(self) -> dict[str, int]:
        say("waiting for both vantages' first tick in InfluxDB ...")
        deadline = time.monotonic() + 90
        with still("waiting for the first heartbeats"):
            while time.monotonic() < deadline:
                self.daemons_alive()
                beats = self.last_heartbeats()
                if set(beats) >= set(VANTAGES):
                    return beats
                time.sleep(0.5)
        raise StackError("no heartbeat from both vantages in InfluxDB after 90 s; see "
                         f"{self.tmp}/demo-*.log")

    # -- the faults ----------------------------------------------------------------------------
    def plan_faults(self, ready: float) -> float:
        """Place the faults well clear of minute boundaries; return when the run ends.

        The judge counts whole UTC minutes: a minute is down when the provider failed a
        probe in it. A probe in flight when a fault starts, or the first one after it ends,
        may add a tick either side, so every fault starts and ends over a tick (and at least
        10 s) away from a boundary, and the minutes it overlaps are exactly the down minutes.
        """
        tick = self.args.tick_s
        margin = max(10.0, 2 * tick)
        minutes = self.args.minutes
        b0 = math.ceil((ready + 2 * tick) / MINUTE_S) * MINUTE_S  # a few healthy ticks first
        # Dovecot down for a minute across a boundary (two down minutes); in the short form
        # down within one minute
        outage = ((b0 + 20.0, b0 + 80.0) if minutes >= 3
                  else (b0 + margin, b0 + MINUTE_S - margin))
        last = b0 + (minutes - 1) * MINUTE_S
        cut = (last + margin, last + MINUTE_S - margin)
        assert self.relay is not None
        relay = self.relay
        self.faults = [
            Fault("provider", *outage, self.stack.stop_dovecot, self.stack.start_dovecot,
                  "PROVIDER FAULT: Dovecot stopped; IMAP logins, SMTP AUTH and delivery fail "
                  "for every vantage",
                  "PROVIDER FAULT ENDS: Dovecot started again"),
            Fault(CUT, *cut, relay.cut, relay.restore,
                  f"{CUT} FAULT: {CUT}'s line to IMAP is cut (its relay refuses connections); "
                  f"{VANTAGES[0]} is not affected",
                  f"{CUT} FAULT ENDS: {CUT}'s line to IMAP is back"),
        ]
        return last + MINUTE_S + 2.0  # the last minute over, and scored whole

    def run_faults(self, end: float) -> None:
        tick = self.args.tick_s
        say()
        say(f"the run: {self.args.minutes} minutes of ticks from {clock()} to {clock(end)} UTC, "
            f"every {tick:g} s per vantage; the faults:")
        for f in self.faults:
            say(f"  {clock(f.start)}-{clock(f.end)} UTC  {f.name}: {f.begin_text.split(': ')[1]}")
        say("one line per tick (logins, canaries), a line per webmail load, and the faults:")
        ticker = Ticker(self)
        events = sorted([(f.start, f, True) for f in self.faults]
                        + [(f.end, f, False) for f in self.faults], key=lambda e: e[0])
        while True:
            now = time.time()
            if events and events[0][0] <= now:
                _, fault, begin = events.pop(0)
                if begin:
                    fault.began = time.time()
                    fault.active = True
                    fault.begin()
                    say(f"{clock(fault.began)} >>> {fault.begin_text} "
                        f"(until about {clock(fault.end)})")
                else:
                    fault.undo()
                    fault.ended = time.time()
                    fault.active = False
                    say(f"{clock(fault.ended)} <<< {fault.end_text} after "
                        f"{fault.ended - fault.began:.0f} s")
                continue
            if now >= end:
                return
            self.daemons_alive()
            ticker.poll(end)
            time.sleep(max(0.0, min(1.0, (events[0][0] if events else end) - time.time())))

    # -- 4. the score ------------------------------------------------------------------------
    def stop_vantages(self) -> None:
        say()
        say(f"{clock()} stopping the two vantages (SIGTERM, as systemd does) ...")
        with still("stopping the vantages and flushing their spools"):
            stop_processes(self.daemons)
            for v in VANTAGES:
                # anything still spooled goes to InfluxDB before the score reads it
                subprocess.run([*PROBER, "spool", "flush", "-c", str(self.configs[v])],
                               env=self.env, capture_output=True, stdin=subprocess.DEVNULL)

    def score(self, report: Path) -> bool:
        provider, own = self.faults
        month = datetime.fromtimestamp(provider.began, UTC).strftime("%Y-%m")
        config = self.configs[VANTAGES[0]]
        common = ["score", "-c", str(config), "--month", month]
        say()
        say(f"$ prober score -c {config} --month {month}")
        say("  (the whole month is judged; the minutes before the demo have no data, so they "
            "are 'unknown' and the month's verdicts are pending or unknown)")
        with still("scoring"):
            table = subprocess.run([*PROBER, *common], env=self.env, capture_output=True,
                                   text=True, stdin=subprocess.DEVNULL)
            as_json = subprocess.run([*PROBER, *common, "--format", "json"], env=self.env,
                                     capture_output=True, text=True, stdin=subprocess.DEVNULL)
            html = subprocess.run([*PROBER, *common, "--format", "html", "-o", str(report)],
                                  env=self.env, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)
        sys.stdout.write(table.stdout)
        for done in (table, as_json, html):
            if done.returncode not in (0, 1, 2):
                say(f"prober score failed (exit {done.returncode}): {done.stderr.strip()}")
                return False
        try:
            card = json.loads(as_json.stdout)
            conn = card["connectivity"]
        except (ValueError, KeyError) as exc:
            say(f"prober score --format json printed no scorecard ({exc})")
            return False

        expected = minutes_of(provider.began, provider.ended)
        down = conn["down_minutes"]
        span = f"{hhmm(min(expected))}-{hhmm(max(expected) + 1)}"
        say()
        say("what the score counted:")
        ok = down == len(expected)
        say(f"  provider fault (Dovecot stopped {clock(provider.began)}-{clock(provider.ended)} "
            f"UTC, seen by both vantages): it overlaps {len(expected)} clock minute(s), "
            f"{span} UTC; down minutes scored: {down} "
            + ("(as injected)" if ok else "(NOT what was injected)"))
        incidents = [f"{i['start'][-5:]}-{i['end'][-5:]} ({i['minutes']} min, "
                     f"seen by {', '.join(i['vantages'])})" for i in conn.get("incidents", [])]
        say(f"  incidents: {'; '.join(incidents) or 'none'}")
        own_minutes = minutes_of(own.began, own.ended)
        below = conn.get("below_quorum_minutes_by_vantage", {})
        counted = not own_minutes.isdisjoint(_incident_minutes(conn))
        say(f"  {CUT}'s own fault ({clock(own.began)}-{clock(own.ended)} UTC, seen by {CUT} "
            f"only): " + ("COUNTED against the provider (it should not be)" if counted else
                          "not counted against the provider (quorum = 2: one vantage alone "
                          "is that vantage's problem)")
            + "; what a vantage saw alone is listed as its own (mailbox-minutes): "
            + (", ".join(f"{v} {n}" for v, n in sorted(below.items())) or "none"))
        ok = ok and not counted
        say()
        say(f"HTML report: {report}")
        say(f"  open it in a browser (one self-contained file, no scripts): "
            f"xdg-open {report}   or copy it to your desktop")
        return ok

    # -- 5. the stop -----------------------------------------------------------------------------
    def keep_until_interrupted(self) -> None:
        env_file = self.tmp / "passwords.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in self.stack.env().items())
                            + f"{webmail_pages.PASSWORD_ENV}={self.web_password}\n")
        env_file.chmod(0o600)  # the throwaway passwords in a file only root reads, not shown
        say(f"\n--keep: the servers keep running (files in {self.tmp}); try:\n"
            f"  set -a; . {env_file}; set +a\n")
        for v, config in self.configs.items() or [("demo", self.tmp / "check.toml")]:
            say(f"  .venv/bin/prober run -c {config}      # vantage {v}")
        if self.configs:
            say(f"  .venv/bin/prober score -c {self.configs[VANTAGES[0]]} "
                f"--month {time.strftime('%Y-%m', time.gmtime())}")
        say("Ctrl-C here stops everything.")
        signal.sigwait({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})

    def stop_all(self) -> str:
        """Stop what was started; say what that was."""
        started = [name for name, there in (
            ("the two vantages", self.daemons), ("InfluxDB", self.influx),
            ("the page server", self.web), ("the relay", self.relay),
            ("Postfix and Dovecot", self.stack.started)) if there]
        stop_processes(self.daemons)
        for fault in self.faults:
            if fault.active:
                with contextlib.suppress(Exception):
                    fault.undo()
        if self.relay is not None:
            self.relay.stop()
        if self.web is not None:
            self.web.stop()
        if self.influx is not None:
            self.influx.stop()
        self.stack.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return ", ".join(started) or "nothing was running yet"


class Ticker:
    """Prints, from InfluxDB, one line per tick: each vantage's logins and canaries since
    the last line, and a line per new webmail load."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.shown_until: dict[str, int] = demo.last_heartbeats()
        self.loads_seen: set[tuple[str, str, int]] = set()
        self.last_line = 0.0

    def poll(self, end: float) -> None:
        if time.time() - self.last_line < self.demo.args.tick_s * 0.8:
            return
        try:
            beats = self.demo.last_heartbeats()
            # a tick is complete once the vantage's next tick has begun (its heartbeat)
            fresh = {v: t for v, t in beats.items() if t > self.shown_until.get(v, t)}
            if fresh and (len(fresh) == len(VANTAGES)
                          or time.time() - self.last_line > 1.5 * self.demo.args.tick_s):
                parts = [self.vantage_part(v, self.shown_until[v], t) for v, t in fresh.items()]
                self.shown_until.update(fresh)
                self.last_line = time.time()
                left = max(0, int(end - time.time()))
                say(f"{clock()} [{left // 60}:{left % 60:02d} left] " + " | ".join(parts))
            self.webmail_lines()
        except StackError as exc:
            say(f"{clock()} (InfluxDB did not answer: {exc})")
            self.last_line = time.time()

    def vantage_part(self, v: str, start_ns: int, end_ns: int) -> str:
        where = f"vantage = '{v}' AND time >= {start_ns} AND time < {end_ns}"
        logins = self.demo.query(f"SELECT total_s, error FROM mail_access WHERE {where} "
                                 "GROUP BY outcome, protocol")
        canaries = self.demo.query(f"SELECT outcome, delivery_s FROM mail_roundtrip WHERE {where}")
        ok = sum(1 for r in logins if r["outcome"] == "ok")
        text = f"{v}: logins {ok}/{len(logins)} ok"
        failed = Counter(r["protocol"] for r in logins if r["outcome"] != "ok")
        if failed:
            errors = {r["protocol"]: r["error"] for r in logins if r["outcome"] != "ok"}
            text += " (" + "; ".join(f"{p} x{n}: {_short(errors[p])}"
                                     for p, n in sorted(failed.items())) + ")"
        outcomes = Counter(r["outcome"] for r in canaries)
        delays = [r["delivery_s"] for r in canaries if r.get("delivery_s") is not None]
        text += ", canaries " + (", ".join(
            f"{n} {'refused' if o == 'send_failed' else o}" for o, n in sorted(outcomes.items()))
            or "none")
        if delays:
            text += f" ({sum(delays) / len(delays):.2f} s)"
        return text

    def webmail_lines(self) -> None:
        rows = self.demo.query("SELECT outcome, open_s, load_s, login_s, error FROM "
                               "webmail_load WHERE time > now() - 10m GROUP BY vantage, profile")
        for r in sorted(rows, key=lambda r: r["time"]):
            key = (r["vantage"], r["profile"], int(r["time"]))
            if key in self.loads_seen:
                continue
            self.loads_seen.add(key)
            if r["outcome"] == "ok":
                detail = (f"opened in {r['open_s']:.2f} s (sign-in page {r['load_s']:.2f} s, "
                          f"login to inbox {r['login_s']:.2f} s)")
            else:
                detail = f"{r['outcome']}: {r['error']}"
            say(f"{clock()}   webmail {r['vantage']} {r['profile']}: {detail}")


def _short(text: object, limit: int = 60) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def minutes_of(start: float, end: float) -> set[int]:
    return set(range(math.floor(start / MINUTE_S), math.floor(end / MINUTE_S) + 1))


def _incident_minutes(conn: dict[str, Any]) -> set[int]:
    out: set[int] = set()
    for i in conn.get("incidents", []):
        out |= set(range(i["start_ns"] // 10**9 // MINUTE_S, i["end_ns"] // 10**9 // MINUTE_S))
    return out


def stop_processes(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="scripts/demo.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--check-only", action="store_true",
                   help="only the stack and `prober check` (about a minute)")
    p.add_argument("--keep", action="store_true",
                   help="leave the servers running at the end, until Ctrl-C")
    p.add_argument("--minutes", type=int, default=3,
                   help="whole minutes of ticks with the faults (>= 2; default 3)")
    p.add_argument("--tick-s", type=float, default=5.0,
                   help="the vantages' tick_s (2-10; default 5)")
    p.add_argument("--webmail-interval-s", type=float, default=30.0,
                   help="one page load per profile this often (>= 10; default 30)")
    p.add_argument("--report", type=Path,
                   default=Path(tempfile.gettempdir()) / "prober-demo-report.html",
                   help="where the HTML report goes (default: %(default)s)")
    args = p.parse_args(argv)
    if args.minutes < 2:
        p.error("--minutes must be at least 2 (a minute for each fault)")
    if not 2 <= args.tick_s <= 10:
        p.error("--tick-s must be between 2 and 10 (the faults keep two ticks from the "
                "minute boundaries)")
    if args.webmail_interval_s < 10:
        p.error("--webmail-interval-s must be at least 10")
    return args, extra


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    demo = Demo(args)
    code = 0
    try:
        demo.start_stack(with_influx=not args.check_only)
        if not args.check_only:
            demo.start_servers()
        code = demo.check(extra, webmail=not args.check_only)
        if not args.check_only:
            demo.start_vantages()
            beats = demo.wait_first_ticks()
            end = demo.plan_faults(max(beats.values()) / 1e9)
            demo.run_faults(end)
            demo.stop_vantages()
            args.report.parent.mkdir(parents=True, exist_ok=True)
            code = 0 if demo.score(args.report.resolve()) else 1
        if args.keep:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM,
                                                      signal.SIGHUP})
            demo.keep_until_interrupted()
    except Interrupted as exc:
        say(f"\n{exc} received")
        code = 130
    except (StackError, OSError, subprocess.SubprocessError) as exc:
        say(f"\ndemo failed: {exc}")
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        say("stopping everything the demo started ...")
        stopped = demo.stop_all()
        say(f"stopped: {stopped}; {demo.tmp} removed")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
