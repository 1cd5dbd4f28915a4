"""The webmail probe's settings: `[[webmail]]` targets and `[profiles.NAME]`."""

from __future__ import annotations

from dataclasses import dataclass

from prober.config.reader import Section


@dataclass(frozen=True)
class WebmailTarget:
    name: str
    url: str


def parse_webmail(root: Section) -> tuple[WebmailTarget, ...]:
    targets = []
    for s in root.tables("webmail"):
        targets.append(WebmailTarget(name=s.str("name"), url=s.str("url")))
        s.check_unknown()
    return tuple(targets)
