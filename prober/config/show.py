"""`prober config check`: the resolved configuration as TOML-like text, secrets masked."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from prober.config.reader import Secret


def _value(v: Any) -> str:
    if isinstance(v, Secret):
        return f'"****" # from {v.source}'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if v is None:
        return "# (not set)"
    if isinstance(v, (datetime, date)):
        return v.isoformat()  # TOML's own date-time syntax
    if isinstance(v, Mapping):  # e.g. [sla.clauses.*] overrides: a TOML inline table
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    return str(v)


def _key(k: object) -> str:
    text = str(k)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else _value(text)


# The dataclasses' names where they differ from the keys of probes.toml
_TABLES = {"mailboxes": "mailbox", "routes": "route"}
_KEYS = {"sender": "from", "recipient": "to"}


def _items(obj: Any) -> list[tuple[str, Any]]:
    items = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name == "endpoint" and dataclasses.is_dataclass(v):
            items.extend(_items(v))  # [mailbox.imap] holds its endpoint's keys directly
        elif f.name not in ("file", "contract"):  # contract: derived from [sla.clauses]
            items.append((_KEYS.get(f.name, f.name), v))
    return items


def _emit(obj: Any, path: str, out: list[str], array: bool = False) -> None:
    scalars, tables = [], []
    for name, v in _items(obj):
        if not path:
            name = _TABLES.get(name, name)
        if dataclasses.is_dataclass(v):
            tables.append((name, v, False))
        elif isinstance(v, (list, tuple)) and v and dataclasses.is_dataclass(v[0]):
            tables.extend((name, item, True) for item in v)
        elif isinstance(v, dict) and v and all(dataclasses.is_dataclass(x) for x in v.values()):
            tables.extend((name, item, True) for item in v.values())
        else:
            scalars.append((name, v))
    if path:
        out.append(f"\n[[{path}]]" if array else f"\n[{path}]")
    for name, v in scalars:
        out.append(f"{name} = {_value(v)}" if v is not None else f"# {name} not set")
    for name, v, is_array in tables:
        _emit(v, f"{path}.{name}" if path else name, out, is_array)


def render(config: Any) -> str:
    out: list[str] = [f"# resolved from {config.file}; secrets are masked"]
    _emit(config, "", out)
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"
