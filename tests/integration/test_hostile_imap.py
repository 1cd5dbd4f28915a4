"""Hostile IMAP: each case ends within its timeout with a named outcome, memory stays
bounded, no secret reaches an error, and the watcher keeps matching canaries afterwards.

A 100 MB literal, an endless stream of lines and a line without end come from a small
hostile server on loopback (tests/hostile_imap.py), met by a client in a subprocess that
reports its own peak RSS. A 3,000-message INBOX and 64 KB headers are put straight into
the real Dovecot's Maildir, under a running watcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prober.config.mail import Endpoint, ImapSettings, Mailbox, Timeouts
from prober.config.reader import Secret
from prober.contract import resolve
from prober.probes.access import imap_access
from prober.probes.base import ProbeContext
from prober.probes.canary import HEADER, CanaryId, build_message, new_canary_id
from prober.probes.imap import MailboxWatcher, MemoryCursors
from prober.probes.plan import context
from prober.probes.roundtrip import CanaryTarget, send_canary
from prober.schema import ErrorClass
from tests.canary_helpers import TEST_KEY
from tests.fixtures_mail import load_config
from tests.hostile_imap import ECHO_PASSWORD, HostileImapServer
from tests.localstack.mail import MAILBOX_UID, MailStack

pytestmark = pytest.mark.integration

CASE_TIMEOUT_S = 60
MAX_RSS_MB = 200


async def _client_against(mode: str) -> dict:
    async with HostileImapServer(mode) as server:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.hostile_imap", str(server.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), CASE_TIMEOUT_S)
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err, err.decode()
        result = json.loads(out)
        result["server_sent_mb"] = server.sent / 2**20
        return result


@pytest.mark.parametrize(("mode", "words"), [
    ("literal", "literal"),
    ("lines", "response larger than"),
    ("endless-line", "line longer than"),
])
def test_oversized_responses_end_as_protocol_errors_in_bounded_memory(mode: str,
                                                                      words: str) -> None:
    result = asyncio.run(_client_against(mode))
    print(mode, result)
    assert result["kind"] == ErrorClass.PROTOCOL, result
    assert result["step"] == "fetch" and words in result["error"], result
    assert result["seconds"] < 20, result
    # aioimaplib alone peaked at 841 MB on the 100 MB literal
    assert result["maxrss_mb"] < MAX_RSS_MB, result


def _mailbox(port: int, password: str) -> Mailbox:
    ep = Endpoint("127.0.0.1", port, "none")
    return Mailbox("hostile", "probe@hostile.test", "probe", Secret("env:HOSTILE", password),
                   ep, ImapSettings(ep, junk_folder=None, idle=False))


def test_an_echoed_login_line_never_puts_the_password_into_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    # everything of ours at debug; aioimaplib's own debug lines (the wire) stay off, as
    # the CLI keeps them at any -v
    caplog.set_level(logging.DEBUG, logger="prober")
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
    timeouts = Timeouts(connect_s=5, command_s=5)

    async def run() -> tuple[dict, str]:
        async with HostileImapServer("echo-login") as server:
            mailbox = _mailbox(server.port, ECHO_PASSWORD)
            ctx = ProbeContext("v1", timeouts, resolve({}))
            (point,) = await asyncio.wait_for(imap_access(ctx, mailbox), 20)
            watcher = MailboxWatcher(mailbox, timeouts, load_canary_settings(), "v1",
                                     key=TEST_KEY)
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(stop))
            assert await watcher.wait_ready(20)
            stop.set()
            await asyncio.wait_for(task, 20)
            return dict(point.fields), str(watcher.last_error)

    fields, watcher_error = asyncio.run(run())
    assert fields["error_class"] == ErrorClass.AUTH, fields
    assert "****" in fields["error"] and "AUTHENTICATIONFAILED" in fields["error"], fields
    quoted = ECHO_PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    for text in (fields["error"], watcher_error, caplog.text):
        for form in (ECHO_PASSWORD, quoted, "Pa55"):
            assert form not in text


def load_canary_settings():  # the defaults, without a config file
    from prober.config.mail import CanarySettings

    return CanarySettings()


# --- the real Dovecot, its Maildir filled behind its back ---------------------------------


def _drop(stack: MailStack, user: str, blobs: list[bytes]) -> list[Path]:
    """Messages straight into Maildir/new, as a bulk import or a flood would put them."""
    new, tmp = stack.maildir(user) / "new", stack.maildir(user) / "tmp"
    new.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    stamp = time.time_ns()
    for i, blob in enumerate(blobs):
        # Maildir's way: written in tmp/, then renamed into new/, where Dovecot may move
        # it to cur/ at once (a read-write SELECT of another session does)
        name = f"{stamp}.{i}.hostile.{stack.hostname}"
        (tmp / name).write_bytes(blob)
        os.chown(tmp / name, MAILBOX_UID, MAILBOX_UID)
        os.rename(tmp / name, new / name)
        paths.append(new / name)
    return paths


def _reset_peak_rss() -> int:
    """Peak RSS (VmHWM) reset to the current RSS; returns that, in kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _vm("VmHWM")


def _vm(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(name)


async def _watch_through(stack: MailStack, tmp_path: Path, blobs: list[bytes],
                         also_expect: str | None = None) -> dict:
    """Start bob's watcher, flood his INBOX with `blobs`, then send a real canary through
    Postfix: it must be matched, with the event loop never blocked for long."""
    config = load_config(stack, tmp_path)
    route = config.routes[0]  # alice -> bob
    recipient = config.mailboxes[route.recipient]
    cursors = MemoryCursors()
    watcher = MailboxWatcher(recipient, config.timeouts, config.canary, config.vantage.name,
                             cursors=cursors, key=TEST_KEY)
    stop = asyncio.Event()
    lag = 0.0

    async def ticker() -> None:
        nonlocal lag
        while not stop.is_set():
            t = time.monotonic()
            await asyncio.sleep(0.05)
            lag = max(lag, time.monotonic() - t - 0.05)

    tick = asyncio.create_task(ticker())
    task = asyncio.create_task(watcher.run(stop))
    paths: list[Path] = []
    try:
        assert await watcher.wait_ready(20) and watcher.up, watcher.last_error
        also = watcher.expect(also_expect) if also_expect else None
        paths = _drop(stack, "bob", blobs)
        await asyncio.sleep(0.1)  # the drop itself blocked this loop: let the ticker see
        lag = 0.0  # it, then count the watcher's blocking only
        futures: list[asyncio.Future] = []

        def expect(cid: CanaryId) -> None:
            futures.append(watcher.expect(cid.id))

        sent = await send_canary(context(config), CanaryTarget.of(config, route), 1, expect,
                                 key=TEST_KEY)
        assert sent.submission.ok, sent.submission.error
        arrival = await asyncio.wait_for(futures[0], CASE_TIMEOUT_S)
        if also is not None:
            await asyncio.wait_for(also, CASE_TIMEOUT_S)
        result = {"arrival": arrival, "also": also.result() if also else None, "lag": lag,
                  "error": watcher.last_error, "reconnects": watcher.reconnects}
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        tick.cancel()
        for path in paths:  # the session's mailboxes are shared with other tests
            for sub in ("new", "cur"):
                for p in (path.parent.parent / sub).glob(path.name + "*"):
                    p.unlink(missing_ok=True)
    result["cursor"] = cursors.get_cursor(recipient.name, "INBOX")  # saved after each batch
    return result


def test_3000_messages_at_once_the_cursor_advances_and_canaries_still_match(
        mail_stack: MailStack, tmp_path: Path) -> None:
    blobs = [(f"From: flood@example.test\r\nTo: bob@example.test\r\nSubject: flood {i}\r\n"
              f"Message-ID: <flood.{i}@example.test>\r\n\r\nbody {i}\r\n").encode()
             for i in range(3000)]
    base = _reset_peak_rss()
    result = asyncio.run(_watch_through(mail_stack, tmp_path, blobs))
    grown_mb = (_vm("VmHWM") - base) / 1024
    print(f"3000 messages: lag {result['lag']:.3f} s, cursor {result['cursor']}, "
          f"peak RSS +{grown_mb:.1f} MB")
    assert result["error"] is None and result["reconnects"] == 0, result
    assert result["arrival"].uid >= 3000 and result["cursor"][1] >= result["arrival"].uid
    assert result["lag"] < 1.0, result
    assert grown_mb < 100


def test_64k_headers_do_not_block_the_loop_and_canaries_still_match(
        mail_stack: MailStack, tmp_path: Path) -> None:
    def message(name: str, value: bytes) -> bytes:
        return (b"From: x@example.test\r\nTo: bob@example.test\r\n" + name + b": " + value
                + b"\r\nMessage-ID: <h.%d@example.test>\r\n\r\nbody\r\n" % len(value))

    blobs = [message(HEADER.encode(), b"v=" * 32768),
             message(b"Subject", b"[prober] canary " * 4096),
             message(b"Subject", b"a " * 32768),
             message(b"Received", b"by " * 21845),
             # 2 MB of Received: the partial fetch sends 128 KiB of it
             message(b"Received", b"from relay.example.test by mx " * 70000)]
    # and a canary of this vantage whose other headers are 64 KB: still ours
    cid = new_canary_id("local", "alice-to-bob", 0, key=TEST_KEY,
                        recipient=mail_stack.user("bob").address)
    msg = build_message(cid, "alice@example.test", "bob@example.test", datetime.now(UTC),
                        {"X-Padding": "p " * 32768})
    blobs.append(msg.as_bytes())
    result = asyncio.run(_watch_through(mail_stack, tmp_path, blobs, also_expect=cid.id))
    print(f"64 KB headers: lag {result['lag']:.3f} s")
    assert result["error"] is None and result["reconnects"] == 0, result
    assert result["lag"] < 1.0, result
    assert result["also"].canary == cid


def test_a_message_the_server_cannot_fetch_is_passed_over_and_canaries_still_match(
        mail_stack: MailStack, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Dovecot 2.3 panics (istream-header-filter.c: assertion failed) on an 18 MB header
    line and drops the connection at every fetch of it: without passing it over, the
    watcher would reconnect for ever at that cursor and every later canary end lost."""
    poison = (b"From: x@example.test\r\nTo: bob@example.test\r\nReceived: "
              + b"from relay.example.test by mx " * 600000 + b"\r\nSubject: poison\r\n\r\nx\r\n")
    caplog.set_level(logging.WARNING, logger="prober")
    result = asyncio.run(_watch_through(mail_stack, tmp_path, [poison]))
    passed = [r.getMessage() for r in caplog.records if "passed over uid=" in r.getMessage()]
    print(passed, result["reconnects"])
    assert len(passed) == 1, caplog.text
    assert result["arrival"].uid > int(passed[0].split("uid=")[1].split(":")[0])
