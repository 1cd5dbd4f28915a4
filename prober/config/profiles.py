"""Network profiles: the customer's access line a webmail load is measured over.

A profile is data (bandwidths, round trip, the contract class that judges it); the line
that applies it lives in prober.probes.throttle. The contract's page-open limits are not
here: they belong to prober.contract, resolved with the `[sla.clauses.*]` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NARROWBAND = "narrowband"
BROADBAND = "broadband"
CONTRACT_CLASSES = (NARROWBAND, BROADBAND)
# ITU-T I.113 calls "broadband" what is faster than primary-rate ISDN (1.5/2 Mbit/s);
# the `dsl` preset sits on that floor. Slower profiles are judged by the narrowband clause.
BROADBAND_FLOOR_KBPS = 1500.0


@dataclass(frozen=True)
class Profile:
    """A customer's access line. `name` is what the config calls it (and the point's tag)."""

    name: str
    down_kbps: float
    up_kbps: float
    rtt_ms: float  # full round trip (WebPageTest convention)
    contract_class: str = ""  # narrowband | broadband; derived from down_kbps when empty
    preset: str = ""  # the preset it came from, if any
    source: str = ""

    def __post_init__(self) -> None:
        if self.down_kbps <= 0 or self.up_kbps <= 0:
            raise ValueError(f"profile {self.name!r}: bandwidths must be > 0")
        if self.rtt_ms < 0:
            raise ValueError(f"profile {self.name!r}: rtt_ms must be >= 0")
        if not self.contract_class:
            cls = NARROWBAND if self.down_kbps < BROADBAND_FLOOR_KBPS else BROADBAND
            object.__setattr__(self, "contract_class", cls)
        if self.contract_class not in CONTRACT_CLASSES:
            raise ValueError(f"profile {self.name!r}: contract_class must be narrowband or "
                             f"broadband, got {self.contract_class!r}")

    @property
    def rtt_s(self) -> float:
        return self.rtt_ms / 1000.0

    def renamed(self, name: str) -> Profile:
        return Profile(name, self.down_kbps, self.up_kbps, self.rtt_ms, self.contract_class,
                       self.preset or self.name, self.source)


_WPT = "WebPageTest connectivity profiles"
PRESETS: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("dial", 49, 30, 120, NARROWBAND, "dial",
                f'{_WPT} "56K Dial-Up"; ITU narrowband <= 64 kbit/s channels'),
        Profile("3gslow", 400, 400, 400, NARROWBAND, "3gslow", f'{_WPT} "3G Slow"'),
        Profile("dsl", 1500, 384, 50, BROADBAND, "dsl",
                f'{_WPT} "DSL"; ITU-T I.113 floor of broadband'),
        Profile("3g", 1600, 768, 300, BROADBAND, "3g", f'{_WPT} "3G"'),
        Profile("cable", 5000, 1000, 28, BROADBAND, "cable", f'{_WPT} "Cable"'),
        Profile("fios", 20000, 5000, 4, BROADBAND, "fios", f'{_WPT} "FIOS"'),
    )
}
# The contract's two words, mapped to the presets that define them.
ALIASES = {NARROWBAND: "dial", BROADBAND: "dsl"}


def resolve_profile(name: str, custom: Mapping[str, Profile] | None = None) -> Profile:
    """A profile by the name a config uses: user-defined first, then aliases and presets."""
    if custom and name in custom:
        return custom[name]
    if name in ALIASES:
        return PRESETS[ALIASES[name]].renamed(name)
    if name in PRESETS:
        return PRESETS[name]
    known = sorted({*PRESETS, *ALIASES, *(custom or {})})
    raise KeyError(f"unknown profile {name!r} (known: {', '.join(known)})")
