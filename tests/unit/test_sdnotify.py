"""sd_notify without a library: datagrams to $NOTIFY_SOCKET, as systemd receives them."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.agent.sdnotify import Notifier


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the tests may themselves run under systemd: never talk to the real manager
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


def received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on `sock`, one item each."""
    out = [sock.recv(65536)]
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(65536))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2.0)
    return out


def nothing_waiting(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(65536)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(2.0)
    return False


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = receiver(path)
    yield path, sock
    sock.close()


def test_each_message_is_one_datagram_with_newline_separated_assignments(
        sock_path: tuple[str, socket.socket]) -> None:
    path, sock = sock_path
    n = Notifier(path)
    assert n.enabled
    n.ready("3 routes, watchers 2/2 up")
    n.watchdog()
    n.status("12 ticks")
    n.reloading()
    n.stopping()
    n.stopping("stopping: finishing submissions in progress")
    assert received(sock) == [
        b"READY=1\nSTATUS=3 routes, watchers 2/2 up",
        b"WATCHDOG=1",
        b"STATUS=12 ticks",
        b"RELOADING=1",
        b"STOPPING=1\nSTATUS=stopping",
        b"STOPPING=1\nSTATUS=stopping: finishing submissions in progress",
    ]
    n.close()


def test_status_text_is_sent_as_utf8(sock_path: tuple[str, socket.socket]) -> None:
    path, sock = sock_path
    n = Notifier(path)
    n.status("Verzögerung 0.5 s")
    assert received(sock) == ["STATUS=Verzögerung 0.5 s".encode()]
    n.close()


def test_the_address_comes_from_notify_socket(sock_path: tuple[str, socket.socket],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = sock_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled and n.address == path
    n.watchdog()
    assert received(sock) == [b"WATCHDOG=1"]
    n.close()


def test_an_explicit_address_wins_over_the_environment(
        sock_path: tuple[str, socket.socket], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path, sock = sock_path
    other = receiver(str(tmp_path / "other"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "other"))
    n = Notifier(path)
    n.watchdog()
    assert received(sock) == [b"WATCHDOG=1"]
    assert nothing_waiting(other)
    other.close()
    n.close()


def test_an_at_sign_means_the_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "prober-test-" + os.urandom(8).hex()
    sock = receiver("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        n = Notifier()
        assert n.enabled
        n.ready("up")
        n.stopping()
        assert received(sock) == [b"READY=1\nSTATUS=up", b"STOPPING=1\nSTATUS=stopping"]
        n.close()
    finally:
        sock.close()


def test_an_abstract_name_is_not_a_file_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    name = "prober-test-" + os.urandom(8).hex()
    monkeypatch.chdir(tmp_path)
    # a socket file literally named "@name" must not receive what was meant for "\0name"
    decoy = receiver("@" + name)
    n = Notifier("@" + name)
    with caplog.at_level(logging.WARNING, logger="prober.sdnotify"):
        n.watchdog()  # nobody bound the abstract name: a warning, not a crash
    assert nothing_waiting(decoy)
    assert any("sd_notify" in r.getMessage() for r in caplog.records)
    decoy.close()
    n.close()


def test_without_notify_socket_it_is_disabled_and_sends_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    n = Notifier()
    assert n.address is None
    assert not n.enabled
    with caplog.at_level(logging.DEBUG, logger="prober.sdnotify"):
        n.ready("up")
        n.watchdog()
        n.status("x")
        n.reloading()
        n.stopping()
    assert caplog.records == []
    assert n.watchdog_interval_s is None
    n.close()


def test_an_empty_notify_socket_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    n = Notifier()
    assert not n.enabled
    n.watchdog()  # no exception


def test_a_missing_socket_logs_a_warning_and_does_not_raise(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = str(tmp_path / "gone" / "notify")
    n = Notifier(missing)
    assert n.enabled
    with caplog.at_level(logging.WARNING, logger="prober.sdnotify"):
        n.ready("up")
        n.watchdog()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(missing in r.getMessage() for r in warnings)
    n.close()


def test_a_socket_whose_reader_went_away_logs_a_warning(
        sock_path: tuple[str, socket.socket], caplog: pytest.LogCaptureFixture) -> None:
    path, sock = sock_path
    n = Notifier(path)
    n.watchdog()
    assert received(sock) == [b"WATCHDOG=1"]
    sock.close()  # systemd gone; the file stays
    with caplog.at_level(logging.WARNING, logger="prober.sdnotify"):
        n.watchdog()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    n.close()


def test_after_close_sending_is_a_no_op(sock_path: tuple[str, socket.socket]) -> None:
    path, sock = sock_path
    n = Notifier(path)
    n.close()
    assert not n.enabled
    n.watchdog()
    assert nothing_waiting(sock)
    n.close()  # twice is fine


@pytest.mark.parametrize(("usec", "interval"), [("180000000", 90.0), ("1000000", 0.5),
                                                ("30000000", 15.0)])
def test_watchdog_interval_is_half_of_watchdog_usec(
        usec: str, interval: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    n = Notifier()
    assert n.watchdog_interval_s == pytest.approx(interval)
    n.close()


def test_no_watchdog_usec_no_interval(sock_path: tuple[str, socket.socket]) -> None:
    n = Notifier(sock_path[0])
    assert n.watchdog_interval_s is None
    n.close()

