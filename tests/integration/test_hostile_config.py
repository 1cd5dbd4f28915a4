"""A careless (or hostile) operator's probes.toml, run through the real CLI in a subprocess.

Every case must exit 3 within its timeout, name the file and the key on one line, and show
no traceback: `prober config check` and `prober check` alike (the check never reaches the
network with a configuration it refused).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "battery-Pa55-do-not-show"
TIMEOUT_S = 20


def _vantage(tmp: Path) -> str:
    return f'[vantage]\nname = "probe-1"\nstate_dir = "{tmp / "state"}"\n'


def _mailbox(tmp: Path, *, address: str = "probe@corp.example", extra: str = "",
             secret: str = 'password_env = "PROBER_BATTERY_PW"',
             smtp_host: str = "smtp.corp.example", imap_extra: str = "") -> str:
    return (f'\n[[mailbox]]\nname = "corp"\naddress = "{address}"\n{secret}\n{extra}\n'
            f'[mailbox.smtp]\nhost = "{smtp_host}"\ntls = "starttls"\n'
            f'[mailbox.imap]\nhost = "imap.corp.example"\ntls = "tls"\n{imap_extra}\n')


def _route() -> str:
    return ('\n[[route]]\nname = "self"\nfrom = "corp"\nto = "corp"\n'
            'direction = "internal"\n')


def _config(tmp: Path, body: str) -> Path:
    path = tmp / "probes.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _with(section: str) -> Callable[[Path], Path]:
    """A valid config plus one table appended."""
    return lambda tmp: _config(tmp, _vantage(tmp) + _mailbox(tmp) + _route() + section)


def _mailbox_with(**kw: str) -> Callable[[Path], Path]:
    return lambda tmp: _config(tmp, _vantage(tmp) + _mailbox(tmp, **kw) + _route())


def _secret_file(content: bytes, mode: int = 0o600) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "pw").write_bytes(content)
        (tmp / "pw").chmod(mode)
        return _config(tmp, _vantage(tmp) + _mailbox(tmp, secret='password_file = "pw"')
                       + _route())
    return make


def _fifo_secret(tmp: Path) -> Path:
    os.mkfifo(tmp / "pw", 0o600)
    return _config(tmp, _vantage(tmp) + _mailbox(tmp, secret='password_file = "pw"') + _route())


def _fifo_config(tmp: Path) -> Path:
    path = tmp / "probes.toml"
    os.mkfifo(path, 0o600)
    return path


def _dir_config(tmp: Path) -> Path:
    path = tmp / "probes.toml"
    path.mkdir()
    return path


def _latin1_config(tmp: Path) -> Path:
    path = tmp / "probes.toml"
    path.write_bytes(_vantage(tmp).encode() + b'# caf\xe9\n')
    return path


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]
    key: str  # "" when the whole file is at fault
    fragment: str
    # the commands that read what is at fault (the state's canary key: not config check)
    commands: tuple[str, ...] = ("config", "check")


def _state_key(content: bytes | None) -> Callable[[Path], Path]:
    """The canary key the agent made in its state directory, replaced by something hostile
    (None: a FIFO)."""
    def make(tmp: Path) -> Path:
        state = tmp / "state"
        state.mkdir(mode=0o700)
        if content is None:
            os.mkfifo(state / "canary.key", 0o600)
        else:
            (state / "canary.key").write_bytes(content)
        return _config(tmp, _vantage(tmp) + _mailbox(tmp) + _route())
    return make


CASES = {
    "tick_s nan": Case(_with("[agent]\ntick_s = nan\n"), "agent.tick_s", "finite"),
    "tick_s inf": Case(_with("[agent]\ntick_s = inf\n"), "agent.tick_s", "finite"),
    "tick_s 1e300": Case(_with("[agent]\ntick_s = 1e300\n"), "agent.tick_s", "<= 3600"),
    "connect_s nan": Case(_with("[timeouts]\nconnect_s = nan\n"), "timeouts.connect_s",
                          "finite"),
    "command_s -inf": Case(_with("[timeouts]\ncommand_s = -inf\n"), "timeouts.command_s",
                           "finite"),
    "connect_s negative": Case(_with("[timeouts]\nconnect_s = -5\n"), "timeouts.connect_s",
                               ">= 0.1"),
    "concurrency zero": Case(_with("[agent]\nconcurrency = 0\n"), "agent.concurrency", ">= 1"),
    "poll_s zero": Case(_with("[canary]\npoll_s = 0\n"), "canary.poll_s", ">= 0.05"),
    "max_bytes huge int": Case(_with("[spool]\nmax_bytes = 99999999999999999999999\n"),
                               "spool.max_bytes", "<="),
    "quorum huge": Case(_with("[sla]\nquorum = 1000000000\n"), "sla.quorum", "from 1 to"),
    "clause override nan": Case(_with("[sla.clauses.send_delay]\nmean_max_s = nan\n"),
                                "sla.clauses.send_delay.mean_max_s", "finite"),
    "CRLF in user": Case(_mailbox_with(extra='user = "probe\\r\\nA1 LOGOUT"'),
                         "mailbox[0].user", "one line"),
    "LF in address": Case(_mailbox_with(address="probe@corp.example\\nRCPT TO:<x@y>"),
                          "mailbox[0].address", "one line"),
    "CR in folder": Case(_mailbox_with(imap_extra='folder = "INBOX\\rA2 DELETE INBOX"'),
                         "mailbox[0].imap.folder", "one line"),
    "NUL in host": Case(_mailbox_with(smtp_host="smtp.corp.example\\u0000.evil"),
                        "mailbox[0].smtp.host", "one line"),
    "LF in route header": Case(_with('[canary]\nheaders = { "X-Probe" = "a\\nBcc: x@y" }\n'),
                               "canary.headers.X-Probe", "one line"),
    "FIFO password_file": Case(_fifo_secret, "mailbox[0].password_file", "FIFO"),
    "non-UTF-8 password_file": Case(_secret_file(b"caf\xe9\n"), "mailbox[0].password_file",
                                    "not UTF-8"),
    "world-readable password_file": Case(_secret_file(b"pw\n", 0o644),
                                         "mailbox[0].password_file", "readable by group"),
    "group-readable password_file": Case(_secret_file(b"pw\n", 0o640),
                                         "mailbox[0].password_file", "password_file_shared"),
    "empty password_file": Case(_secret_file(b"\n"), "mailbox[0].password_file", "empty"),
    "LF inside password_file": Case(_secret_file(b"pw\nA1 LOGOUT\n"),
                                    "mailbox[0].password_file", "CR, LF or NUL"),
    "-c FIFO": Case(_fifo_config, "", "FIFO"),
    "-c directory": Case(_dir_config, "", "directory"),
    "-c non-UTF-8": Case(_latin1_config, "", "not UTF-8"),
    "-c missing": Case(lambda tmp: tmp / "nope.toml", "", "cannot read"),
    "state canary.key FIFO": Case(_state_key(None), "canary.key_file", "FIFO", ("check",)),
    "state canary.key non-UTF-8": Case(_state_key(b"\xff" * 64), "canary.key_file",
                                       "not UTF-8", ("check",)),
}


def _run(tmp: Path, config: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PROBER_CONFIG", "CREDENTIALS_DIRECTORY")}
    env["PROBER_BATTERY_PW"] = PASSWORD
    return subprocess.run([sys.executable, "-m", "prober.cli", *command, "-c", str(config)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp,
                          env=env, stdin=subprocess.DEVNULL)


COMMANDS = {"config": ("config", "check"), "check": ("check", "--no-write")}
RUNS = [(name, cmd) for name, case in CASES.items() for cmd in case.commands]


@pytest.mark.parametrize(("name", "cmd"), RUNS, ids=[f"{n}-{c}" for n, c in RUNS])
def test_bad_config_exits_3_naming_file_and_key(tmp_path: Path, name: str, cmd: str) -> None:
    case = CASES[name]
    command = COMMANDS[cmd]
    config = case.make(tmp_path)
    proc = _run(tmp_path, config, *command)  # TimeoutExpired fails the test: a hang
    output = proc.stdout + proc.stderr
    assert proc.returncode == 3, output
    assert "Traceback" not in output, output
    assert PASSWORD not in output
    where = f"{config}: {case.key}: " if case.key else f"{config}: "
    lines = [line for line in output.splitlines() if where in line]
    assert len(lines) == 1, output
    assert case.fragment in lines[0], output


def test_a_valid_config_passes_the_same_way(tmp_path: Path) -> None:
    """The battery's base config is valid: each case fails for its own reason only."""
    proc = _run(tmp_path, _with("[agent]\ntick_s = 3600\n")(tmp_path), "config", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tick_s = 3600" in proc.stdout
