"""`prober run`: the daemon on a probe host.

Every tick (a minute by default) each route sends a canary and each mailbox gets a fresh
SMTP and IMAP login; one long-lived watcher per recipient mailbox reports arrivals, which
the ledger matches to canaries in flight, across restarts. Every point goes to the spool
first; the writer drains the spool into InfluxDB when one is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from typing import Any

from prober import __version__
from prober.agent.influx import InfluxWriter
from prober.agent.ledger import Entry, Ledger
from prober.agent.scheduler import Tick, TickClock, route_offset, stable_fraction, vantage_offset
from prober.agent.sdnotify import Notifier
from prober.agent.spool import Spool, SpoolError
from prober.config import Config, ConfigError, Route, load
from prober.measurement import Measurement
from prober.probes.access import imap_access, smtp_access
from prober.probes.canary import new_canary_id
from prober.probes.canary_key import load_canary_key
from prober.probes.imap import Arrival, MailboxWatcher
from prober.probes.roundtrip import fields_at_arrival, roundtrip_point, send_canary

log = logging.getLogger("prober.agent")
SPOOL_WARN_DEPTH = 10_000
KEEP_RESOLVED_S = 7 * 86400.0  # a canary's ledger entry outlives its verdict this long


class Agent:
    def __init__(self, config_path: str, config: Config, max_ticks: int | None = None,
                 notifier: Notifier | None = None) -> None:
        self.config_path = config_path
        self.config = config
        self.max_ticks = max_ticks
        self.notifier = notifier or Notifier()
        self.started = time.monotonic()
        self.stop = asyncio.Event()
        self.spool = Spool(config.spool.path, config.spool)
        self.ledger = Ledger(config.spool.path)
        self.canary_key = load_canary_key(config)
        self._forged_before = 0  # counted by watchers since retired (a reload)
        self.writer = InfluxWriter(config.influx, self.spool) if config.influx else None
        self.watchers: dict[str, MailboxWatcher] = {}
        self._watch_stop = asyncio.Event()
        self._watch_tasks: list[asyncio.Task[None]] = []
        self._retired_watchers: list[asyncio.Task[None]] = []
        self._sem = asyncio.Semaphore(config.agent.concurrency)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sending: set[asyncio.Task[Any]] = set()
        self._early: dict[str, Arrival] = {}
        self._reload = False
        self._webmail_due: dict[str, float] = {}
        self._spool_warned = False
        self.clock: TickClock | None = None
        self.ticks = 0

    # -- life cycle ---------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        writer_stop = asyncio.Event()
        writer_task = (asyncio.create_task(self.writer.run(writer_stop))
                       if self.writer else None)
        try:
            self._recover_unsent()
            self._start_watchers()
            cfg = self.config
            self.clock = TickClock(cfg.agent.tick_s,
                                   vantage_offset(cfg.vantage.name, cfg.agent.tick_s))
            log.info("started vantage=%s routes=%d mailboxes=%d tick_s=%g spool=%s influx=%s",
                     cfg.vantage.name, len(cfg.routes), len(cfg.mailboxes), cfg.agent.tick_s,
                     cfg.spool.path, cfg.influx.url if cfg.influx else "none")
            self.notifier.ready(self._status())
            while not self.stop.is_set():
                tick = await self.clock.next(self.stop)
                if tick is None:
                    break
                if self._reload:
                    self._apply_reload()
                self._on_tick(tick)
                self.ticks += 1
                if self.max_ticks is not None and self.ticks >= self.max_ticks:
                    await self._finish_ticks()
                    break
        finally:
            self.notifier.stopping("stopping: finishing submissions in progress")
            await self._shutdown()
            writer_stop.set()
            if writer_task is not None and self.writer is not None:
                await writer_task
                # the last points (fates settled during the stop) get one bounded try;
                # whatever InfluxDB does not take stays in the spool for the next start
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.to_thread(self.writer.drain_once, 10),
                                           self.config.influx.timeout_s + 5)
                self.writer.close()
            self.ledger.close()
            self.spool.close()
            log.info("stopped after %d ticks", self.ticks)
        return 0

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
        deadline = time.monotonic() + max(self.config.agent.stop_grace_s,
                                          self.config.agent.tick_s)
        while time.monotonic() < deadline and not self.stop.is_set():
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

    # -- configuration reload ---------------------------------------------------------------
    def _apply_reload(self) -> None:
        self._reload = False
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            # RELOADING=1 was sent: systemd waits for READY=1 to end the reload
            self.notifier.ready(f"reload refused: {exc}")
            return
        if new.spool.path != self.config.spool.path:
            log.warning("reload: spool.path changed; takes effect at the next start")
        try:
            key = load_canary_key(new)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.notifier.ready(f"reload refused: {exc}")
            return
        self.canary_key = key
        # New watchers for the new mailboxes; the cursors in the ledger carry over.
        self._forged_before += sum(w.forged for w in self.watchers.values())
        self._retired_watchers += self._watch_tasks
        self._watch_stop.set()
        self._watch_stop = asyncio.Event()
        if new.agent.concurrency != self.config.agent.concurrency:
            self._sem = asyncio.Semaphore(new.agent.concurrency)
        self.config = new
        self._start_watchers()
        log.info("reloaded %s: routes=%d mailboxes=%d", self.config_path, len(new.routes),
                 len(new.mailboxes))
        self.notifier.ready(self._status())

    # -- watchers -----------------------------------------------------------------------------
    def _start_watchers(self) -> None:
        cfg = self.config
        self.watchers = {
            name: MailboxWatcher(cfg.mailboxes[name], cfg.timeouts, cfg.canary,
                                 cfg.vantage.name, self._on_arrival, self.ledger,
                                 key=self.canary_key)
            for name in sorted({r.recipient for r in cfg.routes})}
        self._watch_tasks = [asyncio.create_task(w.run(self._watch_stop))
                             for w in self.watchers.values()]

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
            for mb in cfg.mailboxes.values():
                at = tick.scheduled + stable_fraction("mailbox:" + mb.name) * spread
                for probe in (smtp_access, imap_access):
                    self._spawn(self._access(probe, mb.name, at))
        for route in cfg.routes:
            at = tick.scheduled + route_offset(route.name, cfg.agent.tick_s)
            self._spawn(self._canary(route, at))
        self._webmail(tick)
        self._expire()
        self._heartbeat(tick)
        self.notifier.watchdog()
        self.notifier.status(self._status())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _at(self, when: float) -> bool:
        """Sleep until wall-clock `when`; False when a stop came first."""
        delay = when - time.time()
        if delay > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
        return not self.stop.is_set()

    async def _access(self, probe: Any, mailbox: str, when: float) -> None:
        if not await self._at(when):
            return
        mb = self.config.mailboxes.get(mailbox)
        if mb is None:
            return
        async with self._slot():
            points: list[Measurement] = await probe(self.config.vantage.name, mb,
                                                    self.config.timeouts)
        for point in points:
            if point.tags["outcome"] != "ok":
                log.warning("probe failed kind=access protocol=%s mailbox=%s address=%s "
                            "error=%r", point.tags["protocol"], mb.address,
                            point.fields.get("peer_ip", "-"), point.fields.get("error"))
        self._append(points)

    async def _canary(self, route: Route, when: float) -> None:
        if not await self._at(when):
            return
        cfg = self.config
        sender, recipient = cfg.mailboxes[route.sender], cfg.mailboxes[route.recipient]
        task = asyncio.current_task()
        assert task is not None
        async with self._slot():
            self._sending.add(task)
            try:
                cid = new_canary_id(cfg.vantage.name, route.name, self.ledger.next_seq(),
                                    key=self.canary_key, recipient=recipient.address)
                self.ledger.enter(cid.id, route.name, route.recipient)
                headers = dict(cfg.canary.headers + route.headers)
                sent = await send_canary(route, sender, recipient, cid, cfg.timeouts, headers)
            finally:
                self._sending.discard(task)
        point = roundtrip_point(cfg.vantage.name, sent, sent.initial_outcome)
        self.ledger.record(point)
        self._append([point])
        if not sent.submission.ok:
            log.warning("probe failed kind=canary route=%s outcome=%s error=%r", route.name,
                        sent.initial_outcome, str(sent.submission.error))
        early = self._early.pop(cid.id, None)
        if early is not None:
            self._on_arrival(early)

    def _slot(self) -> asyncio.Semaphore:
        """The concurrency cap: SMTP/IMAP sessions and page loads at once."""
        return self._sem

    # -- fates -----------------------------------------------------------------------------------
    def _on_arrival(self, arrival: Arrival) -> bool:
        """Called by a watcher for every canary of this vantage; True: ours, remove it."""
        entry = self.ledger.get(arrival.canary.id)
        if entry is None:
            return False
        if not arrival.authenticated and entry.created_ns >= self.canary_key.since_ns:
            return False  # unsigned, but this canary was signed: not its arrival
        if not entry.tags:
            # arrived before its send returned (a fast poll): settle once the send is recorded
            self._early[entry.id] = arrival
            return True
        if entry.outcome in ("delivered", "late"):
            return True  # seen before (a copy, or a rescan): counted once
        route = next((r for r in self.config.routes if r.name == entry.route), None)
        direction = route.direction if route else entry.tags.get("direction", "internal")
        domains = route.provider_domains if route else ()
        accepted = entry.time_ns or entry.created_ns
        fields = fields_at_arrival(arrival, accepted, direction, domains)
        delay = (arrival.detected_ns - accepted) / 1e9
        outcome = "late" if delay > self.config.canary.late_after_s else "delivered"
        point = entry.point(outcome=outcome, **fields)
        self.ledger.record(point)
        self._append([point])
        if entry.outcome == "lost":
            log.warning("canary route=%s id=%s arrived after its lost verdict: corrected to "
                        "late (%.0f s)", entry.route, entry.id, delay)
        elif outcome == "late":
            log.warning("canary route=%s id=%s late: %.0f s", entry.route, entry.id, delay)
        return True

    def _expire(self) -> None:
        now = time.time_ns()
        cutoff = now - int(self.config.canary.lost_after_s * 1e9)
        for entry in self.ledger.open_older_than(cutoff):
            if not entry.tags:
                continue  # _recover_unsent gives it a point first
            point = entry.point(outcome="lost")
            self.ledger.record(point)
            self._append([point])
            log.warning("canary route=%s id=%s lost: not seen in %.0f s", entry.route,
                        entry.id, self.config.canary.lost_after_s)
        self.ledger.forget_resolved_before(now - int(KEEP_RESOLVED_S * 1e9))

    def _recover_unsent(self) -> None:
        """Canaries entered but never recorded: the agent died during their SMTP session."""
        for entry in self.ledger.open_older_than(time.time_ns()):
            if entry.tags:
                continue
            route = next((r for r in self.config.routes if r.name == entry.route), None)
            if route is None:
                # its route is gone from the config: no tags to write a point with, and no
                # point was ever written; close the entry so it is not in flight forever
                self.ledger.abandon(entry.id)
                log.warning("canary route=%s id=%s: agent stopped during its SMTP session "
                            "and the route is no longer configured; forgotten", entry.route,
                            entry.id)
                continue
            cfg = self.config
            entry = Entry(entry.id, entry.route, entry.recipient, entry.created_ns,
                          entry.created_ns, "send_uncertain", {
                              "vantage": cfg.vantage.name, "route": route.name,
                              "sender": cfg.mailboxes[route.sender].address,
                              "recipient": cfg.mailboxes[route.recipient].address,
                              "direction": route.direction},
                          {"canary": entry.id, "outcome": "send_uncertain",
                           "error": "agent stopped during the SMTP session"})
            point = entry.point()
            self.ledger.record(point)
            self._append([point])

    # -- webmail -------------------------------------------------------------------------------
    def _webmail(self, tick: Tick) -> None:
        for target in self.config.webmail:
            due = self._webmail_due.get(target.name, 0.0)
            if tick.started < due:
                continue
            self._webmail_due[target.name] = tick.scheduled + target.interval_s
            for profile in target.profiles:
                self._spawn(self._webmail_load(target, profile))

    async def _webmail_load(self, target: Any, profile: Any) -> None:
        from prober.probes.webmail import probe_webmail

        async with self._slot():
            points = await probe_webmail(target, profile, self.config.vantage.name,
                                         self.config.contract)
        for p in points:
            if p.tags.get("outcome") != "ok":
                log.warning("probe failed kind=webmail target=%s profile=%s outcome=%s "
                            "error=%r", target.name, profile.name, p.tags.get("outcome"),
                            p.fields.get("error"))
        self._append(points)

    # -- heartbeat and delivery ------------------------------------------------------------------
    def _heartbeat(self, tick: Tick) -> None:
        depth = self.spool.depth()
        oldest = self.spool.oldest_age_s()
        up = sum(1 for w in self.watchers.values() if w.up)
        self._append([Measurement("prober_heartbeat", {"vantage": self.config.vantage.name}, {
            "version": __version__,
            "uptime_s": time.monotonic() - self.started,
            "missed_ticks": self.clock.missed if self.clock else 0,
            "spool_depth": depth,
            "spool_oldest_s": oldest,
            "spool_refused": self.spool.refused_count,
            "pending_canaries": self.ledger.pending_count(),
            "watchers_up": up,
            "watchers": len(self.watchers),
            "forged_canaries": self._forged_before + sum(w.forged
                                                         for w in self.watchers.values()),
        }, int(tick.scheduled * 1e9))])
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
        except SpoolError as exc:  # refused (disk floor, size cap) or broken: loud, not fatal
            log.error("spool refused %d points: %s", len(points), exc)
            return
        if self.writer is not None:
            self.writer.notify()

    def _status(self) -> str:
        up = sum(1 for w in self.watchers.values() if w.up)
        return (f"{self.ticks} ticks, {len(self.config.routes)} routes, watchers {up}/"
                f"{len(self.watchers)} up, {self.ledger.pending_count()} canaries in flight, "
                f"spool {self.spool.depth()}")
