"""What earlier `prober check` runs left open: their canaries' final points.

A check waits `[check] wait_s` for its canaries and writes `pending` for one not seen by
then. Its canary is entered in the agent's ledger (with its point's tags and timestamp),
so a later check can give that point its final outcome, same series and timestamp:
`delivered` or `late` when the later check's sweep finds the canary in the mailbox (and
removes it), `lost` once `[canary] lost_after_s` has passed without it.

A leftover's own detection came late (nobody was watching), so its delay is taken from
the server's INTERNALDATE (`visible_s`, 1 s resolution, at least 0): the provider is
charged with when the canary became visible, not with when a check next looked.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from prober.agent.ledger import Ledger, LedgerError
from prober.config import Config
from prober.measurement import Measurement
from prober.probes.imap import SWEEP, Arrival
from prober.probes.roundtrip import fields_at_arrival
from prober.schema import FIELD_DELIVERY_S, IN_FLIGHT, TAG_DIRECTION, Direction, RoundtripOutcome

log = logging.getLogger("prober.check")
LEDGER_FILE = "check-canaries.db"  # beside the spool
KEEP_RESOLVED_S = 7 * 86400.0  # a settled canary's entry is kept this long, as the daemon's
# a leftover may still be corrected after its lost verdict, as the daemon does
_OPEN_OR_LOST = (*IN_FLIGHT, RoundtripOutcome.LOST)


def ledger_path(config: Config) -> Path:
    return Path(config.spool.path).with_name(LEDGER_FILE)


def open_leftovers(config: Config) -> Leftovers | None:
    """None (and a warning) when the check's ledger cannot be opened: the check still runs,
    its canaries are then not settled by later checks."""
    try:
        return Leftovers(config, Ledger(ledger_path(config)))
    except LedgerError as exc:
        log.warning("earlier checks' canaries are not followed up: %s", exc)
        return None


class Leftovers:
    """The check's own ledger of canaries (a file of its own beside the spool: the daemon
    never sees a check's canaries as its own) and the final points made in this run."""

    def __init__(self, config: Config, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
        self.points: list[Measurement] = []
        self.notes: list[str] = []  # one line per point rewritten, for the check's output

    def on_arrival(self, arrival: Arrival) -> bool:
        """A watcher's callback: True when the arrival settled an earlier check's canary
        (the watcher then removes it)."""
        entry = self.ledger.get(arrival.canary.id)
        if (entry is None or not entry.fields or entry.outcome not in _OPEN_OR_LOST
                or not arrival.authenticated):
            return False  # unknown here (a --no-write check's), this run's own, or done
        route = next((r for r in self.config.routes if r.name == entry.route), None)
        direction = route.direction if route else entry.tags.get(TAG_DIRECTION,
                                                                  Direction.INTERNAL)
        accepted = entry.time_ns or entry.created_ns
        fields = fields_at_arrival(arrival, accepted, direction,
                                   route.provider_domains if route else ())
        visible = fields.get("visible_s")
        if arrival.detect == SWEEP and isinstance(visible, float):
            # see the module's docstring; INTERNALDATE has whole seconds (truncated), so a
            # canary visible within the second of its acceptance reads up to 1 s early
            fields[FIELD_DELIVERY_S] = max(visible, 0.0)
        elif arrival.detect == SWEEP:
            fields[FIELD_DELIVERY_S] = None
        delay = fields.get(FIELD_DELIVERY_S)
        late = isinstance(delay, float) and delay > self.config.canary.late_after_s
        outcome = RoundtripOutcome.LATE if late else RoundtripOutcome.DELIVERED
        self._record(entry.point(outcome=outcome, **fields))
        shown = f"{delay:.0f} s" if isinstance(delay, float) else "an unknown time"
        self.notes.append(f"canary {entry.route} #{entry.seq} ({entry.id}) of an earlier "
                          f"check arrived {shown} after acceptance, after that check stopped "
                          f"waiting: {entry.outcome} -> {outcome}, removed")
        return True

    def settle(self, swept: list[Arrival], now_ns: int | None = None) -> None:
        """The canaries the sweep removed; then those open past lost_after_s."""
        for arrival in swept:
            self.on_arrival(arrival)
        now_ns = now_ns or time.time_ns()
        cutoff = now_ns - int(self.config.canary.lost_after_s * 1e9)
        for entry in self.ledger.open_older_than(cutoff):
            if not entry.fields:
                continue  # entered, never sent to the end: nothing was accepted to be lost
            self._record(entry.point(outcome=RoundtripOutcome.LOST))
            self.notes.append(f"canary {entry.route} #{entry.seq} ({entry.id}) of an earlier "
                              f"check: not seen in {self.config.canary.lost_after_s:g} s: "
                              f"{entry.outcome} -> lost")
        # a check a minute would otherwise grow the file by half a million entries a year
        self.ledger.forget_resolved_before(now_ns - int(KEEP_RESOLVED_S * 1e9))

    def close(self) -> None:
        self.ledger.close()

    def _record(self, point: Measurement) -> None:
        self.ledger.record(point)
        self.points.append(point)
