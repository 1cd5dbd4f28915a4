"""A synthetic month of measurements with a known truth, for scoring tests and the report demo.

September 2026 (30 days, 43,200 minutes, UTC), three vantages v1 v2 v3, two contracted
mailboxes (alice, bob at example.test) and one outside (ext at other.test), three routes:
out (alice -> ext, outbound, hops told apart), in (ext -> bob, inbound, not told apart),
int (alice -> bob, internal; told apart, except every other canary from v2: a mixed series).

Heartbeats every minute, access checks every 30 minutes, canaries every 30 minutes per route,
webmail loads hourly per profile, at a per-vantage second offset. Written twice: every
canary first "pending", then with its fate at the same timestamp, as the agent does.

What happens (variant "a"; "b" differs where noted):
- 09-03 10:00-10:20 IMAP of alice fails at all three vantages        -> 20 min down (not in b)
- 09-05 08:00-08:30 IMAP of ext fails everywhere: not contracted     -> 0
- 09-07 16:00 the internal canary is lost at v1 and v2 (2 of 3)      -> 1 min down
- 09-08 11:30 outbound submission refused at all three               -> 1 min down
- 09-08 12:00 inbound submission refused (the outside sender's side) -> 0
- 09-10 14:00-14:15 SMTP of bob fails at v1 and v2 (a quorum)        -> 15 min down
- 09-12 09:00-09:30 IMAP of alice fails at v1 only                   -> 0 (below quorum)
- 09-15 00:00-06:00 v3 is down: no heartbeat, no points              -> known: v1, v2
  - 02:00-02:10 alice fails at v1 and v2 (2 of 2 known)              -> 10 min down
  - 03:00-03:05 alice fails at v1 only (1 of 2)                      -> 0
- 09-18 12:00-12:30 all three agents down                            -> 30 min unknown
- 09-20 02:00-03:00 maintenance window; 02:10-02:40 all fail          -> 0 (60 min adjustment)
- 09-25 12:00-12:10 exclusion "customer firewall change"; bob fails   -> 0
- canaries in the windows took 4000 s (they must not count anywhere)
- a: 09-22 06:00 the inbound canary is lost at v2 only (over the max, not a down minute)
- b: 09-09 09:00 the outbound canary from v3 took 3700 s to send (over the max)
Delay means are set exactly: a: send 59.95 s, receive 60.05 s; b: both 59.95 s.
Webmail: narrowband mean a: 30.5 s, b: 29.5 s (3 failed loads: 2 with timeout_s 60, one
without, counted at the configured 45 s; 10 slow loads of 40 s; one the prober failed to
make, error_class "prober", in no mean); broadband mean 9.5 s (2 http errors at 30 s).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime

from prober.config.sla import SlaSettings, Window
from prober.measurement import Measurement

YEAR, MONTH = 2026, 9
VANTAGES = ("v1", "v2", "v3")
OFFSET_S = {"v1": 1, "v2": 21, "v3": 41}
ALICE, BOB, EXT = "alice@example.test", "bob@example.test", "ext@other.test"
ROUTES = {"out": (ALICE, EXT, "outbound"), "in": (EXT, BOB, "inbound"),
          "int": (ALICE, BOB, "internal")}
MIN_NS = 60 * 10**9
DAYS = 30


def t(day: int, hh: int = 0, mm: int = 0) -> int:
    """Minutes since the epoch of 2026-09-DD HH:MM UTC."""
    return int(datetime(YEAR, MONTH, day, hh, mm, tzinfo=UTC).timestamp()) // 60


def dt(day: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(YEAR, MONTH, day, hh, mm, tzinfo=UTC)


MAINTENANCE = (dt(20, 2, 0), dt(20, 3, 0))
EXCLUSION = (dt(25, 12, 0), dt(25, 12, 10))
V3_DOWN = (t(15, 0, 0), t(15, 6, 0))
ALL_DOWN = (t(18, 12, 0), t(18, 12, 30))


@dataclass
class Scenario:
    variant: str
    measurements: list[Measurement]
    settings: SlaSettings
    contracted: set[str]
    send_mean: float
    receive_mean: float
    narrowband_mean: float
    broadband_mean: float


def _in(m: int, span: tuple[int, int]) -> bool:
    return span[0] <= m < span[1]


def _alive(v: str, m: int) -> bool:
    return not (_in(m, ALL_DOWN) or (v == "v3" and _in(m, V3_DOWN)))


def _windowed(m: int) -> bool:
    mm = (t(20, 2, 0), t(20, 3, 0))
    ex = (t(25, 12, 0), t(25, 12, 10))
    return _in(m, mm) or _in(m, ex)


def _ns(v: str, m: int) -> int:
    return m * MIN_NS + OFFSET_S[v] * 10**9


def _access_failures(variant: str) -> dict[tuple[int, str, str, str], str]:
    """(minute, vantage, mailbox, protocol) -> error."""
    out: dict[tuple[int, str, str, str], str] = {}

    def span(a: int, b: int, vantages: tuple[str, ...], mailbox: str, proto: str) -> None:
        for m in range(a, b):
            for v in vantages:
                out[(m, v, mailbox, proto)] = f"{proto} refused"

    if variant == "a":
        span(t(3, 10, 0), t(3, 10, 20), VANTAGES, ALICE, "imap")
    span(t(5, 8, 0), t(5, 8, 30), VANTAGES, EXT, "imap")
    span(t(10, 14, 0), t(10, 14, 15), ("v1", "v2"), BOB, "smtp")
    span(t(12, 9, 0), t(12, 9, 30), ("v1",), ALICE, "imap")
    span(t(15, 2, 0), t(15, 2, 10), ("v1", "v2"), ALICE, "imap")
    span(t(15, 3, 0), t(15, 3, 5), ("v1",), ALICE, "imap")
    span(t(20, 2, 10), t(20, 2, 40), VANTAGES, ALICE, "smtp")
    span(t(25, 12, 0), t(25, 12, 10), VANTAGES, BOB, "imap")
    return out


@functools.cache
def build(variant: str = "a") -> Scenario:
    """Cached: the scenario is read-only for its users."""
    if variant not in ("a", "b"):
        raise ValueError(variant)
    ms: list[Measurement] = []
    start, end = t(1), t(1) + DAYS * 1440
    failures = _access_failures(variant)
    for m in range(start, end):
        for v in VANTAGES:
            if not _alive(v, m):
                continue
            ms.append(Measurement("prober_heartbeat", {"vantage": v},
                                  {"uptime_s": float(m - start) * 60, "version": "test",
                                   "missed_ticks": 0}, _ns(v, m)))
            for mb in (ALICE, BOB, EXT):
                for proto in ("smtp", "imap"):
                    err = failures.get((m, v, mb, proto))
                    if err is None and m % 30:
                        continue
                    ms.append(Measurement(
                        "mail_access", {"vantage": v, "mailbox": mb, "protocol": proto,
                                        "outcome": "fail" if err else "ok"},
                        {"total_s": 0.2, "connect_s": 0.01, "error": err,
                         # as the agent writes a failure: with its class
                         "error_class": "refused" if err else None}, _ns(v, m) + 10**8))

    send_mean = 59.95
    receive_mean = 60.05 if variant == "a" else 59.95
    ms.extend(_canaries(variant, start, end, send_mean, receive_mean))
    nb_mean = 30.5 if variant == "a" else 29.5
    ms.extend(_webmail(start, end, nb_mean, 9.5))
    settings = SlaSettings(
        timezone="UTC", mailboxes=("alice", "bob"), webmail_timeout_s=45.0,
        maintenance=(Window(*MAINTENANCE, "mail store upgrade, agreed 2026-09-01"),),
        exclusions=(Window(*EXCLUSION, "customer firewall change"),))
    return Scenario(variant, ms, settings, {ALICE, BOB}, send_mean, receive_mean, nb_mean, 9.5)


def _canaries(variant: str, start: int, end: int, send_mean: float,
              receive_mean: float) -> list[Measurement]:
    # Each canary: (minute, vantage, route, outcome, fields) with "S"/"R" standing for the
    # filler send/receive delay, solved below so the means come out exactly.
    plan: list[tuple[int, str, str, str, dict[str, object]]] = []
    for m in range(start, end, 30):
        for v in VANTAGES:
            if not _alive(v, m):
                continue
            for route in ROUTES:
                slot = (m - start) // 30
                outcome = "delivered"
                fields: dict[str, object]
                if _windowed(m):
                    fields = {"delivery_s": 4000.0, "send_delay_s": 4000.0,
                              "receive_delay_s": 4000.0}
                    outcome = "late"
                elif route == "out":
                    fields = {"send_delay_s": "S", "receive_delay_s": 4.0}
                elif route == "in":
                    fields = {"delivery_s": "R"}
                elif v == "v2" and slot % 2:
                    fields = {"delivery_s": 61.0}  # the mixed series: hops not told apart
                else:
                    fields = {"send_delay_s": "S", "receive_delay_s": "R"}
                if m == t(7, 16, 0) and route == "int" and v in ("v1", "v2"):
                    outcome, fields = "lost", {}
                if m == t(8, 11, 30) and route == "out":
                    outcome, fields = "send_failed", {"smtp_code": 454, "error": "auth unavailable"}
                if m == t(8, 12, 0) and route == "in":
                    outcome, fields = "send_failed", {"smtp_code": 421, "error": "outside MTA"}
                if variant == "a" and m == t(22, 6, 0) and route == "in" and v == "v2":
                    outcome, fields = "lost", {}
                if variant == "b" and m == t(9, 9, 0) and route == "out" and v == "v3":
                    outcome, fields = "late", {"send_delay_s": 3700.0, "receive_delay_s": 4.0}
                plan.append((m, v, route, outcome, fields))

    s_fill = _solve(plan, "S", send_mean, ("outbound", "internal"), "send_delay_s")
    r_fill = _solve(plan, "R", receive_mean, ("inbound", "internal"), "receive_delay_s")
    out = []
    for i, (m, v, route, outcome, fields) in enumerate(plan):
        sender, recipient, direction = ROUTES[route]
        tags = {"vantage": v, "route": route, "sender": sender, "recipient": recipient,
                "direction": direction}
        ns = _ns(v, m) + 2 * 10**8
        canary = f"c{i:06d}"
        out.append(Measurement("mail_roundtrip", tags, {"outcome": "pending", "canary": canary,
                                                        "smtp_total_s": 0.3}, ns))
        final: dict[str, object] = {"outcome": outcome, "canary": canary}
        for k, val in fields.items():
            final[k] = s_fill if val == "S" else r_fill if val == "R" else val
        if outcome in ("delivered", "late") and "delivery_s" not in final:
            final["delivery_s"] = float(final.get("send_delay_s", 0.0)) + float(  # type: ignore[arg-type]
                final.get("receive_delay_s", 0.0))  # type: ignore[arg-type]
        out.append(Measurement("mail_roundtrip", tags, final, ns))  # type: ignore[arg-type]
    return out


def _solve(plan: list[tuple[int, str, str, str, dict[str, object]]], marker: str, mean: float,
           directions: tuple[str, ...], field: str) -> float:
    """The filler value that makes the judged delays of `directions` average `mean`."""
    fixed, n_fixed, n_fill = 0.0, 0, 0
    for m, _v, route, outcome, fields in plan:
        if ROUTES[route][2] not in directions or _windowed(m) or outcome not in ("delivered",
                                                                                   "late"):
            continue
        value = fields.get(field, fields.get("delivery_s"))
        if value == marker:
            n_fill += 1
        else:
            fixed += float(value)  # type: ignore[arg-type]
            n_fixed += 1
    return (mean * (n_fixed + n_fill) - fixed) / n_fill


def _webmail(start: int, end: int, nb_mean: float, bb_mean: float) -> list[Measurement]:
    out = []
    for profile, mean, limit in (("narrowband", nb_mean, 30.0), ("broadband", bb_mean, 10.0)):
        loads: list[tuple[int, str, str, dict[str, object]]] = []
        k = 0
        for m in range(start, end, 60):
            for v in VANTAGES:
                if not _alive(v, m):
                    continue
                k += 1
                if _windowed(m):
                    loads.append((m, v, "ok", {"load_s": 500.0}))
                elif profile == "narrowband" and k in (100, 500):
                    loads.append((m, v, "timeout", {"timeout_s": 60.0, "error": "timed out"}))
                elif profile == "narrowband" and k == 300:  # ours: in no mean, no failure
                    loads.append((m, v, "fail", {"error": "Chromium could not be started",
                                                 "error_class": "prober", "timeout_s": 60.0}))
                elif profile == "narrowband" and k == 900:
                    loads.append((m, v, "fail", {"error": "connection reset"}))  # no timeout_s
                elif profile == "broadband" and k in (200, 700):
                    loads.append((m, v, "http_error", {"status": 503, "timeout_s": 30.0,
                                                       "error": "HTTP 503"}))
                elif profile == "narrowband" and k % 150 == 7:
                    loads.append((m, v, "ok", {"load_s": 40.0}))  # slow, but it loaded
                else:
                    loads.append((m, v, "ok", {"load_s": "X"}))
        fixed, n = 0.0, 0
        for m, _v, outcome, f in loads:
            if _windowed(m) or f.get("error_class") == "prober":
                continue
            n += 1
            if outcome == "ok" and f["load_s"] != "X":
                fixed += float(f["load_s"])  # type: ignore[arg-type]
            elif outcome != "ok":
                fixed += float(f.get("timeout_s", 45.0))  # type: ignore[arg-type]
        n_fill = sum(1 for m, _v, o, f in loads if o == "ok" and f["load_s"] == "X"
                     and not _windowed(m))
        fill = (mean * n - fixed) / n_fill
        for m, v, outcome, f in loads:
            fields = dict(f)
            if fields.get("load_s") == "X":
                fields["load_s"] = fill
            if outcome == "ok":
                fields["open_s"] = fields["load_s"]  # no login: the page is what opens
            fields["contract_class"] = profile
            fields["threshold_s"] = limit
            out.append(Measurement("webmail_load", {"vantage": v, "target": "webmail",
                                                    "profile": profile, "outcome": outcome},
                                   fields, _ns(v, m) + 5 * 10**8))  # type: ignore[arg-type]
    return out


def sparse() -> tuple[list[Measurement], SlaSettings, set[str]]:
    """September 2026 seen for 4 hours a day only (many unknown minutes), with 6, 2 and 4
    down minutes on the 9th, 14th and 22nd: the month the report's down chart must not hide.
    Three vantages, alice's IMAP failing at all of them in the down minutes."""
    ms: list[Measurement] = []
    down = {t(9, 10, 0) + i for i in range(6)} | {t(14, 11, 0) + i for i in range(2)} | {
        t(22, 12, 30) + i for i in range(4)}
    for day in range(1, DAYS + 1):
        for m in range(t(day, 9, 0), t(day, 13, 0)):
            for v in VANTAGES:
                ns = _ns(v, m)
                ms.append(Measurement("prober_heartbeat", {"vantage": v},
                                      {"uptime_s": 60.0, "version": "test"}, ns))
                fail = m in down
                if fail or m % 30 == 0:
                    ms.append(Measurement("mail_access", {
                        "vantage": v, "mailbox": ALICE, "protocol": "imap",
                        "outcome": "fail" if fail else "ok"},
                        {"total_s": 0.2, "error": "imap refused" if fail else None},
                        ns + 10**8))
                if m % 10 == 0:
                    sender, recipient, direction = ROUTES["int"]
                    ms.append(Measurement("mail_roundtrip", {
                        "vantage": v, "route": "int", "sender": sender, "recipient": recipient,
                        "direction": direction}, {"outcome": "delivered", "canary": f"s{m}{v}",
                                                  "delivery_s": 4.0 + (m % 7),
                                                  "send_delay_s": 1.0 + (m % 3),
                                                  "receive_delay_s": 3.0 + (m % 4)},
                        ns + 2 * 10**8))
                if m % 60 == 0 and day % 3:
                    ms.append(Measurement("webmail_load", {
                        "vantage": v, "target": "webmail", "profile": "broadband",
                        "outcome": "ok"}, {"load_s": 4.0 + day / 10, "open_s": 4.0 + day / 10,
                                           "contract_class": "broadband"}, ns + 5 * 10**8))
    return ms, SlaSettings(timezone="UTC", mailboxes=("alice",)), {ALICE}


def dead_address() -> tuple[list[Measurement], set[str]]:
    """September at one vantage v1, heartbeats every minute; bob's IMAP host resolves to an
    IPv4 and an IPv6 address. 09-04 10:00-10:50 the IPv6 one is dead and the IPv4 one
    answers (50 minutes); 09-04 12:00-12:05 both are dead (5 minutes)."""
    out = [Measurement("prober_heartbeat", {"vantage": "v1"}, {"uptime_s": 1.0}, m * MIN_NS)
           for m in range(t(1), t(1) + DAYS * 1440)]

    def login(m: int, family: str, ok: bool, i: int) -> Measurement:
        fields: dict[str, object] = {"total_s": 0.05, "addresses": 2,
                                     "peer_ip": "192.0.2.7" if family == "ipv4" else "2001:db8::7"}
        if not ok:
            fields.update(error="connect: refused: connection refused", error_class="refused")
        return Measurement("mail_access", {"vantage": "v1", "mailbox": BOB, "protocol": "imap",
                                           "family": family, "outcome": "ok" if ok else "fail"},
                           fields, m * MIN_NS + 5 * 10**9 + i)  # type: ignore[arg-type]

    for m in range(t(4), t(4) + 1440, 30):  # the rest of the day: both answer
        if not (t(4, 10, 0) <= m < t(4, 10, 50) or t(4, 12, 0) <= m < t(4, 12, 5)):
            out += [login(m, "ipv4", True, 0), login(m, "ipv6", True, 1)]
    for m in range(t(4, 10, 0), t(4, 10, 50)):
        out += [login(m, "ipv4", True, 0), login(m, "ipv6", False, 1)]
    for m in range(t(4, 12, 0), t(4, 12, 5)):
        out += [login(m, "ipv4", False, 0), login(m, "ipv6", False, 1)]
    return out, {BOB}
