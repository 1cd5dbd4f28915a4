"""The agent's own files under hostile conditions: a full disk, a corrupt spool, a state
directory deleted under it, a state directory that already existed with loose modes.

Each is one clear line in the log (per change of state), no traceback, and nothing that
was committed before is lost. The real `prober run` runs as a subprocess against the local
mail stack; the full disk is a small tmpfs mounted by the test.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.agent.spool import Spool
from prober.schema import HEARTBEAT
from tests.agent_helpers import own_state_dir, wait_for
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration


def _config(stack: MailStack, tmp: Path, extra: str = "") -> Path:
    text = own_state_dir(stack.probes_toml(vantage="hostile", extra=extra), stack, tmp)
    path = tmp / "probes.toml"
    path.write_text(text)
    return path


def _start(config: Path) -> subprocess.Popen[bytes]:
    log = (config.parent / "daemon.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "prober.cli", "-v", "run", "-c", str(config)],
                            stdout=log, stderr=log)


def _log(config: Path) -> str:
    return (config.parent / "daemon.log").read_text(errors="replace")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def _heartbeats(db: Path) -> int:
    if not db.exists():
        return 0
    with Spool(db) as spool:
        return sum(1 for _ in spool.read_lines(measurement=HEARTBEAT))


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs as the state directory's filesystem."""
    mount = tmp_path / "state"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                        str(mount)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test: {exc}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem to the last block."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_full_disk_is_one_line_per_change_and_loses_nothing_committed(
        mail_stack: MailStack, tmp_path: Path, small_fs: Path) -> None:
    # no floor and no ballast: the disk really fills, SQLite itself says "full"
    config = _config(mail_stack, tmp_path, "[agent]\ntick_s = 1\n"
                     "[spool]\nmin_free_bytes = 0\nballast_bytes = 0\n")
    db = small_fs / "prober.db"
    proc = _start(config)
    try:
        wait_for("three heartbeats", lambda: _heartbeats(db) >= 3, 60)
        before = _heartbeats(db)
        filler = _fill(small_fs)
        time.sleep(8)  # eight ticks on a full disk
        assert proc.poll() is None, _log(config)
        filler.unlink()
        wait_for("heartbeats again", lambda: _heartbeats(db) > before + 2, 30)
    finally:
        code = _stop(proc)
    log = _log(config)
    print(log[-4000:])
    assert code == 0, log
    assert "Traceback" not in log
    full = [ln for ln in log.splitlines() if "disk full" in ln]
    back = [ln for ln in log.splitlines() if "room again" in ln]
    assert len(full) == 1 and len(back) == 1, "\n".join(full + back)
    assert _heartbeats(db) > before  # what was committed before the disk filled is there


def _run_ticks(config: Path, ticks: int) -> int:
    log = (config.parent / "daemon.log").open("ab")
    return subprocess.run([sys.executable, "-m", "prober.cli", "-v", "run", "-c", str(config),
                           "--ticks", str(ticks)], stdout=log, stderr=log, timeout=120).returncode


def test_corrupt_spool_is_moved_aside_at_start_and_a_fresh_one_begins(
        mail_stack: MailStack, tmp_path: Path) -> None:
    config = _config(mail_stack, tmp_path, "[agent]\ntick_s = 0.5\n")
    db = tmp_path / "state" / "prober.db"
    assert _run_ticks(config, 3) == 0, _log(config)
    before = _heartbeats(db)
    assert before >= 3
    with sqlite3.connect(db) as conn:  # fold the WAL in, so the pages are in the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(db.read_bytes())
    page = 4096
    assert len(raw) >= 4 * page
    for n in range(1, len(raw) // page):  # every page but the header's: b-tree pages broken
        raw[n * page:n * page + 64] = b"\xde\xad\xbe\xef" * 16
    db.write_bytes(bytes(raw))
    corrupt = bytes(raw)

    # the readers meet it first: one line each, no traceback
    for args in (["spool", "status"], ["spool", "export"],
                 ["score", "--source", "spool", "--month", time.strftime("%Y-%m")]):
        out = subprocess.run([sys.executable, "-m", "prober.cli", *args, "-c", str(config)],
                             capture_output=True, text=True, timeout=60)
        said = out.stdout + out.stderr
        assert out.returncode != 0 and "Traceback" not in said, (args, said)
        assert "malformed" in said or "not a database" in said, (args, said)

    assert _run_ticks(config, 2) == 0, _log(config)
    log = _log(config)
    print(log[-3000:])
    assert "Traceback" not in log
    lines = [ln for ln in log.splitlines() if "is corrupt" in ln]
    assert len(lines) == 1 and "moved aside to" in lines[0], lines
    (aside,) = tmp_path.glob("state/prober.db.corrupt-*[0-9]Z")
    assert aside.read_bytes() == corrupt  # nothing thrown away: the evidence is kept
    assert lines[0].count(str(aside)) >= 1
    assert _heartbeats(db) >= 2  # the fresh spool took this run's points


def test_state_directory_removed_while_running_is_one_line_and_an_exit(
        mail_stack: MailStack, tmp_path: Path) -> None:
    config = _config(mail_stack, tmp_path, "[agent]\ntick_s = 0.5\n")
    state = tmp_path / "state"
    proc = _start(config)
    try:
        wait_for("two heartbeats", lambda: _heartbeats(state / "prober.db") >= 2, 60)
        subprocess.run(["rm", "-rf", str(state)], check=True)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = _log(config)
    print(log[-3000:])
    assert code == 1, log
    assert "Traceback" not in log
    lines = [ln for ln in log.splitlines() if "deleted or replaced" in ln]
    assert len(lines) == 1, log


def test_spool_is_private_even_in_a_state_directory_that_exists_0755(
        mail_stack: MailStack, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    old = os.umask(0o022)
    try:
        config = _config(mail_stack, tmp_path, "[agent]\ntick_s = 0.5\n")
        assert _run_ticks(config, 1) == 0, _log(config)
    finally:
        os.umask(old)
    for name in ("prober.db", "prober.db-wal", "prober.db-shm", "canary.key"):
        path = state / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (name, oct(path.stat().st_mode))
    assert (state / "prober.db").exists()
