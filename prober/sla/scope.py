"""What the contract covers, against what the evidence holds.

`[sla] vantages`, `mailboxes` (resolved by the command into the addresses the data tags)
and `routes` declare the scope. `Scope.of()` compares it with the evidence's inventory:
what was found, what is declared and absent (reported, with coverage 0 % for it), and the
points outside the scope, which are counted as unusable rather than judged.
`ScopedEvidence` hands the scorer only the points inside the scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from prober.config.sla import SlaSettings
from prober.measurement import Measurement
from prober.schema import MAIL_ACCESS, MAIL_ROUNDTRIP, TAG_VANTAGE, Direction
from prober.sla.query import (
    NO_VANTAGE,
    AccessFailure,
    CanaryEvent,
    Delays,
    DelaySums,
    Evidence,
    Inventory,
    WebmailBucket,
    WebmailFailure,
)

SEND_SIDE = (Direction.OUTBOUND, Direction.INTERNAL)
RECEIVE_SIDE = (Direction.INBOUND, Direction.INTERNAL)


@dataclass
class Scope:
    declared_vantages: tuple[str, ...] | None
    declared_mailboxes: tuple[str, ...] | None  # the contracted addresses, when known
    declared_routes: tuple[str, ...] | None
    found_vantages: list[str] = field(default_factory=list)
    found_mailboxes: list[str] = field(default_factory=list)
    found_routes: dict[str, str] = field(default_factory=dict)  # route -> direction
    points_by_vantage: dict[str, int] = field(default_factory=dict)
    out_of_scope: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def absent_vantages(self) -> list[str]:
        return [v for v in self.declared_vantages or () if v not in self.found_vantages]

    @property
    def absent_mailboxes(self) -> list[str]:
        return [m for m in self.declared_mailboxes or () if m not in self.found_mailboxes]

    @property
    def absent_routes(self) -> list[str]:
        return [r for r in self.declared_routes or () if r not in self.found_routes]

    def vantage_ok(self, v: str) -> bool:
        return bool(v) and (self.declared_vantages is None or v in self.declared_vantages)

    def route_ok(self, r: str) -> bool:
        return self.declared_routes is None or r in self.declared_routes

    def mailbox_share(self) -> float:
        if not self.declared_mailboxes:
            return 1.0
        return 1.0 - len(self.absent_mailboxes) / len(self.declared_mailboxes)

    def route_share(self, directions: Sequence[str] | None = None) -> tuple[float, list[str]]:
        """The share of the declared routes feeding a clause that have points, and the absent
        ones (an absent route's direction is not known: it feeds every clause)."""
        if not self.declared_routes:
            return 1.0, []
        feeding = [r for r in self.declared_routes if directions is None
                   or r not in self.found_routes or self.found_routes[r] in directions]
        if not feeding:
            return 1.0, []
        absent = [r for r in feeding if r not in self.found_routes]
        return 1.0 - len(absent) / len(feeding), absent

    @classmethod
    def of(cls, inv: Inventory, settings: SlaSettings, contracted: set[str] | None) -> Scope:
        scope = cls(settings.vantages, tuple(sorted(contracted)) if contracted else None,
                    settings.routes)
        out: dict[tuple[str, str], int] = {}

        def drop(name: str, reason: str, n: int) -> None:
            out[(name, reason)] = out.get((name, reason), 0) + n

        vantages: set[str] = set()
        for (name, v), n in inv.points.items():
            if not v:
                drop(name, NO_VANTAGE, n)
            elif not scope.vantage_ok(v):
                drop(name, f"vantage {v!r} is not in [sla] vantages", n)
            else:
                vantages.add(v)
                scope.points_by_vantage[v] = scope.points_by_vantage.get(v, 0) + n
        mailboxes: set[str] = set()
        for (v, mailbox, _outcome), n in inv.access.items():
            if not scope.vantage_ok(v):
                continue
            if contracted is not None and mailbox not in contracted:
                drop(MAIL_ACCESS, f"mailbox {mailbox!r} is not contracted", n)
            else:
                mailboxes.add(mailbox)
        for r in inv.routes:
            if not scope.vantage_ok(r.vantage):
                continue
            if not scope.route_ok(r.route):
                drop(MAIL_ROUNDTRIP, f"route {r.route!r} is not in [sla] routes", r.points)
                continue
            scope.found_routes[r.route] = r.direction
            if r.direction in SEND_SIDE:
                mailboxes.add(r.sender)
            if r.direction in RECEIVE_SIDE:
                mailboxes.add(r.recipient)
        if contracted is not None:
            mailboxes &= contracted
        scope.found_vantages = sorted(vantages)
        scope.found_mailboxes = sorted(mailboxes)
        scope.found_routes = dict(sorted(scope.found_routes.items()))
        scope.out_of_scope = out
        return scope


class ScopedEvidence:
    """The evidence with the points outside the scope left out (they are counted apart)."""

    def __init__(self, evidence: Evidence, scope: Scope) -> None:
        self._ev = evidence
        self._scope = scope
        self.description = evidence.description

    def _v(self, v: str) -> bool:
        return self._scope.vantage_ok(v)

    def _vr(self, v: str, r: str) -> bool:
        return self._scope.vantage_ok(v) and self._scope.route_ok(r)

    def vantages(self, start_ns: int, end_ns: int) -> set[str]:
        return {v for v in self._ev.vantages(start_ns, end_ns) if self._v(v)}

    def missing_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        return {v: m for v, m in self._ev.missing_minutes(start_ns, end_ns).items()
                if self._v(v)}

    def access_failures(self, start_ns: int, end_ns: int,
                        with_ok: bool = False) -> list[AccessFailure]:
        return [f for f in self._ev.access_failures(start_ns, end_ns, with_ok)
                if self._v(f.vantage)]

    def canary_events(self, start_ns: int, end_ns: int,
                      over_s: float | None) -> list[CanaryEvent]:
        return [e for e in self._ev.canary_events(start_ns, end_ns, over_s)
                if self._vr(e.vantage, e.route)]

    def delay_sums(self, start_ns: int, end_ns: int) -> list[DelaySums]:
        return [s for s in self._ev.delay_sums(start_ns, end_ns) if self._vr(s.vantage, s.route)]

    def delay_points(self, route: str, vantage: str, start_ns: int,
                     end_ns: int) -> list[Delays]:
        if not self._vr(vantage, route):
            return []
        return self._ev.delay_points(route, vantage, start_ns, end_ns)

    def delay_over(self, field_name: str, edges: Sequence[float], start_ns: int,
                   end_ns: int) -> dict[tuple[str, str], list[int]]:
        return {k: c for k, c in self._ev.delay_over(field_name, edges, start_ns, end_ns).items()
                if self._vr(k[1], k[0])}

    def webmail_buckets(self, start_ns: int, end_ns: int) -> list[WebmailBucket]:
        return [b for b in self._ev.webmail_buckets(start_ns, end_ns) if self._v(b.vantage)]

    def webmail_failures(self, start_ns: int, end_ns: int) -> list[WebmailFailure]:
        return [f for f in self._ev.webmail_failures(start_ns, end_ns) if self._v(f.vantage)]

    def webmail_classes(self, start_ns: int, end_ns: int) -> dict[str, str]:
        return self._ev.webmail_classes(start_ns, end_ns)

    def inventory(self, start_ns: int, end_ns: int) -> Inventory:
        return self._ev.inventory(start_ns, end_ns)

    def watcher_down_minutes(self, start_ns: int, end_ns: int) -> dict[str, list[int]]:
        return {v: m for v, m in self._ev.watcher_down_minutes(start_ns, end_ns).items()
                if self._v(v)}

    def antispam_points(self, start_ns: int, end_ns: int) -> list[Measurement]:
        return [p for p in self._ev.antispam_points(start_ns, end_ns)
                if self._v(p.tags.get(TAG_VANTAGE, ""))]

    def unusable(self, start_ns: int, end_ns: int) -> dict[tuple[str, str], int]:
        return self._ev.unusable(start_ns, end_ns)

    def canaries_not_judged(self, start_ns: int, end_ns: int
                            ) -> dict[tuple[str, str, str], int]:
        return {k: n for k, n in self._ev.canaries_not_judged(start_ns, end_ns).items()
                if self._vr(k[0], k[1])}
