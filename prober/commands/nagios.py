"""Nagios' states, as `prober check` exits with them, and how rows' states combine."""

from __future__ import annotations

from collections.abc import Iterable

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# The monitoring plugins' max_state_alt: CRITICAL > WARNING > UNKNOWN > OK, so a row the
# prober could not measure (UNKNOWN) never hides what the provider did to another row.
SEVERITY = {OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3}
# How a row the prober could not measure (error_class "prober") begins: shown UNKNOWN
NOT_MEASURED = "not measured (the prober's own failure)"


def worst(states: Iterable[int], default: int) -> int:
    return max(states, key=SEVERITY.__getitem__, default=default)
