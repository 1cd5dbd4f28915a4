"""The mailbox watcher: one long-lived IMAP connection per recipient mailbox.

New messages are found by UID (never by SEARCH: unreliable on custom headers, see
docs/field-notes.md), authenticated and matched locally, reported, and our own canaries removed by
UID. IDLE when the server has it, re-issued every `idle_renew_s`; polling with NOOP
otherwise; the junk folder polled at a lower rate; reconnects with backoff.

What may be removed is narrow on purpose: a canary of this vantage whose MAC verifies for
this mailbox, that is the original message (our Message-ID, no reply, forward or resend
marks) and that nobody flagged \\Deleted. Everything else that claims to be one of our
canaries is counted in `forged`, logged with its folder and UID, and left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prober.config.mail import CanarySettings, Mailbox, Timeouts
from prober.probes.canary import (
    CHECK,
    UNSIGNED,
    VERIFIED,
    CanaryId,
    CanaryKey,
    Verdict,
    authenticate,
    claim,
)
from prober.probes.errors import ProbeError, classify
from prober.probes.imap_session import FETCH_BATCH, ImapSession

log = logging.getLogger("prober.watcher")
SWEEP_EVERY_S = 3600.0
SWEEP = "sweep"  # Arrival.detect of a leftover the sweep found: detected late, not as it came
POISON_AFTER = 2  # failed header fetches at one cursor before going one message at a time
SWEEP_BATCH = 500  # UIDs per FETCH and per removal (aioimaplib fails past ~3,000 at once)
# candidates looked at per sweep, newest first: bounded work, and a mailbox full of
# look-alikes (which are never removed) cannot hide this vantage's own leftovers for ever
SWEEP_MAX = 5000
FAST_POLL_FOR_S = 120.0  # a fast poll ends this long after the last expect() at the latest
FULL_SCAN_EVERY_S = 1.0  # while fast polling: a UID FETCH even without an announced change


@dataclass(frozen=True)
class Arrival:
    canary: CanaryId
    mailbox: str
    folder: str
    uid: int
    internaldate_ns: int | None
    detected_ns: int
    detect: str  # "idle" (a push woke us), "poll", or SWEEP
    headers: bytes
    # False: an unsigned message, matched by id only; it counts solely for a canary sent
    # before this vantage signed its canaries (the receiver checks that: CanaryKey.since_ns)
    authenticated: bool = True


class CursorStore(Protocol):
    """Where the last UID seen per mailbox and folder is kept (the daemon keeps it on disk)."""

    def get_cursor(self, mailbox: str, folder: str) -> tuple[int, int] | None: ...

    def set_cursor(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None: ...


class MemoryCursors:
    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[int, int]] = {}

    def get_cursor(self, mailbox: str, folder: str) -> tuple[int, int] | None:
        return self._data.get((mailbox, folder))

    def set_cursor(self, mailbox: str, folder: str, uidvalidity: int, last_uid: int) -> None:
        self._data[(mailbox, folder)] = (uidvalidity, last_uid)


class MailboxWatcher:
    def __init__(self, mailbox: Mailbox, timeouts: Timeouts, settings: CanarySettings,
                 vantage: str, on_arrival: Callable[[Arrival], bool] | None = None,
                 cursors: CursorStore | None = None, *, key: CanaryKey,
                 check_leftovers_after_s: float | None = None) -> None:
        self.mailbox = mailbox
        self.timeouts = timeouts
        self.settings = settings
        self.vantage = vantage
        self.key = key
        # `prober check`: its own canaries from earlier checks, once older than this, are
        # leftovers too (swept at connect); the daemon's canaries are never touched by it
        self.check_leftovers_after_s = check_leftovers_after_s
        self.on_arrival = on_arrival
        self.cursors: CursorStore = cursors or MemoryCursors()
        self.up = False
        # monotonic start of the current session (None: not connected); see _session
        self.connected_since: float | None = None
        self.last_error: ProbeError | None = None
        self.reconnects = 0
        self._expected: dict[str, asyncio.Future[Arrival]] = {}
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._junk_ok = mailbox.imap.junk_folder is not None
        self._next_sweep = 0.0  # monotonic; the first session sweeps at once
        # canaries awaited with a fast poll: id -> monotonic end of their fast poll
        self._hurry: dict[str, float] = {}
        self.swept = 0
        self._stuck: tuple[tuple[str, int] | None, int] = (None, 0)  # (folder, cursor), fails
        self.sweeps = 0  # sweeps completed (a test or a caller can wait for the first)
        self._sweeper: asyncio.Task[None] | None = None  # the daemon's sweep, apart
        self.swept_canaries: list[Arrival] = []  # what the sweeps removed, for the caller
        self.forged = 0  # messages claiming to be our canaries that are not (never removed)

    # -- what callers use -------------------------------------------------------------------
    def expect(self, canary_id: str,
               fast_for_s: float = FAST_POLL_FOR_S) -> asyncio.Future[Arrival]:
        """A future for this canary's arrival; with `fast_poll_s` set, a fast poll too."""
        fut = self._expected.get(canary_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._expected[canary_id] = fut
        self.hurry(canary_id, fast_for_s)
        return fut

    def hurry(self, canary_id: str, fast_for_s: float = FAST_POLL_FOR_S) -> None:
        """With `fast_poll_s` set, poll at that interval until this canary arrives, for at
        most `fast_for_s` (a lost canary does not keep the poll going)."""
        if self.settings.fast_poll_s > 0:
            self._hurry[canary_id] = time.monotonic() + fast_for_s
            self._wake.set()  # leave IDLE now, not at its next renewal

    def forget(self, canary_id: str) -> None:
        self._expected.pop(canary_id, None)
        self._hurry.pop(canary_id, None)

    def _fast(self) -> bool:
        if self.settings.fast_poll_s <= 0 or not self._hurry:
            return False
        now = time.monotonic()
        for canary_id, until in list(self._hurry.items()):
            if until <= now:
                del self._hurry[canary_id]
        return bool(self._hurry)

    async def wait_ready(self, timeout: float) -> bool:
        """True once the first SELECT set the baseline; False on timeout."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        return self._ready.is_set()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set, reconnecting with exponential backoff."""
        backoff = 1.0
        stopper = asyncio.ensure_future(self._wake_on(stop))
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    backoff = 1.0
                except ProbeError as exc:
                    was_up = self.up
                    self.up = False
                    self.last_error = exc
                    self._ready.set()  # "ready" also means "tried": callers see last_error
                    if was_up:
                        log.warning("watcher mailbox=%s lost: %s", self.mailbox.name, exc)
                    else:
                        log.warning("watcher mailbox=%s cannot connect: %s",
                                    self.mailbox.name, exc)
                    self.reconnects += 1
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    backoff = min(backoff * 2, 60.0)
        finally:
            stopper.cancel()
            self.up = False
            await self._end_sweep()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    # -- one connection's life ----------------------------------------------------------------
    async def _session(self, stop: asyncio.Event) -> None:
        imap = self.mailbox.imap
        sess = ImapSession(imap.endpoint, self.timeouts)
        try:
            await sess.connect()
            await sess.authenticate(self.mailbox)
            # from here on, mail delivered to the folder is seen promptly (the first scan,
            # then IDLE or polls); what came before is found late: an arrival's delay is
            # measured by our detection only if its canary was accepted after this
            self.connected_since = time.monotonic()
            await self._select(sess, imap.folder)
            await self._scan(sess, imap.folder, "poll")
            if self.check_leftovers_after_s is not None and (
                    time.monotonic() >= self._next_sweep):
                # `prober check` sweeps before it is ready: its canaries are sent after, so
                # their detection never waits behind its own sweep (a big mailbox's SEARCH)
                await self._sweep_all(sess)
                self._next_sweep = time.monotonic() + SWEEP_EVERY_S
            next_junk = time.monotonic()
            if self._junk_ok:
                # the junk folder's first look (its baseline) before "ready", so a canary
                # sent at once is not caught by the scan that follows it ("poll", not "idle")
                await self._check_junk(sess)
                next_junk = time.monotonic() + self.settings.junk_poll_s
            if self.reconnects:
                log.info("watcher mailbox=%s connected again", self.mailbox.name)
            self.up = True
            self.last_error = None
            self._ready.set()
            use_idle = imap.idle and "IDLE" in sess.capabilities
            next_full = 0.0
            while not stop.is_set():
                if time.monotonic() >= self._next_sweep:
                    self._next_sweep = time.monotonic() + SWEEP_EVERY_S
                    self._start_sweep()
                if self._junk_ok and time.monotonic() >= next_junk:
                    await self._check_junk(sess)
                    next_junk = time.monotonic() + self.settings.junk_poll_s
                until_junk = max(0.0, next_junk - time.monotonic()) if self._junk_ok else 1e9
                if self._fast():
                    # Dovecot tells IDLE clients of new mail 0.5 s after delivery (hard-coded,
                    # docs/field-notes.md), a NOOP sees it at once: while a canary is awaited, poll.
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(),
                                               min(self.settings.fast_poll_s, until_junk))
                    woken = self._wake.is_set()
                    self._wake.clear()
                    changed = await sess.noop()
                    if stop.is_set():
                        break
                    # A full look now and then too, in case an EXISTS went unannounced.
                    if changed or woken or time.monotonic() >= next_full:
                        await self._scan(sess, imap.folder, "poll")
                        next_full = time.monotonic() + FULL_SCAN_EVERY_S
                    continue
                if use_idle:
                    pushed = await sess.idle_wait(
                        min(self.settings.idle_renew_s, until_junk), wake=self._wake)
                    detect = "idle" if pushed else "poll"
                else:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(),
                                               min(self.settings.poll_s, until_junk))
                    await sess.noop()
                    detect = "poll"
                self._wake.clear()
                if stop.is_set():
                    break
                await self._scan(sess, imap.folder, detect)
        except ProbeError:
            raise
        except Exception as exc:
            raise classify(exc, "watch") from None
        finally:
            self.connected_since = None
            # `up` stays as it was: run() reads it to tell "lost" from "cannot connect"
            await sess.logout()

    async def _select(self, sess: ImapSession, folder: str) -> None:
        info = await sess.select(folder)
        cursor = self.cursors.get_cursor(self.mailbox.name, folder)
        if cursor is None or cursor[0] != info.uidvalidity:
            # No usable baseline: start at the current end. Mail delivered before is not
            # ours to wait for (a restart keeps its cursor on disk and catches up instead).
            self.cursors.set_cursor(self.mailbox.name, folder, info.uidvalidity,
                                    max(info.uidnext - 1, 0))

    async def _check_junk(self, sess: ImapSession) -> None:
        junk = self.mailbox.imap.junk_folder
        assert junk is not None
        try:
            await self._select(sess, junk)
        except ProbeError as exc:
            if exc.kind != "protocol":
                raise
            log.info("watcher mailbox=%s: no junk folder %r (%s); not polling it",
                     self.mailbox.name, junk, exc.detail)
            self._junk_ok = False
        else:
            await self._scan(sess, junk, "poll")
        await self._select(sess, self.mailbox.imap.folder)
        await self._scan(sess, self.mailbox.imap.folder, "poll")

    async def _scan(self, sess: ImapSession, folder: str, detect: str) -> None:
        """Everything above the cursor, in bounded batches; the cursor is saved after each,
        so a full mailbox is worked through and never re-read from the start."""
        while True:
            if not await self._scan_batch(sess, folder, detect):
                return

    async def _scan_batch(self, sess: ImapSession, folder: str, detect: str) -> bool:
        assert sess.selected is not None
        cursor = self.cursors.get_cursor(self.mailbox.name, folder)
        last = cursor[1] if cursor else 0
        failures = self._stuck[1] if self._stuck[0] == (folder, last) else 0
        # After POISON_AFTER failed fetches at one cursor, one message at a time; a message
        # whose headers the server fails to send POISON_AFTER times more is passed over, so
        # one poisonous message cannot stop every later canary from being seen.
        try:
            batch = await sess.fetch_after(last, 1 if failures >= POISON_AFTER else FETCH_BATCH)
        except ProbeError as exc:
            self._stuck = ((folder, last), failures + 1)
            if failures + 1 >= 2 * POISON_AFTER and sess.pending_uids[:1] > [last]:
                self._pass_over(sess, folder, sess.pending_uids[0], failures + 1, exc)
            raise
        messages = batch.messages
        now = time.time_ns()
        ours: list[int] = []
        for msg in messages:
            last = max(last, msg.uid)
            verdict = self._judge(msg.headers)
            if verdict is None:
                continue  # not a canary of this vantage (another vantage's, or a person's)
            if verdict.status not in (VERIFIED, UNSIGNED):
                self._not_ours(folder, msg.uid, verdict.why)
                continue
            arrival = Arrival(verdict.canary, self.mailbox.name, folder, msg.uid,
                              msg.internaldate_ns, now, detect, msg.headers,
                              authenticated=verdict.status == VERIFIED)
            known = self._dispatch(arrival)
            if not known and verdict.status == UNSIGNED:
                self._not_ours(folder, msg.uid, "it carries no MAC and is no canary from "
                               "before MACs in flight")
                continue
            # A verified canary nobody waits for is a leftover (a crash, a check run that
            # gave up): swept once old, never while another run may still want it.
            if self._removable(verdict, msg.flags) and (
                    known or self._leftover(verdict.canary, msg.internaldate_ns, now)):
                ours.append(msg.uid)
            elif known and verdict.status == VERIFIED and not verdict.original:
                log.info("watcher mailbox=%s folder=%s uid=%d: canary %s counted but left in "
                         "place: its Message-ID is not the one it was sent with",
                         self.mailbox.name, folder, msg.uid, verdict.canary.id)
        if ours:
            how = await sess.remove(ours, self.settings.cleanup,
                                    self.mailbox.imap.trash_folder)
            if how == "kept" and self.settings.cleanup != "keep":
                log.warning("watcher mailbox=%s: server has neither UIDPLUS nor MOVE; "
                            "canaries are left in place (never a plain EXPUNGE)",
                            self.mailbox.name)
        last = max(last, batch.last_uid)
        self.cursors.set_cursor(self.mailbox.name, folder, sess.selected.uidvalidity, last)
        return batch.more

    def _pass_over(self, sess: ImapSession, folder: str, uid: int, failures: int,
                   exc: ProbeError) -> None:
        assert sess.selected is not None
        log.warning("watcher mailbox=%s folder=%s: passed over uid=%d: the server failed %d "
                    "times to send its headers (%s); if it was a canary, it ends lost",
                    self.mailbox.name, folder, uid, failures, exc)
        self.cursors.set_cursor(self.mailbox.name, folder, sess.selected.uidvalidity, uid)
        self._stuck = (None, 0)

    def _judge(self, headers: bytes) -> Verdict | None:
        c = claim(headers)
        c = c.of_vantage(self.vantage) if c else None
        return authenticate(c, self.key, self.mailbox.address) if c else None

    @staticmethod
    def _removable(verdict: Verdict, flags: tuple[str, ...]) -> bool:
        # \Deleted already set: a person (or their client) decided; that is not ours to do
        return (verdict.status == VERIFIED and verdict.original
                and "\\Deleted" not in flags)

    def _leftover(self, cid: CanaryId, internaldate_ns: int | None, now_ns: int) -> bool:
        """Old enough to be swept: by the server's date and by the canary's own signed
        stamp, so neither a clock nor a forged date alone makes a canary look old."""
        if internaldate_ns is None or cid.stamp is None:
            return False
        age_s = min(now_ns - internaldate_ns, now_ns - cid.stamp * 1_000_000_000) / 1e9
        if age_s > self.settings.sweep_after_s:
            return True
        return (cid.driver == CHECK and self.check_leftovers_after_s is not None
                and age_s > self.check_leftovers_after_s)

    def _not_ours(self, folder: str, uid: int, why: str) -> None:
        self.forged += 1
        log.warning("watcher mailbox=%s folder=%s uid=%d: claims to be a canary of vantage "
                    "%s but %s: not a delivery, not counted, left in place",
                    self.mailbox.name, folder, uid, self.vantage, why)

    # -- the sweep, on a connection of its own ------------------------------------------------
    # The watching connection never leaves IDLE (or its polls) for the hourly sweep: a sweep
    # of a big mailbox takes seconds to minutes (SEARCH, header fetches, removal), and a
    # canary arriving meanwhile would be detected only after it, its delivery_s charged
    # with the sweep; worse, the EXISTS that announced it went by among the sweep's own
    # responses, so nothing woke the watcher until the next junk look or IDLE renewal.
    def _start_sweep(self) -> None:
        if self._sweeper is not None and not self._sweeper.done():
            return  # the last one is still at work: it is not started twice
        self._sweeper = asyncio.create_task(self._sweep_apart())

    async def _sweep_apart(self) -> None:
        sess = ImapSession(self.mailbox.imap.endpoint, self.timeouts)
        try:
            await sess.connect()
            await sess.authenticate(self.mailbox)
            await sess.select(self.mailbox.imap.folder)
            await self._sweep_all(sess, back=False)
        except Exception as exc:  # the watcher goes on; the next hour tries again
            failure = exc if isinstance(exc, ProbeError) else classify(exc, "sweep")
            log.warning("watcher mailbox=%s: sweep failed: %s; tried again in %.0f s",
                        self.mailbox.name, failure, SWEEP_EVERY_S)
        finally:
            await sess.logout()

    async def _end_sweep(self) -> None:
        """At stop: a sweep under way finishes its removal (a UID STORE \\Deleted left
        without its UID EXPUNGE would make those canaries unremovable), within bounds."""
        task, self._sweeper = self._sweeper, None
        if task is None or task.done():
            return
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 2 * self.timeouts.command_s)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _sweep_all(self, sess: ImapSession, back: bool = True) -> None:
        """Leftover canaries of this vantage older than sweep_after_s, in every folder we
        watch: the new-UID scan passes by a canary that arrived fresh and was never claimed
        (a `prober check` that stopped waiting, a canary from before a lost ledger)."""
        imap = self.mailbox.imap
        folders = [imap.folder] + ([imap.junk_folder] if self._junk_ok and imap.junk_folder
                                   else [])
        for folder in folders:
            if folder != imap.folder:
                try:
                    await sess.select(folder)
                except ProbeError as exc:
                    if exc.kind != "protocol":
                        raise
                    continue
            await self._sweep(sess)
        if back and sess.selected is not None and sess.selected.name != imap.folder:
            await self._select(sess, imap.folder)
        self.sweeps += 1

    async def _sweep(self, sess: ImapSession) -> None:
        now = time.time_ns()
        shortest = min(self.settings.sweep_after_s,
                       self.check_leftovers_after_s or self.settings.sweep_after_s)
        cutoff_ns = now - int(shortest * 1e9)
        before = datetime.fromtimestamp(cutoff_ns / 1e9, UTC) + timedelta(days=1)
        try:
            candidates = await sess.search_old_canaries(before)
        except ProbeError as exc:
            if exc.kind != "protocol":
                raise
            log.info("watcher mailbox=%s: sweep search refused (%s)", self.mailbox.name,
                     exc.detail)
            return
        assert sess.selected is not None
        if len(candidates) > SWEEP_MAX:
            log.info("watcher mailbox=%s: %d messages look like old canaries; this sweep "
                     "looks at the newest %d", self.mailbox.name, len(candidates), SWEEP_MAX)
        candidates = sorted(candidates, reverse=True)[:SWEEP_MAX]
        for start in range(0, len(candidates), SWEEP_BATCH):
            stale: list[Arrival] = []
            for m in await sess.fetch_uids(candidates[start:start + SWEEP_BATCH]):
                verdict = self._judge(m.headers)
                # MAC-less messages are never swept: nothing proves they are ours
                if (verdict is not None and self._removable(verdict, m.flags)
                        and self._leftover(verdict.canary, m.internaldate_ns, now)):
                    stale.append(Arrival(verdict.canary, self.mailbox.name,
                                         sess.selected.name, m.uid, m.internaldate_ns, now,
                                         SWEEP, m.headers))
            if not stale:
                continue
            how = await sess.remove([a.uid for a in stale], self.settings.cleanup,
                                    self.mailbox.imap.trash_folder)
            if how == "kept":
                return  # nothing can be removed here: no use looking further
            self.swept += len(stale)
            self.swept_canaries.extend(stale)
            log.info("watcher mailbox=%s: swept %d leftover canaries (%s)",
                     self.mailbox.name, len(stale), how)

    def _dispatch(self, arrival: Arrival) -> bool:
        known = False
        # a waiting caller (`prober check`) only ever sent signed canaries
        fut = self._expected.pop(arrival.canary.id, None) if arrival.authenticated else None
        if arrival.authenticated:
            self._hurry.pop(arrival.canary.id, None)
        if fut is not None and not fut.done():
            fut.set_result(arrival)
            known = True
        if self.on_arrival is not None:
            known = self.on_arrival(arrival) or known
        return known
