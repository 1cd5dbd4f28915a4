"""The quick-start demo, run as a user runs it: its short form, and the README's own
`bash scripts/demo.sh` stopped by a Ctrl-C after its first tick.

The demo's own verdict is not taken on trust: the test reads the fault announcements it
printed (wall-clock times), works out the UTC minutes the provider's fault overlapped, and
holds `prober score`'s printed table to them: fault time, the incident and its vantages;
the one-vantage fault must appear in no incident. Then nothing the demo started may be
left: no process naming its directory, no listener on the ports it printed.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLOCK = r"(\d\d):(\d\d):(\d\d)"


def _demo(*args: str, script: bool = False) -> subprocess.Popen[str]:
    # script: the quick-start command itself (it makes or reuses .venv, then runs the demo)
    cmd = ["bash", "scripts/demo.sh"] if script else [sys.executable, "-m", "tests.localstack.demo"]
    # a session of its own, so a Ctrl-C can be sent to its process group as a terminal does
    return subprocess.Popen([*cmd, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _seconds(match: re.Match[str]) -> int:
    h, m, s = (int(x) for x in match.groups()[:3])
    return h * 3600 + m * 60 + s


def _minutes(start_s: int, end_s: int) -> list[str]:
    """The HH:MM of every clock minute the span [start, end] overlaps (past midnight too)."""
    end_s += 86400 if end_s < start_s else 0
    return [f"{(m // 60) % 24:02d}:{m % 60:02d}" for m in range(start_s // 60, end_s // 60 + 1)]


def _ports(out: str) -> set[int]:
    return {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)}


def _nothing_left(out: str) -> None:
    (workdir,) = set(re.findall(r"(/\S*/prober-demo-[^/\s]+)", out))
    assert not Path(workdir).exists(), f"{workdir} was not removed"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    left = [line for line in ps.splitlines() if workdir in line]
    assert not left, left
    ports = _ports(out)
    assert len(ports) >= 8, out  # Postfix 3, Dovecot 2, the pages, InfluxDB, the relay
    for port in ports:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listens"


def test_short_demo_scores_the_provider_fault_only(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    proc = _demo("--minutes", "2", "--report", str(report))
    try:
        out, _ = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out

    # (1) the check, (2) ticks of both vantages and the faults, (3) page loads
    assert "PROBER OK" in out, out
    ticks = re.findall(rf"^{CLOCK} \[\d+:\d\d left\] (.*)$", out, re.M)
    assert len(ticks) >= 12, out  # two minutes at a 5 s tick, and the warm-up
    assert any("demo-a: logins 6/6 ok" in t[3] and "demo-b: logins 6/6 ok" in t[3]
               for t in ticks), out
    for vantage in ("demo-a", "demo-b"):
        for profile in ("narrowband", "broadband"):
            assert re.search(rf"webmail {vantage} {profile}: opened in", out), out
    begin = re.search(rf"^{CLOCK} >>> PROVIDER FAULT: Dovecot stopped", out, re.M)
    end = re.search(rf"^{CLOCK} <<< PROVIDER FAULT ENDS", out, re.M)
    cut = re.search(rf"^{CLOCK} >>> demo-b FAULT", out, re.M)
    back = re.search(rf"^{CLOCK} <<< demo-b FAULT ENDS", out, re.M)
    assert begin and end and cut and back, out
    # while Dovecot was down both vantages saw every login fail; while demo-b's line was
    # cut, only demo-b saw its IMAP logins fail (two ticks of slack after each start)
    during = [t[3] for t in ticks if _seconds(begin) + 12 < _seconds_of(t) < _seconds(end)]
    assert any("demo-a: logins 0/6" in t and "demo-b: logins 0/6" in t for t in during), out
    assert not any("6/6 ok" in t for t in during), out
    cut_ticks = [t[3] for t in ticks if _seconds(cut) + 12 < _seconds_of(t) < _seconds(back)]
    assert any("demo-b: logins 3/6 ok (imap x3" in t for t in cut_ticks), out
    assert all("demo-a: logins 6/6 ok" in t for t in cut_ticks if "demo-a" in t), out

    # (4) the score: exactly the minutes the provider's fault overlapped, and no other
    down = _minutes(_seconds(begin), _seconds(end))
    assert len(down) == 1  # the short form keeps the outage inside one minute
    (row,) = [line for line in out.splitlines() if line.startswith("§3  Total fault time")]
    assert re.split(r"\s{2,}", row)[3] == f"{len(down)} min", row  # the "measured" column
    assert re.search(rf"down {len(down)} min,", out), out
    incidents = re.findall(r"^\d{4}-\d\d-\d\d (\d\d:\d\d) UTC\s+\d{4}-\d\d-\d\d (\d\d:\d\d) UTC\s+"
                           r"(\d+)\s+(demo-\S+(?: demo-\S+)*)\s", out, re.M)
    assert incidents == [(down[0], _minutes(_seconds(end) + 60, _seconds(end) + 60)[0],
                          str(len(down)), "demo-a demo-b")], out
    for minute in _minutes(_seconds(cut), _seconds(back)):
        assert minute not in {i[0] for i in incidents}, out
    assert "not counted against the provider" in out, out
    assert f"HTML report: {report}" in out, out
    page = report.read_text()
    assert page.lstrip().lower().startswith("<!doctype html"), page[:80]
    assert "<svg" in page and "demo-a" in page

    # (5) nothing left running
    assert "stopping everything the demo started" in out
    _nothing_left(out)


def _seconds_of(tick: tuple[str, ...]) -> int:
    h, m, s = (int(x) for x in tick[:3])
    return h * 3600 + m * 60 + s


def test_ctrl_c_stops_everything() -> None:
    # the README's quick-start command as it stands, in its default (longer) form: the
    # Ctrl-C comes after the first tick, so the form's length costs nothing here
    proc = _demo(script=True)
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:
            seen.append(line)
            if re.match(rf"{CLOCK} \[\d+:\d\d left\] demo-a", line) or time.monotonic() > deadline:
                break
        assert any("left] demo-a" in line for line in seen), "".join(seen)
        os.killpg(proc.pid, signal.SIGINT)  # what a Ctrl-C in the terminal sends
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert "SIGINT received" in out and "Traceback" not in out, out
    _nothing_left(out)
