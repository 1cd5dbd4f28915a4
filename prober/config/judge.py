"""What the judge reads of probes.toml: `[sla]`, `[influx]`, `[spool]`, and the names and
addresses of `[[mailbox]]` and `[[route]]` when they are there.

`prober score` and `prober spool status | export` run where the evidence is, which need not
be a probe host: nothing here resolves a mailbox's password or requires `[vantage]` (its
`state_dir`, when present, still places the default spool). The other sections are left
to `prober config check`, so a probe host's full probes.toml serves as a judge config too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prober.config import read_toml
from prober.config.delivery import InfluxSettings, SpoolSettings, parse_influx, parse_spool
from prober.config.mail import DIRECTIONS, default_state_dir
from prober.config.reader import ConfigError, Section
from prober.config.sla import SlaSettings, parse_sla
from prober.contract import Contract, resolve


@dataclass(frozen=True)
class RouteRef:
    """A `[[route]]` as the data tags it: its name and the two addresses."""

    name: str
    sender: str
    recipient: str
    direction: str


@dataclass(frozen=True)
class JudgeConfig:
    file: str
    sla: SlaSettings
    influx: InfluxSettings | None
    spool: SpoolSettings
    mailboxes: dict[str, str]  # [[mailbox]] name -> address
    routes: tuple[RouteRef, ...]
    contract: Contract


def load_judge(path: str | Path) -> JudgeConfig:
    return parse_judge(read_toml(path), str(path))


def parse_judge(data: dict, file: str = "<config>") -> JudgeConfig:
    root = Section(data, file)
    state_dir = default_state_dir()
    vantage = root.table("vantage")
    if vantage is not None:
        state_dir = vantage.text("state_dir", state_dir)
    mailboxes: dict[str, str] = {}
    for s in root.tables("mailbox"):
        name, address = s.text("name"), s.text("address")
        if name in mailboxes:
            raise s.error("name", f"mailbox {name!r} is defined twice")
        mailboxes[name] = address
    routes: list[RouteRef] = []
    for s in root.tables("route"):
        refs = []
        for key in ("from", "to"):
            ref = s.text(key)
            if ref not in mailboxes:
                known = ", ".join(sorted(mailboxes)) or "none defined"
                raise s.error(key, f"no mailbox named {ref!r} (known: {known})")
            refs.append(mailboxes[ref])
        routes.append(RouteRef(s.text("name"), refs[0], refs[1],
                               s.choice("direction", DIRECTIONS)))
    sla = parse_sla(root)
    return JudgeConfig(file=file, sla=sla, influx=parse_influx(root),
                       spool=parse_spool(root, state_dir), mailboxes=mailboxes,
                       routes=tuple(routes), contract=resolve(sla.clauses))


__all__ = ["ConfigError", "JudgeConfig", "RouteRef", "load_judge", "parse_judge"]
