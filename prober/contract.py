"""The contract's clauses as data: what is promised, in which unit, over which period, and
what is owed when it is broken. `[sla.clauses.ID]` in probes.toml overrides the limits,
because contracts differ; `resolve()` applies them once, and every reader of a limit (the
score, `prober check`, the webmail timeout, the `threshold_s` field of each point) asks the
resolved `Contract`, so an override cannot reach one of them and miss another.

Clauses a probe cannot observe (backup, provisioning, customer service, billing) are listed
with `measured=False`: the report says "not measured" for them, never a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

ParamValue = float | int | tuple[str, ...]

DOUBLE_TIME = "double service time for the month"
FEE_WAIVED = "month's fee waived"


@dataclass(frozen=True)
class Clause:
    id: str
    section: str  # the contract's paragraph, "1" .. "9"
    title: str
    promise: str  # str.format template over params
    unit: str  # unit of the measured figure
    period: str  # "month", "year", or "" when not measured
    penalty: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    measured: bool = True
    note: str = ""

    def num(self, key: str) -> float:
        value = self.params[key]
        if isinstance(value, tuple):
            raise TypeError(f"clause {self.id}: {key} is a list, not a number")
        return float(value)

    def names(self, key: str) -> tuple[str, ...]:
        value = self.params[key]
        return value if isinstance(value, tuple) else (str(value),)

    def promise_text(self) -> str:
        values = {k: _show(v) for k, v in self.params.items()}
        return self.promise.format(**values)


def _show(value: ParamValue) -> str:
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


CLAUSES: tuple[Clause, ...] = (
    Clause("connectivity", "1", "Connectivity (send and receive, by client or web)",
           "fewer than {below_min} non-connected minutes a month (>= 99.9 %)",
           "min", "month", DOUBLE_TIME, {"below_min": 44}),
    Clause("send_delay", "2", "Send delay (accepted -> handed to the destination)",
           "mean <= {mean_max_s} s, at most {max_over} deliveries over {max_s} s",
           "s", "month", DOUBLE_TIME, {"mean_max_s": 60.0, "max_s": 3600.0, "max_over": 2}),
    Clause("receive_delay", "2", "Receive delay (received from the source -> in the mailbox)",
           "mean <= {mean_max_s} s, at most {max_over} deliveries over {max_s} s",
           "s", "month", DOUBLE_TIME, {"mean_max_s": 60.0, "max_s": 3600.0, "max_over": 2}),
    Clause("fault_time", "3", "Total fault time", "<= {max_min} min a month",
           "min", "month", DOUBLE_TIME, {"max_min": 100}),
    Clause("adjustment_time", "3", "Total adjustment (maintenance) time",
           "<= {max_min} min a month", "min", "month", DOUBLE_TIME, {"max_min": 100}),
    Clause("availability", "3", "System availability (fault-free share of the month)",
           ">= {min_pct} %", "%", "month", DOUBLE_TIME, {"min_pct": 99.99}),
    Clause("fault_free_days", "3", "Fault-free calendar days a year", ">= {min_days} days",
           "days", "year", DOUBLE_TIME, {"min_days": 360}),
    Clause("webmail_narrowband", "3", "Webmail page open time, narrowband",
           "mean <= {mean_max_s} s (profiles: {profiles})", "s", "month", DOUBLE_TIME,
           {"mean_max_s": 30.0, "profiles": ("narrowband",)}),
    Clause("webmail_broadband", "3", "Webmail page open time, broadband",
           "mean <= {mean_max_s} s (profiles: {profiles})", "s", "month", DOUBLE_TIME,
           {"mean_max_s": 10.0, "profiles": ("broadband",)}),
    Clause("anti_spam", "4", "Anti-spam: gateway filtering, abuse contact, listed sources",
           "the GTUBE test handled as configured; abuse@ takes mail; no listing over "
           "{listed_max_h} h", "", "month", FEE_WAIVED, {"listed_max_h": 24.0},
           note="from GTUBE canaries, the abuse@ RCPT check and DNSBL lookups; custom rules "
                "and complaint handling are not observable by a probe"),
    Clause("anti_virus", "5", "Anti-virus: attachment scanning, weekly signature updates",
           "EICAR in .doc .xls .exe .dll .zip .html handled as configured; scanning adds at "
           "most {extra_delay_max_s} s", "s", "month", FEE_WAIVED,
           {"extra_delay_max_s": 30.0},
           note="from EICAR canaries against a clean copy; signature update frequency is not "
                "observable (any signature set detects a test string)"),
    Clause("backup", "7", "Backup: 90 days after lock; daily incremental, full every 3 days",
           "kept one month", "", "", DOUBLE_TIME, measured=False,
           note="not observable by a probe"),
    Clause("provisioning", "8", "Provisioning", "24 h with an existing domain, 48 h with a new one",
           "", "", FEE_WAIVED, measured=False, note="not observable by a probe"),
    Clause("customer_service", "9", "Customer service", "7x24", "", "", "", measured=False,
           note="not observable by a probe"),
    Clause("billing", "", "Billing errors", "none", "", "", "", measured=False,
           note="not observable by a probe"),
)

BY_ID: dict[str, Clause] = {c.id: c for c in CLAUSES}


def with_overrides(overrides: Mapping[str, Mapping[str, object]]) -> tuple[Clause, ...]:
    """The table with `[sla.clauses.ID]` values applied; validated by config.sla already."""
    result = []
    for clause in CLAUSES:
        over = overrides.get(clause.id, {})
        params = dict(clause.params)
        penalty = clause.penalty
        for key, value in over.items():
            if key == "penalty":
                penalty = str(value)
            else:
                params[key] = value  # type: ignore[assignment]
        result.append(replace(clause, params=params, penalty=penalty))
    return tuple(result)


PAGE_OPEN_CLAUSES = ("webmail_narrowband", "webmail_broadband")


@dataclass(frozen=True)
class Contract:
    """The clauses as this deployment's contract states them (defaults plus overrides)."""

    clauses: tuple[Clause, ...] = CLAUSES

    def clause(self, clause_id: str) -> Clause:
        for c in self.clauses:
            if c.id == clause_id:
                return c
        raise KeyError(clause_id)

    def page_open_clause(self, profile: str, contract_class: str = "") -> Clause | None:
        """The page-open clause that judges loads on network profile `profile`: the one
        naming it in its `profiles`, else the one of its `contract_class` (narrowband,
        broadband), as the score decides; None when neither judges it."""
        for clause_id in PAGE_OPEN_CLAUSES:
            c = self.clause(clause_id)
            if profile in c.names("profiles"):
                return c
        if contract_class:
            by_class = f"webmail_{contract_class}"
            if by_class in PAGE_OPEN_CLAUSES:
                return self.clause(by_class)
        return None

    def page_open_limit_s(self, profile: str, contract_class: str = "") -> float | None:
        """The contract's mean page-open limit for `profile`; None when no clause judges it."""
        c = self.page_open_clause(profile, contract_class)
        return c.num("mean_max_s") if c is not None else None


def resolve(overrides: Mapping[str, Mapping[str, object]]) -> Contract:
    return Contract(with_overrides(overrides))
