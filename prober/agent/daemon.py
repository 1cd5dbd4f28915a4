"""`prober run`: the daemon on a probe host.

Every tick (a minute by default) the agent runs `plan(config)`: each mailbox gets a fresh
SMTP and IMAP login, each route sends a canary, each webmail target is loaded at its own
cadence. One long-lived watcher per recipient mailbox reports arrivals, which the ledger
matches to canaries in flight, across restarts. Every point goes to the spool first; the
writer drains the spool into InfluxDB when one is configured.

Every task the agent spawns runs inside `_guarded`: a failure is logged with what it was
doing and counted (`task_errors` on the heartbeat); it never ends silently and never
takes the agent down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from prober import __version__
from prober.agent.clock import SYSTEM, Clock, time_ns
from prober.agent.ledger import Entry, Ledger, LedgerError
from prober.agent.prometheus import Exposition, open_exposition
from prober.agent.scheduler import Tick, TickClock, route_offset, stable_fraction, vantage_offset
from prober.agent.sdnotify import Notifier
from prober.agent.spool import (
    Spool,
    SpoolError,
    SpoolFull,
    SpoolVanished,
    quarantine_if_corrupt,
)
from prober.config import Config, ConfigError, load
from prober.measurement import Measurement
from prober.probes.canary import CanaryId
from prober.probes.canary_key import load_canary_key
from prober.probes.imap import Arrival, MailboxWatcher
from prober.probes.plan import AccessCheck, Periodic, Plan, WebmailLoad, context, plan
from prober.probes.roundtrip import CanaryTarget, fields_at_arrival, roundtrip_point, send_canary
from prober.probes.tls import small_tls_read_buffers
from prober.schema import (
    ARRIVED,
    FIELD_CANARY,
    FIELD_ERROR,
    FIELD_OUTCOME,
    FIELD_PEER_IP,
    FIELD_SEQ,
    HEARTBEAT,
    IN_FLIGHT,
    TAG_DIRECTION,
    TAG_OUTCOME,
    TAG_PROTOCOL,
    TAG_VANTAGE,
    AccessOutcome,
    DelaySource,
    Direction,
    RoundtripOutcome,
    WebmailOutcome,
)

if TYPE_CHECKING:
    from prober.agent.influx import InfluxWriter

log = logging.getLogger("prober.agent")
SPOOL_WARN_DEPTH = 10_000
KEEP_RESOLVED_S = 7 * 86400.0  # a canary's ledger entry outlives its verdict this long
AGENT_STOPPED = "agent stopped during the SMTP session"  # `error` of a recovered canary
EXIT_STATE_VANISHED = 1  # as for a spool that cannot be used: the files are not there


class Agent:
    def __init__(self, config_path: str, config: Config, max_ticks: int | None = None,
                 notifier: Notifier | None = None, clock: Clock | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.max_ticks = max_ticks
        self.notifier = notifier or Notifier()
        self.clock = clock or SYSTEM
        self.started = self.clock.monotonic()
        self.stop = asyncio.Event()
        quarantine_if_corrupt(config.spool.path)  # SQLite's own check, once at start
        self.spool = Spool(config.spool.path, config.spool)
        self.exit_code = 0
        self.ledger = Ledger(config.spool.path, self.spool)
        self.canary_key = load_canary_key(config)
        self._forged_before = 0  # counted by watchers since retired (a reload)
        self.writer: InfluxWriter | None = None
        self._writer_stop = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self.plan: Plan = plan(config, key=self.canary_key)
        self.watchers: dict[str, MailboxWatcher] = {}
        self._watch_stop = asyncio.Event()
        self._watch_tasks: list[asyncio.Task[None]] = []
        self._retired_watchers: list[asyncio.Task[None]] = []
        self._sem = asyncio.Semaphore(config.agent.concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sending: set[asyncio.Task[Any]] = set()
        self._early: dict[str, tuple[Arrival, float]] = {}
        # the SMTP 250 on the monotonic clock, for canaries accepted in this run
        self._accepted_mono: dict[str, float] = {}
        # arrivals a full disk kept from the ledger, with when they were seen
        self._unrecorded: dict[str, tuple[Arrival, float]] = {}
        self._reload = False
        self._webmail_due: dict[str, float] = {}
        self._periodic_due: dict[str, float] = {}
        self._spool_warned = False
        self.ticker: TickClock | None = None
        self.ticks = 0
        self.task_errors = 0
        # [prometheus]: a live window on the newest points, fed after the spool took them
        self.exposition = (Exposition(config.prometheus.stale_after_s)
                           if config.prometheus else None)
        self._exposition_server: asyncio.Server | None = None

    # -- life cycle ---------------------------------------------------------------------
    async def run(self) -> int:
        small_tls_read_buffers()  # the resident memory of every TLS connection it holds
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        self._start_writer()
        if self.exposition is not None and self.config.prometheus is not None:
            self._exposition_server = await open_exposition(
                self.exposition, self.config.prometheus.host, self.config.prometheus.port)
        watchdog = (asyncio.create_task(self._watchdog())
                    if self.notifier.watchdog_interval_s else None)
        try:
            self._recover_unsent()
            self._start_watchers()
            cfg = self.config
            self.ticker = TickClock(cfg.agent.tick_s,
                                    vantage_offset(cfg.vantage.name, cfg.agent.tick_s),
                                    clock=self.clock)
            log.info("started vantage=%s routes=%d mailboxes=%d tick_s=%g spool=%s influx=%s",
                     cfg.vantage.name, len(cfg.routes), len(cfg.mailboxes), cfg.agent.tick_s,
                     cfg.spool.path, cfg.influx.url if cfg.influx else "none")
            self.notifier.ready(self._status())
            while not self.stop.is_set():
                tick = await self.ticker.next(self.stop)
                if tick is None:
                    break
                if self._reload:
                    await self._apply_reload()
                if self._state_vanished():
                    break
                self._on_tick(tick)
                self.ticks += 1
                if self.max_ticks is not None and self.ticks >= self.max_ticks:
                    await self._finish_ticks()
                    break
        finally:
            self.notifier.stopping("stopping: finishing submissions in progress")
            if watchdog is not None:
                watchdog.cancel()
            await self._shutdown()
            await self._stop_writer(final_drain=True)
            if self._exposition_server is not None:
                self._exposition_server.close()
            self.ledger.close()
            self.spool.close()
            log.info("stopped after %d ticks", self.ticks)
        return self.exit_code

    def _state_error(self, what: str, exc: SpoolError | LedgerError) -> None:
        _log_state_error(what, exc)
        if isinstance(exc, SpoolVanished):
            self._state_vanished()

    def _state_vanished(self) -> bool:
        """The spool deleted or replaced under us (the state directory removed): SQLite
        would go on writing into the deleted file and every point would be lost. One line
        and out; started again (systemd's Restart=), the agent makes a fresh state."""
        if not self.spool.vanished():
            return False
        if self.exit_code == EXIT_STATE_VANISHED:
            return True  # said once
        log.error("spool %s was deleted or replaced while the agent ran (state directory "
                  "removed?): stopping, so that no point is written into a deleted file; "
                  "a restart starts a fresh spool", self.config.spool.path)
        self.exit_code = EXIT_STATE_VANISHED
        self.request_stop("state files vanished")
        return True

    def request_stop(self, why: str = "request") -> None:
        if not self.stop.is_set():
            log.info("stop requested (%s)", why)
            self.stop.set()

    def _request_reload(self) -> None:
        log.info("reload requested (SIGHUP)")
        self._reload = True
        self.notifier.reloading()

    async def _finish_ticks(self) -> None:
        """After the last of `max_ticks`: let the last canaries arrive (bounded)."""
        deadline = self.clock.monotonic() + max(self.config.agent.stop_grace_s,
                                                self.config.agent.tick_s)
        while self.clock.monotonic() < deadline and not self.stop.is_set():
            if not self._tasks and self.ledger.pending_count() == 0:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.1)

    async def _shutdown(self) -> None:
        # Submissions in progress finish (bounded); canaries not yet started are dropped;
        # everything in flight stays in the ledger for the next start.
        for task in self._tasks - self._sending:
            task.cancel()
        if self._sending:
            await asyncio.wait(self._sending, timeout=self.config.agent.stop_grace_s)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._stop_watchers()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 on its own timer (systemd's WatchdogSec need not follow tick_s), but
        only while the tick loop is alive: it looks at the clock at least every second
        (MAX_WAIT_S), so a loop that has not looked for a while is stuck."""
        interval = self.notifier.watchdog_interval_s
        assert interval is not None
        while True:
            ticker = self.ticker
            stuck_for = (self.clock.monotonic() - ticker.looked_mono) if ticker else 0.0
            if stuck_for < max(interval, 10.0):
                self.notifier.watchdog()
            await asyncio.sleep(interval)

    # -- the InfluxDB writer ------------------------------------------------------------------
    def _start_writer(self) -> None:
        if self.config.influx is None:
            self.writer = None
            return
        from prober.agent.influx import InfluxWriter  # httpx: only with [influx]

        self.writer = InfluxWriter(self.config.influx, self.spool)
        self._writer_stop = asyncio.Event()
        self._writer_task = self._spawn(self.writer.run(self._writer_stop),
                                        "the InfluxDB writer", track=False)

    async def _stop_writer(self, final_drain: bool = False) -> None:
        writer, task = self.writer, self._writer_task
        self._writer_stop.set()
        if writer is None or task is None:
            return
        await task
        if final_drain and self.config.influx is not None:
            # the last points (fates settled during the stop) get one bounded try;
            # whatever InfluxDB does not take stays in the spool for the next start
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(writer.drain_once, 10),
                                       self.config.influx.timeout_s + 5)
        writer.close()
        self.writer = None
        self._writer_task = None

    # -- configuration reload ---------------------------------------------------------------
    async def _apply_reload(self) -> None:
        self._reload = False
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            # RELOADING=1 was sent: systemd waits for READY=1 to end the reload
            self.notifier.ready(f"reload refused: {exc}")
            return
        if new.spool != self.config.spool:
            log.warning("reload: [spool] changed; takes effect at the next start (the "
                        "spool and the canary ledger stay open on %s)", self.config.spool.path)
            new = _keep_spool(new, self.config)
        try:
            key = load_canary_key(new)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.notifier.ready(f"reload refused: {exc}")
            return
        self.canary_key = key
        influx_changed = new.influx != self.config.influx
        # New watchers for the new mailboxes; the cursors in the ledger carry over.
        self._forged_before += sum(w.forged for w in self.watchers.values())
        self._retired_watchers += self._watch_tasks
        self._watch_stop.set()
        self._watch_stop = asyncio.Event()
        if new.agent.concurrency != self.config.agent.concurrency:
            self._sem = asyncio.Semaphore(new.agent.concurrency)
        if new.agent.tick_s != self.config.agent.tick_s:
            log.warning("reload: [agent] tick_s changed; takes effect at the next start")
        if new.prometheus != self.config.prometheus:
            log.warning("reload: [prometheus] changed; takes effect at the next start")
        self.config = new
        self.plan = plan(new, key=self.canary_key)
        self._start_watchers()
        if influx_changed:
            # the writer in flight finishes its batch; the new one starts from the spool
            await self._stop_writer()
            self._start_writer()
            log.info("reload: [influx] now %s", new.influx.target if new.influx else "none")
        log.info("reloaded %s: routes=%d mailboxes=%d", self.config_path, len(new.routes),
                 len(new.mailboxes))
        self.notifier.ready(self._status())

    # -- watchers -----------------------------------------------------------------------------
    def _start_watchers(self) -> None:
        cfg = self.config
        self.watchers = {
            name: MailboxWatcher(cfg.mailboxes[name], cfg.timeouts, cfg.canary,
                                 cfg.vantage.name, self._arrived, self.ledger,
                                 key=self.canary_key)
            for name in self.plan.recipients}
        self._watch_tasks = [self._spawn(w.run(self._watch_stop), f"watcher mailbox={name}",
                                         track=False)
                             for name, w in self.watchers.items()]

    async def _stop_watchers(self) -> None:
        self._watch_stop.set()
        tasks = self._watch_tasks + self._retired_watchers
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.timeouts.command_s + 5)

    # -- one tick -------------------------------------------------------------------------------
    def _on_tick(self, tick: Tick) -> None:
        cfg = self.config
        spread = cfg.agent.tick_s * 0.4
        if tick.number % cfg.agent.access_every_ticks == 0:
            for check in self.plan.access:
                at = tick.scheduled + stable_fraction("mailbox:" + check.mailbox.name) * spread
                self._spawn(self._access(check, tick.mono_at(at)),
                            f"{check.protocol} access mailbox={check.mailbox.name}")
        for target in self.plan.canaries:
            at = tick.scheduled + route_offset(target.route.name, cfg.agent.tick_s)
            self._spawn(self._canary(target, tick.mono_at(at)),
                        f"canary route={target.route.name}")
        self._webmail(tick)
        self._periodic(tick)
        self._guard(self._expire, "canary expiry")
        self._guard(self._respool, "spooling refused canary points again")
        self._guard(self._record_unrecorded, "recording arrivals kept in memory")
        self._guard(lambda: self._heartbeat(tick), "heartbeat")
        self.notifier.status(self._status())

    def _spawn(self, coro: Coroutine[Any, Any, Any], what: str,
               track: bool = True) -> asyncio.Task[Any]:
        task = asyncio.create_task(self._guarded(coro, what))
        if track:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except (SpoolError, LedgerError) as exc:
            self.task_errors += 1
            self._state_error(what, exc)
        except Exception:
            self.task_errors += 1
            log.exception("%s failed", what)
        return None

    def _guard(self, fn: Any, what: str) -> None:
        """The synchronous parts of a tick: one failing does not skip the others."""
        try:
            fn()
        except (SpoolError, LedgerError) as exc:
            self.task_errors += 1
            self._state_error(what, exc)
        except Exception:
            self.task_errors += 1
            log.exception("%s failed", what)

    async def _at(self, when_mono: float) -> bool:
        """Sleep until monotonic `when_mono`; False when a stop came first."""
        delay = when_mono - self.clock.monotonic()
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        return not self.stop.is_set()

    async def _access(self, check: AccessCheck, when_mono: float) -> None:
        if not await self._at(when_mono):
            return
        async with self._slot():
            points = await check.probe(context(self.config), check.mailbox)
        for point in points:
            if point.tags[TAG_OUTCOME] != AccessOutcome.OK:
                log.warning("probe failed kind=access protocol=%s mailbox=%s address=%s "
                            "error=%r", point.tags[TAG_PROTOCOL], check.mailbox.address,
                            point.fields.get(FIELD_PEER_IP, "-"), point.fields.get(FIELD_ERROR))
        self._append(points)

    async def _canary(self, target: CanaryTarget, when_mono: float) -> None:
        if not await self._at(when_mono):
            return
        cfg = self.config
        task = asyncio.current_task()
        assert task is not None
        vantage = cfg.vantage.name

        def enter(cid: CanaryId) -> None:
            self.ledger.enter(cid.id, target.route.name, target.route.recipient, cid.seq,
                              target.tags(vantage))
            watcher = self.watchers.get(target.route.recipient)
            if watcher is not None:  # a fast poll until it arrives, if [canary] fast_poll_s
                watcher.hurry(cid.id)

        async with self._slot():
            self._sending.add(task)
            try:
                sent = await send_canary(context(cfg), target, self.ledger.reserve_seq(),
                                         enter, key=self.canary_key)
            finally:
                self._sending.discard(task)
        if sent.submission.accepted_mono is not None:
            self._accepted_mono[sent.canary.id] = sent.submission.accepted_mono
        point = roundtrip_point(vantage, sent, sent.initial_outcome)
        self._record(point)
        if not sent.submission.ok:
            log.warning("probe failed kind=canary route=%s outcome=%s error=%r",
                        target.route.name, sent.initial_outcome, str(sent.submission.error))
        early = self._early.pop(sent.canary.id, None)
        entry = self.ledger.get(sent.canary.id) if early is not None else None
        if early is not None and entry is not None and entry.fields:
            self._settle(entry, *early)

    def _slot(self) -> asyncio.Semaphore:
        """The concurrency cap: SMTP/IMAP sessions and page loads at once."""
        return self._sem

    # -- fates -----------------------------------------------------------------------------------
    def _arrived(self, arrival: Arrival) -> bool:
        """The watchers' callback: an arrival that cannot be recorded now (a full disk) is
        kept in memory, with when it was seen, and recorded at a later tick; its message
        stays in the mailbox, and the watcher goes on (an exception would end its session,
        again and again)."""
        seen_mono = self.clock.monotonic()
        try:
            return self._on_arrival(arrival, seen_mono)
        except (SpoolError, LedgerError) as exc:
            self._unrecorded[arrival.canary.id] = (arrival, seen_mono)
            self._state_error(f"canary id={arrival.canary.id} arrived; recording it", exc)
            return False

    def _record_unrecorded(self) -> None:
        for cid, (arrival, seen_mono) in list(self._unrecorded.items()):
            self._on_arrival(arrival, seen_mono)  # an error leaves it for the next tick
            del self._unrecorded[cid]

    def _on_arrival(self, arrival: Arrival, seen_mono: float | None = None) -> bool:
        """Called by a watcher for every canary of this vantage; True: ours, remove it."""
        entry = self.ledger.get(arrival.canary.id)
        if entry is None:
            return False
        if not arrival.authenticated and entry.created_ns >= self.canary_key.since_ns:
            return False  # unsigned, but this canary was signed: not its arrival
        if seen_mono is None:
            seen_mono = self.clock.monotonic()
        if not entry.fields:
            # arrived before its send returned (a fast poll): settle once the send is recorded
            self._early[entry.id] = (arrival, seen_mono)
            return True
        if entry.outcome in ARRIVED:
            return True  # seen before (a copy, or a rescan): counted once
        self._settle(entry, arrival, seen_mono)
        return True

    def _settle(self, entry: Entry, arrival: Arrival, seen_mono: float) -> None:
        route = next((r for r in self.config.routes if r.name == entry.route), None)
        direction = route.direction if route else entry.tags.get(TAG_DIRECTION,
                                                                  Direction.INTERNAL)
        domains = route.provider_domains if route else ()
        accepted = entry.time_ns or entry.created_ns
        delay, source = self._delay(entry, arrival, seen_mono)
        fields = fields_at_arrival(arrival, accepted, direction, domains, delay, source)
        outcome = (RoundtripOutcome.LATE if delay > self.config.canary.late_after_s
                   else RoundtripOutcome.DELIVERED)
        self._record(entry.point(outcome=outcome, **fields))
        self._accepted_mono.pop(entry.id, None)
        if entry.outcome not in IN_FLIGHT:
            log.warning("canary route=%s id=%s arrived after its %s verdict: corrected to "
                        "%s (%.0f s, %s)", entry.route, entry.id, entry.outcome, outcome,
                        delay, source)
        elif outcome == RoundtripOutcome.LATE:
            log.warning("canary route=%s id=%s late: %.0f s (%s)", entry.route, entry.id,
                        delay, source)

    def _delay(self, entry: Entry, arrival: Arrival,
               seen_mono: float) -> tuple[float, DelaySource]:
        """SMTP 250 -> visible in the mailbox, and which clock says so.

        Our detection time is the figure only when we were watching all along: the canary
        was accepted in this run (its 250 on our monotonic clock) and the recipient's
        watcher was connected since before that, on the folder it landed in. Otherwise
        (the agent was stopped, the watcher reconnecting, the junk folder's slower look)
        detection says when we looked, not when the provider delivered: the server's
        INTERNALDATE does (whole seconds, the server's clock; see README).
        """
        accepted_mono = self._accepted_mono.get(entry.id)
        watcher = self.watchers.get(entry.recipient)
        since = watcher.connected_since if watcher is not None else None
        watched = (watcher is not None
                   and arrival.folder == watcher.mailbox.imap.folder
                   and since is not None and accepted_mono is not None
                   and since <= accepted_mono)
        if watched and accepted_mono is not None:
            return max(0.0, seen_mono - accepted_mono), DelaySource.DETECT
        accepted_ns = entry.time_ns or entry.created_ns
        if arrival.internaldate_ns is not None:
            return (max(0.0, (arrival.internaldate_ns - accepted_ns) / 1e9),
                    DelaySource.INTERNALDATE)
        # a server that gives no INTERNALDATE: our detection on the wall clock, an upper bound
        return max(0.0, (arrival.detected_ns - accepted_ns) / 1e9), DelaySource.DETECT

    def _record(self, point: Measurement) -> None:
        """A canary's point: the ledger change and the spooled point in one transaction."""
        try:
            self.ledger.record(point)
        except SpoolFull:
            return  # counted and logged by the spool; kept in the ledger, spooled again later
        if self.exposition is not None:
            self.exposition.observe([point])
        if self.writer is not None:
            self.writer.notify()

    def _respool(self) -> None:
        """Points the spool refused (full disk): try again now that time has passed."""
        for entry in self.ledger.unspooled():
            try:
                self.ledger.record(entry.point())
            except SpoolFull:
                return

    def _expire(self) -> None:
        """Final verdicts for canaries not seen within lost_after_s, once we have looked.

        Age: on the monotonic clock for canaries accepted in this run (a wall-clock step
        neither ages nor rejuvenates them), else on the wall clock. A canary is judged only
        while its recipient's watcher is up (connected, its catch-up scan done): while it
        is down nobody has looked, and the canary stays in flight (not enough data).
        Verdict: `abandoned` when the agent stopped during its SMTP session (no 250 seen,
        our fault), `send_failed` when the provider's session broke off after DATA without
        a 250 and the message never came, else `lost`.
        """
        now_ns = time_ns(self.clock)
        now_mono = self.clock.monotonic()
        lost_after = self.config.canary.lost_after_s
        for entry in self.ledger.open_older_than(now_ns + int(1e18)):
            if not entry.fields:
                continue  # its send is still under way, or _recover_unsent gives it a point
            mono = self._accepted_mono.get(entry.id)
            age = (now_mono - mono if mono is not None
                   else (now_ns - (entry.time_ns or entry.created_ns)) / 1e9)
            if age <= lost_after:
                continue
            watcher = self.watchers.get(entry.recipient)
            if watcher is not None and not watcher.up:
                continue  # not looked at: judged once the watcher is back
            if entry.fields.get(FIELD_ERROR) == AGENT_STOPPED:
                outcome, why = RoundtripOutcome.ABANDONED, "the agent stopped during its send"
            elif entry.outcome == RoundtripOutcome.SEND_UNCERTAIN:
                outcome, why = RoundtripOutcome.SEND_FAILED, "its SMTP session broke off"
            else:
                outcome, why = RoundtripOutcome.LOST, "accepted"
            self._record(entry.point(outcome=outcome))
            self._accepted_mono.pop(entry.id, None)
            log.warning("canary route=%s id=%s %s: not seen in %.0f s (%s)", entry.route,
                        entry.id, outcome, lost_after, why)
        self.ledger.forget_resolved_before(now_ns - int(KEEP_RESOLVED_S * 1e9))

    def _recover_unsent(self) -> None:
        """Canaries entered but never recorded: the agent died during their SMTP session."""
        cfg = self.config
        for entry in self.ledger.unsent():
            tags = entry.tags
            if not tags:  # entered by an older version, which kept no tags at enter
                route = next((r for r in cfg.routes if r.name == entry.route), None)
                if route is None:
                    # no tags to write a point with, and none was ever written; close the
                    # entry so it is not in flight forever
                    self.ledger.forget(entry.id)
                    log.warning("canary route=%s id=%s: agent stopped during its SMTP "
                                "session and the route is no longer configured; forgotten",
                                entry.route, entry.id)
                    continue
                tags = CanaryTarget.of(cfg, route).tags(cfg.vantage.name)
            fields: dict[str, object] = {
                FIELD_CANARY: entry.id, FIELD_OUTCOME: RoundtripOutcome.SEND_UNCERTAIN,
                FIELD_ERROR: AGENT_STOPPED}
            if entry.seq is not None:
                fields[FIELD_SEQ] = entry.seq
            recovered = Entry(entry.id, entry.route, entry.recipient, entry.created_ns,
                              entry.created_ns, RoundtripOutcome.SEND_UNCERTAIN, tags, fields,
                              entry.seq)
            self._record(recovered.point())

    # -- webmail -------------------------------------------------------------------------------
    def _webmail(self, tick: Tick) -> None:
        for page in self.plan.webmail:
            name = f"{page.target.name}/{page.profile.name}"
            due = self._webmail_due.get(name, 0.0)
            if tick.started_mono < due:
                continue
            self._webmail_due[name] = tick.started_mono + page.target.interval_s
            self._spawn(self._webmail_load(page), f"webmail load {name}")

    async def _webmail_load(self, load: WebmailLoad) -> None:
        from prober.probes import webmail  # httpx/h2 only when a target is configured

        async with self._slot():
            points = await webmail.probe(context(self.config), load)
        for p in points:
            if p.tags.get(TAG_OUTCOME) != WebmailOutcome.OK:
                log.warning("probe failed kind=webmail target=%s profile=%s outcome=%s "
                            "error=%r", load.target.name, load.profile.name,
                            p.tags.get(TAG_OUTCOME), p.fields.get(FIELD_ERROR))
        self._append(points)

    # -- §4/§5 probes: filter tests, blocklist and abuse@ checks --------------------------------
    def _periodic(self, tick: Tick) -> None:
        for job in self.plan.periodic:
            if tick.started_mono < self._periodic_due.get(job.name, 0.0):
                continue
            self._periodic_due[job.name] = tick.started_mono + job.interval_s
            self._spawn(self._run_periodic(job), job.name)

    async def _run_periodic(self, job: Periodic) -> None:
        if job.kind == "filter":
            # a filter test waits minutes for what the filter does: holding a slot that
            # long would delay the canaries and logins that need it
            points = await job.probe(context(self.config), job.target)
        else:
            async with self._slot():
                points = await job.probe(context(self.config), job.target)
        for p in points:
            bad = (p.fields.get("as_expected") is False or p.fields.get(FIELD_ERROR)
                   or p.fields.get("listed") is True)
            if bad:
                log.warning("probe kind=%s name=%s %s outcome=%s error=%r", job.kind, job.name,
                            " ".join(f"{k}={v}" for k, v in sorted(p.tags.items())
                                     if k != "vantage"),
                            p.fields.get(FIELD_OUTCOME, p.tags.get(TAG_OUTCOME)),
                            p.fields.get(FIELD_ERROR))
        self._append(points)

    # -- heartbeat and delivery ------------------------------------------------------------------
    def _heartbeat(self, tick: Tick) -> None:
        depth = self.spool.depth()
        oldest = self.spool.oldest_age_s()
        up = sum(1 for w in self.watchers.values() if w.up)
        fields: dict[str, object] = {
            "version": __version__,
            "uptime_s": self.clock.monotonic() - self.started,
            "missed_ticks": self.ticker.missed if self.ticker else 0,
            "clock_steps": self.ticker.steps if self.ticker else 0,
            "spool_depth": depth,
            "spool_oldest_s": oldest,
            "spool_refused": self.spool.refused_count,
            "spool_invalid": self.spool.invalid_count,
            "pending_canaries": self.ledger.pending_count(),
            "watchers_up": up,
            "watchers": len(self.watchers),
            "forged_canaries": self._forged_before + sum(w.forged
                                                         for w in self.watchers.values()),
            "canaries_swept": sum(w.swept for w in self.watchers.values()),
            "task_errors": self.task_errors,
            "watchdog_s": self.notifier.watchdog_interval_s,
        }
        if self.writer is not None:
            st = self.writer.status
            fields.update(influx_state=st.state, influx_delivered=st.delivered_total,
                          influx_dead=st.dead_total, influx_failed=st.attempts_failed)
        self._append([Measurement(HEARTBEAT, {TAG_VANTAGE: self.config.vantage.name},
                                  fields, int(tick.scheduled * 1e9))])  # type: ignore[arg-type]
        if self.config.influx is not None:
            if depth > SPOOL_WARN_DEPTH and not self._spool_warned:
                log.warning("spool holds %d points (oldest %.0f s): InfluxDB is not keeping "
                            "up or is unreachable", depth, oldest or 0)
                self._spool_warned = True
            elif depth <= SPOOL_WARN_DEPTH // 2 and self._spool_warned:
                log.info("spool back to %d points", depth)
                self._spool_warned = False

    def _append(self, points: list[Measurement]) -> None:
        try:
            self.spool.append(points)
        except SpoolFull:
            return  # counted (spool_refused) and logged by the spool; the agent goes on
        if self.exposition is not None:
            self.exposition.observe(points)
        if self.writer is not None:
            self.writer.notify()

    def _status(self) -> str:
        up = sum(1 for w in self.watchers.values() if w.up)
        return (f"{self.ticks} ticks, {len(self.config.routes)} routes, watchers {up}/"
                f"{len(self.watchers)} up, {self.ledger.pending_count()} canaries in flight, "
                f"spool {self.spool.depth()}")


def _log_state_error(what: str, exc: SpoolError | LedgerError) -> None:
    """A refused point or a full disk is a state the spool logs once when it starts and
    once when it ends; each task that meets it is counted, not logged (190 lines a tick)."""
    if isinstance(exc, (SpoolFull, SpoolVanished)) or getattr(exc, "disk_full", False):
        log.debug("%s failed: %s", what, exc)
    else:
        log.error("%s failed: %s", what, exc)


def _keep_spool(new: Config, old: Config) -> Config:
    import dataclasses

    return dataclasses.replace(new, spool=old.spool)
