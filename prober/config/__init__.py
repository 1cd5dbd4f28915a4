"""probes.toml -> frozen dataclasses. Every error names the file and the key.

Each room's slice of the configuration is parsed in its own module (mail, delivery,
webmail, sla, agent) so that the rooms can grow their settings independently.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from prober.config.agent import AgentSettings, parse_agent
from prober.config.delivery import InfluxSettings, SpoolSettings, parse_influx, parse_spool
from prober.config.filters import AntispamSettings, FilterProbe, parse_antispam, parse_filters
from prober.config.mail import (
    CanarySettings,
    CheckSettings,
    Mailbox,
    Route,
    Timeouts,
    Vantage,
    parse_canary,
    parse_check,
    parse_mailbox,
    parse_route,
    parse_timeouts,
    parse_vantage,
)
from prober.config.prometheus import PrometheusSettings, parse_prometheus
from prober.config.reader import (
    MAX_CONFIG_BYTES,
    ConfigError,
    FileProblem,
    Secret,
    Section,
    read_regular_file,
)
from prober.config.sla import SlaSettings, parse_sla
from prober.config.webmail import WebmailTarget, parse_webmail
from prober.contract import Contract, resolve

__all__ = ["Config", "ConfigError", "Mailbox", "Route", "Secret", "load", "parse", "read_toml"]


@dataclass(frozen=True)
class Config:
    file: str
    vantage: Vantage
    mailboxes: dict[str, Mailbox]
    routes: tuple[Route, ...]
    timeouts: Timeouts
    canary: CanarySettings
    check: CheckSettings
    agent: AgentSettings
    spool: SpoolSettings
    influx: InfluxSettings | None
    webmail: tuple[WebmailTarget, ...]
    sla: SlaSettings
    # the clauses with `[sla.clauses.*]` applied, resolved once for every reader of a limit
    contract: Contract
    # §4/§5 probes: off unless configured
    filters: tuple[FilterProbe, ...] = ()
    antispam: AntispamSettings = field(default_factory=AntispamSettings)
    # the daemon's live view for Prometheus: off unless configured
    prometheus: PrometheusSettings | None = None


def load(path: str | Path) -> Config:
    return parse(read_toml(path), str(path))


def read_toml(path: str | Path) -> dict:
    """The file's TOML; a ConfigError names the file (and the line of a syntax error)."""
    file = str(path)
    try:
        raw, _ = read_regular_file(path, MAX_CONFIG_BYTES)
    except FileProblem as exc:
        raise ConfigError(file, "", exc.reason) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        line = None
        msg = str(exc)
        # tomllib says "... (at line 3, column 7)"; lift the line into our own format
        if "(at line " in msg:
            tail = msg.rsplit("(at line ", 1)[1]
            line = int(tail.split(",")[0].rstrip(")"))
            msg = msg.rsplit(" (at line ", 1)[0]
        raise ConfigError(file, "", f"TOML syntax error: {msg}", line=line) from None


def parse(data: dict, file: str = "<config>") -> Config:
    root = Section(data, file)
    vantage = parse_vantage(root)
    mailboxes: dict[str, Mailbox] = {}
    for s in root.tables("mailbox"):
        mb = parse_mailbox(s)
        if mb.name in mailboxes:
            raise s.error("name", f"mailbox {mb.name!r} is defined twice")
        mailboxes[mb.name] = mb
    routes: list[Route] = []
    for s in root.tables("route"):
        route = parse_route(s, mailboxes)
        if any(r.name == route.name for r in routes):
            raise s.error("name", f"route {route.name!r} is defined twice")
        routes.append(route)
    sla = parse_sla(root)
    config = Config(
        file=file,
        vantage=vantage,
        mailboxes=mailboxes,
        routes=tuple(routes),
        timeouts=parse_timeouts(root),
        canary=parse_canary(root),
        check=parse_check(root),
        agent=parse_agent(root),
        spool=parse_spool(root, vantage.state_dir),
        influx=parse_influx(root),
        webmail=parse_webmail(root),
        sla=sla,
        contract=resolve(sla.clauses),
        filters=parse_filters(root, mailboxes),
        antispam=parse_antispam(root),
        prometheus=parse_prometheus(root),
    )
    root.check_unknown()
    return config
