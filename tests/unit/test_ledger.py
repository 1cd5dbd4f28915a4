"""The canary ledger: sequence numbers, canaries in flight, their points, the watchers' cursors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.agent.ledger import OPEN, Entry, Ledger, LedgerError
from prober.agent.spool import Spool
from prober.config.delivery import SpoolSettings
from prober.measurement import Measurement

T0 = 1_700_000_000_000_000_000
ROOT = Path(__file__).resolve().parents[2]

TAGS = {"vantage": "v1", "route": "a-to-b", "sender": "alice@example.test",
        "recipient": "bob@example.test", "direction": "internal"}


def roundtrip(canary: str, outcome: str, time_ns: int = T0, **fields: object) -> Measurement:
    return Measurement("mail_roundtrip", dict(TAGS),
                       {"canary": canary, "outcome": outcome, **fields},  # type: ignore[dict-item]
                       time_ns)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "prober.db"


@pytest.fixture
def ledger(db: Path) -> Iterator[Ledger]:
    led = Ledger(db)
    yield led
    led.close()


def spool_settings(path: Path, **kw: object) -> SpoolSettings:
    kw.setdefault("ballast_bytes", 0)
    kw.setdefault("min_free_bytes", 0)
    return SpoolSettings(path=str(path), **kw)  # type: ignore[arg-type]


# -- the file -------------------------------------------------------------------------------

def test_creates_its_directory_private_and_only_ledger_tables(db: Path) -> None:
    led = Ledger(db)
    led.close()
    assert db.is_file()
    assert db.parent.stat().st_mode & 0o777 == 0o700
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                        "WHERE name NOT LIKE 'sqlite_%'")}
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert names == {"ledger_canaries", "ledger_open", "ledger_cursors", "ledger_meta"}
    assert mode == "wal"


def test_commits_with_synchronous_full(ledger: Ledger) -> None:
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


# -- sequence numbers ----------------------------------------------------------------------------

def test_next_seq_is_monotonic_and_survives_reopen(db: Path) -> None:
    led = Ledger(db)
    assert [led.next_seq() for _ in range(5)] == [1, 2, 3, 4, 5]
    led.close()
    led = Ledger(db)
    assert led.next_seq() == 6
    led.close()


def test_next_seq_never_repeats_across_threads_and_two_ledgers_on_one_file(db: Path) -> None:
    a, b = Ledger(db), Ledger(db)
    seen: list[int] = []
    lock = threading.Lock()

    def draw(led: Ledger) -> None:
        mine = [led.next_seq() for _ in range(50)]
        assert mine == sorted(mine)
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=draw, args=(led,)) for led in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(1, 201))
    a.close()
    b.close()


# -- canaries ------------------------------------------------------------------------------------

def test_enter_leaves_a_send_uncertain_entry_without_a_point(ledger: Ledger) -> None:
    before = time.time_ns()
    ledger.enter("c1", "a-to-b", "bob")
    after = time.time_ns()
    e = ledger.get("c1")
    assert e is not None
    assert (e.id, e.route, e.recipient, e.outcome) == ("c1", "a-to-b", "bob", "send_uncertain")
    assert before <= e.created_ns <= after
    assert e.time_ns is None
    assert e.tags == {} and e.fields == {}
    assert ledger.get("nope") is None
    assert ledger.pending_count() == 1


def test_record_keeps_the_point_tags_fields_and_timestamp(ledger: Ledger) -> None:
    ledger.enter("c1", "a-to-b", "bob")
    point = roundtrip("c1", "pending", T0 + 5, smtp_code=250, data_s=0.125, tls=True,
                      error=None)
    ledger.record(point)
    e = ledger.get("c1")
    assert e is not None
    assert e.outcome == "pending"
    assert e.time_ns == T0 + 5
    assert e.tags == TAGS
    assert e.fields == {"canary": "c1", "outcome": "pending", "smtp_code": 250,
                        "data_s": 0.125, "tls": True, "error": None}
    # types survive the JSON round trip: an int stays an int (line protocol 250i), a bool a bool
    assert type(e.fields["smtp_code"]) is int and type(e.fields["tls"]) is bool


def test_entry_point_rewrites_the_same_series_and_timestamp(ledger: Ledger) -> None:
    ledger.enter("c1", "a-to-b", "bob")
    sent = roundtrip("c1", "pending", T0 + 7, smtp_code=250, data_s=0.5)
    ledger.record(sent)
    e = ledger.get("c1")
    assert e is not None
    # unchanged: byte for byte the point that was written
    assert e.point().to_line() == sent.to_line()
    later = e.point(outcome="delivered", delivery_s=12.5)
    assert later.name == "mail_roundtrip"
    assert dict(later.tags) == TAGS
    assert later.time_ns == T0 + 7
    assert later.fields == {"canary": "c1", "outcome": "delivered", "smtp_code": 250,
                            "data_s": 0.5, "delivery_s": 12.5}
    # series key = measurement + tag set, then the timestamp: identical to the first point's
    series = sent.to_line().split(" ")[0]
    assert later.to_line().split(" ")[0] == series
    assert later.to_line().split(" ")[-1] == sent.to_line().split(" ")[-1] == str(T0 + 7)
    # the entry itself is not changed by building a point from it
    assert e.fields["outcome"] == "pending"


def test_entry_point_without_a_recorded_time_uses_created(ledger: Ledger) -> None:
    ledger.enter("c1", "a-to-b", "bob")
    e = ledger.get("c1")
    assert e is not None
    filled = Entry(e.id, e.route, e.recipient, e.created_ns, None, e.outcome, dict(TAGS),
                   {"canary": "c1", "outcome": "send_uncertain"})
    assert filled.point().time_ns == e.created_ns


def test_resolved_outcomes_close_the_entry_open_ones_keep_it_open(ledger: Ledger) -> None:
    assert set(OPEN) == {"pending", "send_uncertain"}
    for i, outcome in enumerate(["pending", "send_uncertain", "delivered", "late", "lost",
                                 "send_failed"]):
        ledger.enter(f"c{i}", "a-to-b", "bob")
        ledger.record(roundtrip(f"c{i}", outcome, T0 + i))
    assert ledger.pending_count() == 2
    assert {e.id for e in ledger.open_older_than(T0 + 100)} == {"c0", "c1"}
    # a lost canary that arrives after all is corrected, and stays resolved
    e = ledger.get("c4")
    assert e is not None and e.outcome == "lost"
    ledger.record(e.point(outcome="late", delivery_s=20000.0))
    e = ledger.get("c4")
    assert e is not None and e.outcome == "late" and e.time_ns == T0 + 4
    assert ledger.pending_count() == 2


def test_open_older_than_uses_the_point_time_else_the_entry_time(ledger: Ledger) -> None:
    ledger.enter("unsent", "a-to-b", "bob")  # created now, no point yet
    ledger.enter("sent", "a-to-b", "bob")
    ledger.record(roundtrip("sent", "pending", T0))  # point far in the past
    unsent = ledger.get("unsent")
    assert unsent is not None
    assert [e.id for e in ledger.open_older_than(T0)] == []
    assert [e.id for e in ledger.open_older_than(T0 + 1)] == ["sent"]
    assert [e.id for e in ledger.open_older_than(unsent.created_ns)] == ["sent"]
    assert sorted(e.id for e in ledger.open_older_than(unsent.created_ns + 1)) == [
        "sent", "unsent"]
    got = ledger.open_older_than(T0 + 1)[0]
    assert got.tags == TAGS and got.outcome == "pending" and got.time_ns == T0


def test_forget_resolved_before_keeps_open_and_recently_resolved(ledger: Ledger) -> None:
    ledger.enter("old", "a-to-b", "bob")
    ledger.record(roundtrip("old", "delivered"))
    ledger.enter("waiting", "a-to-b", "bob")
    ledger.record(roundtrip("waiting", "pending", T0 - 10**15))  # open, and very old
    ledger.enter("unsent", "a-to-b", "bob")
    cutoff = time.time_ns() + 1
    time.sleep(0.002)
    ledger.enter("recent", "a-to-b", "bob")
    ledger.record(roundtrip("recent", "lost"))
    assert ledger.forget_resolved_before(cutoff) == 1
    assert ledger.get("old") is None
    assert ledger.get("waiting") is not None
    assert ledger.get("unsent") is not None
    assert ledger.get("recent") is not None
    assert ledger.forget_resolved_before(cutoff) == 0
    assert ledger.forget_resolved_before(time.time_ns() + 1) == 1
    assert ledger.get("recent") is None
    assert ledger.pending_count() == 2


def test_a_reopened_ledger_finds_its_canaries_in_flight(db: Path) -> None:
    led = Ledger(db)
    led.enter("c1", "a-to-b", "bob")
    led.record(roundtrip("c1", "pending", T0, smtp_code=250))
    led.enter("c2", "a-to-b", "bob")
    led.close()
    led = Ledger(db)
    assert led.pending_count() == 2
    e = led.get("c1")
    assert e is not None and e.point().to_line() == roundtrip("c1", "pending", T0,
                                                               smtp_code=250).to_line()
    led.close()


def test_nothing_committed_is_lost_to_a_sigkill(db: Path) -> None:
    child = f"""
import os, signal
from prober.agent.ledger import Ledger
from prober.measurement import Measurement
led = Ledger({str(db)!r})
for _ in range(3):
    led.next_seq()
led.enter("c1", "a-to-b", "bob")
led.record(Measurement("mail_roundtrip", {{"route": "a-to-b"}},
                       {{"canary": "c1", "outcome": "pending"}}, {T0}))
led.enter("c2", "a-to-b", "bob")
led.set_cursor("bob", "INBOX", 7, 42)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    led = Ledger(db)
    assert led.next_seq() == 4
    e1, e2 = led.get("c1"), led.get("c2")
    assert e1 is not None and e1.outcome == "pending" and e1.time_ns == T0
    assert e2 is not None and e2.outcome == "send_uncertain"
    assert led.get_cursor("bob", "INBOX") == (7, 42)
    led.close()


# -- cursors -------------------------------------------------------------------------------------

def test_cursors_persist_per_mailbox_and_folder(db: Path) -> None:
    led = Ledger(db)
    assert led.get_cursor("bob", "INBOX") is None
    led.set_cursor("bob", "INBOX", 1000, 17)
    led.set_cursor("bob", "Junk", 1001, 3)
    led.set_cursor("carol", "INBOX", 5, 99)
    led.set_cursor("bob", "INBOX", 1000, 18)
    led.close()
    led = Ledger(db)
    assert led.get_cursor("bob", "INBOX") == (1000, 18)
    assert led.get_cursor("bob", "Junk") == (1001, 3)
    assert led.get_cursor("carol", "INBOX") == (5, 99)
    assert led.get_cursor("carol", "Junk") is None
    led.close()


def test_a_new_uidvalidity_replaces_the_cursor_even_with_a_lower_uid(db: Path) -> None:
    led = Ledger(db)
    led.set_cursor("bob", "INBOX", 1000, 500)
    led.set_cursor("bob", "INBOX", 2000, 4)
    assert led.get_cursor("bob", "INBOX") == (2000, 4)
    led.close()
    led = Ledger(db)
    assert led.get_cursor("bob", "INBOX") == (2000, 4)
    led.close()


def test_an_unchanged_cursor_is_not_written_again(ledger: Ledger, db: Path) -> None:
    ledger.set_cursor("bob", "INBOX", 1000, 17)
    ledger._db.execute("PRAGMA busy_timeout=200")
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock: any write would fail
    try:
        ledger.set_cursor("bob", "INBOX", 1000, 17)  # most scans: nothing new, no write
        with pytest.raises(LedgerError, match="locked"):
            ledger.set_cursor("bob", "INBOX", 1000, 18)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert ledger.get_cursor("bob", "INBOX") == (1000, 17)
    ledger.set_cursor("bob", "INBOX", 1000, 18)  # the failed write left no transaction open
    assert ledger.get_cursor("bob", "INBOX") == (1000, 18)


# -- one file with the spool ---------------------------------------------------------------------

def test_ledger_and_spool_share_one_file(db: Path) -> None:
    spool = Spool(db, spool_settings(db))
    led = Ledger(db)
    led.enter("c1", "a-to-b", "bob")
    point = roundtrip("c1", "pending", T0)
    led.record(point)
    assert spool.append([point]) == 1
    seq = led.next_seq()
    led.set_cursor("bob", "INBOX", 9, 1)
    later = led.get("c1")
    assert later is not None
    assert spool.append([later.point(outcome="delivered", delivery_s=3.0)]) == 1
    led.record(later.point(outcome="delivered", delivery_s=3.0))
    rows = spool.read_batch(10)
    assert spool.ack([rows[0].id]) == 1
    spool.close()
    led.close()

    # both reopen, in the other order, and find their own state intact
    led = Ledger(db)
    spool = Spool(db, spool_settings(db))
    assert [r.line for r in spool.read_batch(10)] == [
        later.point(outcome="delivered", delivery_s=3.0).to_line()]
    e = led.get("c1")
    assert e is not None and e.outcome == "delivered" and e.fields["delivery_s"] == 3.0
    assert led.next_seq() == seq + 1
    assert led.get_cursor("bob", "INBOX") == (9, 1)
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"ledger_canaries", "ledger_cursors", "ledger_meta", "spool_points", "spool_dead",
            "spool_counters"} <= names
    spool.close()
    led.close()


def test_store_only_spool_pruning_leaves_the_ledger_alone(db: Path) -> None:
    led = Ledger(db)
    led.enter("c1", "a-to-b", "bob")
    led.record(roundtrip("c1", "pending", T0))  # a point years old
    spool = Spool(db, spool_settings(db, retain=True, max_age_s=0.001))
    spool.append([roundtrip("c1", "pending", T0)])
    time.sleep(0.01)
    assert spool.prune() == 1  # the spool's old point went
    e = led.get("c1")  # the ledger's canary of the same age did not
    assert e is not None and e.time_ns == T0
    assert led.pending_count() == 1
    spool.close()
    led.close()


def test_ledger_and_spool_write_concurrently_without_losing_anything(db: Path) -> None:
    spool = Spool(db, spool_settings(db))
    led = Ledger(db)
    errors: list[BaseException] = []

    def canaries() -> None:
        try:
            for i in range(100):
                led.enter(f"c{i}", "a-to-b", "bob")
                led.record(roundtrip(f"c{i}", "pending", T0 + i))
        except BaseException as exc:
            errors.append(exc)

    def points() -> None:
        try:
            for i in range(100):
                spool.append([roundtrip(f"p{i}", "pending", T0 + i)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=canaries), threading.Thread(target=points)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert led.pending_count() == 100
    assert spool.depth() == 100
    spool.close()
    led.close()


def test_forgotten_entry_is_no_longer_in_flight(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "prober.db")
    ledger.enter("c0ffee0000000001", "gone-route", "bob")
    assert ledger.pending_count() == 1
    ledger.forget("c0ffee0000000001")
    assert ledger.pending_count() == 0
    assert ledger.open_older_than(time.time_ns() + 10**9) == []
    entry = ledger.get("c0ffee0000000001")
    assert entry is not None and entry.outcome == "forgotten"
    ledger.close()
