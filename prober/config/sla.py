"""The judge's settings: `[sla]`, `[sla.clauses.ID]`, `[[sla.maintenance]]`, `[[sla.exclusion]]`.

The clause defaults live in `prober.contract` (the contract as data); this module only
checks that an override names a known clause and parameter with a value of the right type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from types import MappingProxyType
from typing import TYPE_CHECKING

from prober.config.reader import ConfigError, Section
from prober.contract import BY_ID

if TYPE_CHECKING:
    # imported where a zone is read: zoneinfo loads sysconfig's data at import (~0.35 MB
    # resident), which the daemon would keep for nothing when probes.toml has no [sla]
    from zoneinfo import ZoneInfo

# more vantages than this would be a fleet, not a quorum; it also bounds a typo like 1e9
MAX_QUORUM = 1000

# `[sla] dead_address`: a mailbox whose host name resolves to several addresses, one of
# them dead. "fault" (the default): the minute failed, since the customers whose clients
# pick that address cannot connect. "all_fail": failed only when every address probed of
# that mailbox and protocol failed in the minute (the minutes with a dead address beside
# a working one are counted and listed, not charged).
DEAD_ADDRESS_FAULT = "fault"
DEAD_ADDRESS_ALL_FAIL = "all_fail"
DEAD_ADDRESS_RULES = (DEAD_ADDRESS_FAULT, DEAD_ADDRESS_ALL_FAIL)


@dataclass(frozen=True)
class Window:
    """A maintenance window or a manual exclusion: [start, end) in UTC, with its reason."""

    start: datetime
    end: datetime
    reason: str


@dataclass(frozen=True)
class SlaSettings:
    timezone: str = "UTC"
    quorum: int | None = None  # None: a majority of the vantages known in the minute
    min_coverage: float = 0.99  # per clause: `[sla.clauses.ID] min_coverage` overrides it
    # What the contract covers; None: whatever the evidence holds (and the report lists it).
    vantages: tuple[str, ...] | None = None  # the probe hosts expected to report
    mailboxes: tuple[str, ...] | None = None  # None: the provider's side of the routes
    routes: tuple[str, ...] | None = None  # route names, as in [[route]] and the data's tag
    webmail_timeout_s: float | None = None  # None: twice the clause's limit
    dead_address: str = DEAD_ADDRESS_FAULT  # one of DEAD_ADDRESS_RULES
    clauses: Mapping[str, Mapping[str, object]] = field(
        default_factory=lambda: MappingProxyType({}))
    maintenance: tuple[Window, ...] = ()
    exclusions: tuple[Window, ...] = ()
    clause_min_coverage: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}))

    @property
    def tz(self) -> ZoneInfo:
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)


def parse_sla(root: Section) -> SlaSettings:
    s = root.table("sla")
    if s is None:
        return SlaSettings()
    timezone = s.text("timezone", "UTC")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise s.error("timezone", f"unknown time zone {timezone!r} (an IANA name such as "
                      "'UTC' or 'Europe/Berlin')") from None
    quorum_raw = s.data.get("quorum", "majority")
    s._used.add("quorum")
    if quorum_raw == "majority":
        quorum = None
    elif (isinstance(quorum_raw, int) and not isinstance(quorum_raw, bool)
          and 1 <= quorum_raw <= MAX_QUORUM):
        quorum = quorum_raw
    else:
        raise s.error("quorum", f'must be "majority" or a whole number from 1 to {MAX_QUORUM}, '
                      f"got {quorum_raw!r}")
    min_coverage: dict[str, float] = {}
    settings = SlaSettings(
        timezone=timezone,
        quorum=quorum,
        min_coverage=s.number("min_coverage", 0.99, minimum=0.0, maximum=1.0),
        vantages=_names(s, "vantages"),
        mailboxes=_names(s, "mailboxes"),
        routes=_names(s, "routes"),
        webmail_timeout_s=s.number("webmail_timeout_s", None, minimum=0.001, maximum=3600),
        dead_address=s.choice("dead_address", DEAD_ADDRESS_RULES, DEAD_ADDRESS_FAULT),
        clauses=MappingProxyType(_clause_overrides(s, min_coverage)),
        clause_min_coverage=MappingProxyType(min_coverage),
        maintenance=tuple(_window(w, tz) for w in s.tables("maintenance")),
        exclusions=tuple(_window(w, tz) for w in s.tables("exclusion")),
    )
    s.check_unknown()
    return settings


def _names(s: Section, key: str) -> tuple[str, ...] | None:
    values = s.text_list(key, None)
    if values is None:
        return None
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise s.error(f"{key}[{i}]", f"{v!r} is listed twice")
        seen.add(v)
    return tuple(values)


def _clause_overrides(s: Section, min_coverage: dict[str, float]
                      ) -> dict[str, Mapping[str, object]]:
    """The limit overrides per clause; `min_coverage` (the judge's, not the contract's) is
    collected into `min_coverage`."""
    table = s.table("clauses")
    if table is None:
        return {}
    result: dict[str, Mapping[str, object]] = {}
    for clause_id in table.data:
        if clause_id not in BY_ID:
            raise table.error(clause_id, "no such clause (known: " + ", ".join(BY_ID) + ")")
        c = table.table(clause_id)
        assert c is not None
        clause = BY_ID[clause_id]
        values: dict[str, object] = {}
        for key in c.data:
            if key == "penalty":
                values[key] = c.text(key)
            elif key == "min_coverage":
                min_coverage[clause_id] = c.number(key, minimum=0.0, maximum=1.0)
            elif key not in clause.params:
                known = ", ".join([*clause.params, "penalty", "min_coverage"])
                raise c.error(key, f"clause {clause_id} has no such setting (known: {known})")
            else:
                default = clause.params[key]
                if isinstance(default, tuple):
                    values[key] = tuple(c.text_list(key))
                elif isinstance(default, int) and not isinstance(default, bool):
                    values[key] = c.integer(key, minimum=0, maximum=1_000_000)
                else:
                    values[key] = c.number(key, minimum=0.0, maximum=1e7)
        c.check_unknown()
        result[clause_id] = MappingProxyType(values)
    table.check_unknown()
    return result


def _window(w: Section, tz: ZoneInfo) -> Window:
    start = _datetime(w, "start", tz)
    end = _datetime(w, "end", tz)
    if end <= start:
        raise w.error("end", f"must be after start ({start.isoformat()})")
    window = Window(start=start, end=end, reason=w.text("reason"))
    w.check_unknown()
    return window


def _datetime(s: Section, key: str, tz: ZoneInfo) -> datetime:
    """A TOML date-time (or ISO 8601 string); without an offset it is read in `[sla] timezone`."""
    s._used.add(key)
    if key not in s.data:
        raise s.error(key, "is required (a date-time such as 2026-11-03T02:00:00+01:00)")
    value = s.data[key]
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise s.error(key, f"{value!r} is not an ISO 8601 date-time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(0))
    if isinstance(value, time) or not isinstance(value, datetime):
        raise s.error(key, f"must be a date-time, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


__all__ = ["ConfigError", "SlaSettings", "Window", "parse_sla"]
