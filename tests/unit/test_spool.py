"""The spool on its own: durability settings, order, retention, disk safety."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from prober.agent.spool import Spool, SpoolFull
from prober.config.delivery import MiB, SpoolSettings
from prober.measurement import Measurement

T0 = 1_700_000_000_123_456_789


def m(i: int, name: str = "mail_access", **tags: str) -> Measurement:
    return Measurement(name, {"vantage": "v1", **tags}, {"seq": i, "total_s": 0.25}, T0 + i)


def settings(path: Path, **kw: object) -> SpoolSettings:
    kw.setdefault("ballast_bytes", 0)
    kw.setdefault("min_free_bytes", 0)
    return SpoolSettings(path=str(path), **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "prober.db"


def test_append_is_committed_durably_in_wal_with_synchronous_full(db: Path) -> None:
    sp = Spool(db, settings(db))
    assert sp.append([m(1), m(2)]) == 2
    conn = sp._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # Another connection (another process would be the same) sees the commit at once.
    other = sqlite3.connect(db)
    assert other.execute("SELECT count(*) FROM spool_points").fetchone()[0] == 2
    other.close()
    sp.close()
    again = Spool(db, settings(db))
    assert [r.line for r in again.read_batch(10)] == [m(1).to_line(), m(2).to_line()]
    again.close()


def test_rows_keep_measurement_time_and_enqueue_time(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        sp.append([m(7, name="webmail_load")])
        row = sp.read_batch(1)[0]
        assert row.measurement == "webmail_load"
        assert row.time_ns == T0 + 7
        assert row.enqueued_ns > T0
        assert sp.oldest_age_s() is not None and 0 <= sp.oldest_age_s() < 60  # type: ignore


def test_batches_in_id_order_and_ack_deletes_only_those(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        for i in range(10):
            sp.append([m(i)])
        first = sp.read_batch(4)
        assert [r.time_ns - T0 for r in first] == [0, 1, 2, 3]
        sp.ack([r.id for r in first])
        assert sp.depth() == 6
        assert [r.time_ns - T0 for r in sp.read_batch(100)] == [4, 5, 6, 7, 8, 9]
        # ids are never reused: a new append sorts after everything spooled before
        sp.ack([r.id for r in sp.read_batch(100)])
        sp.append([m(99)])
        assert sp.read_batch(1)[0].id > first[-1].id + 6


def test_empty_spool(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        assert sp.depth() == 0
        assert sp.oldest_age_s() is None
        assert sp.read_batch(5) == []
        assert sp.append([]) == 0


def test_read_lines_filters_by_measurement_and_time(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        sp.append([m(i, name="mail_access") for i in range(5)])
        sp.append([m(i, name="prober_heartbeat") for i in range(5)])
        assert len(list(sp.read_lines())) == 10
        got = list(sp.read_lines("mail_access", start_ns=T0 + 1, end_ns=T0 + 3))
        assert got == [m(1).to_line(), m(2).to_line()]
        assert list(sp.read_lines("nothing")) == []


def test_read_lines_keeps_append_order_so_a_rewrite_comes_last(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        pending = Measurement("mail_roundtrip", {"vantage": "v1"}, {"outcome": "pending"}, T0)
        sp.append([pending])
        sp.append([pending.with_fields(outcome="delivered")])
        lines = list(sp.read_lines("mail_roundtrip"))
        assert [('"delivered"' in x) for x in lines] == [False, True]


def test_measurement_without_fields_is_skipped_not_fatal(db: Path, caplog) -> None:
    with Spool(db, settings(db)) as sp, caplog.at_level(logging.ERROR, "prober.spool"):
        bad = Measurement("mail_access", {"vantage": "v1"}, {"total_s": None}, T0)
        assert sp.append([bad, m(1)]) == 1
        assert sp.invalid_count == 1
        assert "mail_access" in caplog.text


def test_append_lines_takes_measurement_and_timestamp_from_the_line(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        sp.append_lines([r"my\ meas\,x,tag=a f=1i 123", "", "# comment", "other f=2"])
        rows = sp.read_batch(10)
        assert [(r.measurement, r.time_ns == 123) for r in rows] == [
            ("my meas,x", True), ("other", False)]


def test_dead_letter_moves_rows_with_reason(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        sp.append([m(1), m(2)])
        rows = sp.read_batch(2)
        sp.dead_letter(rows[:1], 400, "unable to parse")
        assert sp.depth() == 1
        dead = sp.dead_rows()
        assert [(d.id, d.status, d.reason, d.line) for d in dead] == [
            (rows[0].id, 400, "unable to parse", rows[0].line)]
        assert sp.stats().dead == 1


def test_free_space_floor_refuses_new_points_loudly_and_keeps_old_ones(db: Path,
                                                                       caplog) -> None:
    with Spool(db, settings(db)) as sp:
        sp.append([m(1), m(2)])
    free = shutil.disk_usage(db.parent).free
    floor = settings(db, min_free_bytes=free + 1024 * MiB)
    with Spool(db, floor) as sp, caplog.at_level(logging.ERROR, "prober.spool"):
        with pytest.raises(SpoolFull) as info:
            sp.append([m(3), m(4), m(5)])
        assert info.value.count == 3
        assert "min_free_bytes" in str(info.value) and "MiB free" in str(info.value)
        assert sp.refused_count == 3
        assert "refused 3 new point(s)" in caplog.text
        assert sp.depth() == 2  # the existing points are kept
        with pytest.raises(SpoolFull):
            sp.append([m(6)])
        assert sp.refused_count == 4
        assert sp.stats().refused_total == 4  # persisted for `prober spool status`


def test_size_cap_refuses_when_delivering(db: Path) -> None:
    with Spool(db, settings(db, max_bytes=MiB)) as sp:
        big = [Measurement("x", {"vantage": "v1"}, {"pad": "p" * 500, "i": i}, T0 + i)
               for i in range(3000)]
        sp.append(big)  # ~1.6 MiB: the cap is checked before an append, so this one fits
        with pytest.raises(SpoolFull, match="max_bytes"):
            sp.append([m(1)])
        assert sp.depth() == 3000  # nothing unsent is dropped while delivering


def test_store_mode_prunes_oldest_by_size(db: Path, caplog) -> None:
    s = settings(db, max_bytes=MiB, retain=True)
    with Spool(db, s) as sp, caplog.at_level(logging.WARNING, "prober.spool"):
        for chunk in range(6):
            sp.append([Measurement("x", {"vantage": "v1"}, {"pad": "p" * 500, "i": i},
                                   T0 + chunk * 1000 + i) for i in range(1000)])
        sp.prune()
        assert sp.used_bytes() <= MiB
        assert sp.pruned_count > 0
        assert "pruned" in caplog.text
        remaining = sp.read_batch(10**6)
        # what is left is the newest, in order, and most of what fits under the cap
        assert len(remaining) > 1200
        assert remaining[-1].time_ns == T0 + 5999
        assert [r.time_ns for r in remaining] == sorted(r.time_ns for r in remaining)


def test_store_mode_prunes_by_age(db: Path) -> None:
    s = settings(db, max_age_s=3600, retain=True)
    with Spool(db, s) as sp:
        sp.append([m(i) for i in range(10)])
        conn = sp._conn()
        # age the first six rows by two hours
        conn.execute("UPDATE spool_points SET enqueued_ns = enqueued_ns - 7200000000000 "
                     "WHERE id <= (SELECT min(id) + 5 FROM spool_points)")
        assert sp.prune() == 6
        assert [r.time_ns - T0 for r in sp.read_batch(100)] == [6, 7, 8, 9]
        assert sp.stats().pruned_total == 6


def test_delivering_spool_never_prunes(db: Path) -> None:
    s = settings(db, max_age_s=60, max_bytes=MiB, retain=False)
    with Spool(db, s) as sp:
        sp.append([m(i) for i in range(10)])
        sp._conn().execute("UPDATE spool_points SET enqueued_ns = 0")
        assert sp.prune() == 0
        assert sp.depth() == 10


def test_ballast_is_created_released_and_restored(db: Path) -> None:
    s = settings(db, ballast_bytes=2 * MiB)
    with Spool(db, s) as sp:
        assert sp.ballast_path.stat().st_size == 2 * MiB
        assert sp.ballast_path.stat().st_blocks * 512 >= 2 * MiB  # allocated, not sparse
        assert sp.release_ballast() is True
        assert not sp.ballast_path.exists()
        assert sp.release_ballast() is False
        sp.append([m(1)])
        sp.ack([r.id for r in sp.read_batch(1)])  # room again: put back after deleting
        assert sp.ballast_path.exists()


def test_other_tables_in_the_same_file_are_left_alone(db: Path) -> None:
    db.parent.mkdir(parents=True)
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE ledger (token TEXT PRIMARY KEY)")
    other.execute("INSERT INTO ledger VALUES ('abc')")
    other.commit()
    with Spool(db, settings(db, retain=True, max_age_s=60)) as sp:
        sp.append([m(1)])
        sp._conn().execute("UPDATE spool_points SET enqueued_ns = 0")
        sp.prune()
        sp.stats()
    assert other.execute("SELECT token FROM ledger").fetchall() == [("abc",)]
    other.close()


def test_appends_from_one_thread_while_another_drains(db: Path) -> None:
    with Spool(db, settings(db)) as sp:
        total = 2000
        drained: list[int] = []
        done = threading.Event()

        def producer() -> None:
            for i in range(total):
                sp.append([m(i)])
            done.set()

        def consumer() -> None:
            while True:
                rows = sp.read_batch(100)
                if rows:
                    sp.ack([r.id for r in rows])
                    drained.extend(r.time_ns - T0 for r in rows)
                elif done.is_set() and sp.depth() == 0:
                    return

        threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert drained == list(range(total))  # each once, in order


def test_closed_spool_says_so(db: Path) -> None:
    sp = Spool(db, settings(db))
    sp.close()
    with pytest.raises(Exception, match="closed"):
        sp.append([m(1)])


def test_sqlite_disk_full_releases_ballast_and_refuses_without_crashing(db: Path,
                                                                         caplog) -> None:
    # max_page_count makes SQLite answer "database or disk is full" exactly as a full disk
    # would, without filling one.
    with Spool(db, settings(db, ballast_bytes=MiB)) as sp:
        sp.append([m(i) for i in range(10)])
        conn = sp._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        assert sp.ballast_path.exists()
        big = [Measurement("x", {"vantage": "v1"}, {"pad": "p" * 2000, "i": i}, T0 + i)
               for i in range(200)]
        with caplog.at_level(logging.WARNING, "prober.spool"), pytest.raises(SpoolFull) as e:
            sp.append(big)
        assert "full" in str(e.value) and e.value.count == 200
        assert not sp.ballast_path.exists()
        assert "released" in caplog.text and "refused 200" in caplog.text
        assert sp.depth() == 10
        # deleting delivered rows still works on the "full" database
        sp.ack([r.id for r in sp.read_batch(5)])
        assert sp.depth() == 5
