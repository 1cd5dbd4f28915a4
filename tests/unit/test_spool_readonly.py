"""The judge's side of the spool reads evidence without touching it: `prober spool status`,
`prober spool export` and `prober score --source spool` on a read-only copy change no byte
and create no file, whether the copy was taken with the agent's write-ahead log or not."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from prober.agent.spool import Spool
from prober.cli import main
from prober.config.delivery import SpoolSettings
from prober.measurement import Measurement
from prober.spoolfile import SpoolReader, SpoolReadError, shm_path, wal_path

OCT = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp()) * 10**9
MIN = 60 * 10**9


def _points(n: int) -> list[Measurement]:
    out = []
    for i in range(n):
        t = OCT + i * MIN
        out.append(Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0 * i}, t))
        out.append(Measurement("mail_access", {"vantage": "v1", "mailbox": "a@example.test",
                                               "protocol": "imap", "outcome": "fail"},
                               {"total_s": 0.1, "error": "refused"}, t + 1))
    return out


def _settings(path: Path) -> SpoolSettings:
    # the ballast is on, as in production: a read-only open must not create one
    return SpoolSettings(path=str(path), retain=True, max_age_s=10 * 365 * 86400.0,
                         min_free_bytes=0, ballast_bytes=64 * 1024)


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())}


def _read_only(folder: Path) -> None:
    for p in folder.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


def _writable(folder: Path) -> None:
    folder.chmod(0o755)
    for p in folder.iterdir():
        p.chmod(0o644)


@pytest.fixture
def closed_copy(tmp_path: Path) -> Iterator[Path]:
    """A spool written and closed by the agent, copied to a read-only folder."""
    src = tmp_path / "src" / "prober.db"
    with Spool(src, _settings(src)) as sp:
        sp.append(_points(30))
    copy = tmp_path / "evidence"
    copy.mkdir()
    shutil.copy(src, copy / "prober.db")
    _read_only(copy)
    yield copy / "prober.db"
    _writable(copy)


@pytest.fixture
def live_copy(tmp_path: Path) -> Iterator[Path]:
    """A copy taken while the agent had the spool open: the points are still in the -wal."""
    src = tmp_path / "src" / "prober.db"
    copy = tmp_path / "evidence"
    copy.mkdir()
    with Spool(src, _settings(src)) as sp:
        sp.append(_points(30))
        assert wal_path(src).stat().st_size > 0
        for p in (src, wal_path(src), shm_path(src)):
            shutil.copy(p, copy / p.name)
    _read_only(copy)
    yield copy / "prober.db"
    _writable(copy)


def _config(tmp_path: Path, spool: Path) -> Path:
    cfg = tmp_path / "judge.toml"
    cfg.write_text(f'[vantage]\nname = "judge"\nstate_dir = "{tmp_path}"\n\n'
                   f'[spool]\npath = "{spool}"\n\n[sla]\nmailboxes = ["a@example.test"]\n')
    return cfg


@pytest.mark.parametrize("which", ["closed_copy", "live_copy"])
def test_status_export_and_score_change_no_byte(which: str, request: pytest.FixtureRequest,
                                                tmp_path: Path) -> None:
    db: Path = request.getfixturevalue(which)
    before = _snapshot(db.parent)
    cfg = _config(tmp_path, db)
    runner = CliRunner()

    r = runner.invoke(main, ["spool", "status", "-c", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["depth"] == 60
    assert st["by_measurement"] == {"mail_access": 30, "prober_heartbeat": 30}
    assert st["ballast_present"] is False
    r = runner.invoke(main, ["spool", "status", "-c", str(cfg)])
    assert r.exit_code == 0 and "points:           60" in r.output

    r = runner.invoke(main, ["spool", "export", "-c", str(cfg), "-m", "prober_heartbeat"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [m.to_line() for m in _points(30)
                                     if m.name == "prober_heartbeat"]

    r = runner.invoke(main, ["score", "-c", str(cfg), "--month", "2026-10", "--source",
                             "spool", "--format", "json"])
    assert r.exit_code in (1, 2), r.output
    assert json.loads(r.output)["connectivity"]["down_minutes"] == 30

    assert _snapshot(db.parent) == before  # same files, same bytes: nothing created either


def test_reader_refuses_what_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(SpoolReadError, match="no spool database at"):
        SpoolReader(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(SpoolReadError, match="cannot read the spool"):
        SpoolReader(junk)


def test_a_copy_without_the_shared_memory_index_is_read_in_full(tmp_path: Path) -> None:
    src = tmp_path / "src" / "prober.db"
    copy = tmp_path / "evidence"
    copy.mkdir()
    with Spool(src, _settings(src)) as sp:
        sp.append(_points(5))
        for p in (src, wal_path(src)):  # the -shm left behind
            shutil.copy(p, copy / p.name)
    _read_only(copy)
    try:
        before = _snapshot(copy)
        with SpoolReader(copy / "prober.db") as reader:
            assert len(list(reader.read_lines())) == 10
        assert _snapshot(copy) == before
    finally:
        _writable(copy)


def test_spool_commands_exit_3_on_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[vantage]\nname = "v"\n[spool]\nmax_bytes = "lots"\n')
    for args in (["status"], ["export"], ["flush"]):
        r = CliRunner().invoke(main, ["spool", *args, "-c", str(cfg)])
        assert r.exit_code == 3, (args, r.output)
        assert "spool.max_bytes" in r.output


def test_running_as_root_does_not_hide_a_write(tmp_path: Path) -> None:
    """Root ignores chmod, so the byte comparison above is what proves read-only; this
    checks that comparison can fail: an agent-side open of the same copy does change it."""
    src = tmp_path / "prober.db"
    with Spool(src, _settings(src)) as sp:
        sp.append(_points(3))
    before = _snapshot(tmp_path)
    with Spool(src, _settings(src)) as sp:
        sp.append(_points(1))
    assert _snapshot(tmp_path) != before
