"""The anti-spam (§4) and anti-virus (§5) probes' settings: `[[filter]]` and `[antispam]`.

Off unless configured. Sending GTUBE and EICAR test strings is harmless to a correct filter,
but some providers flag the accounts that send them: the sending mailbox must be one the
operator controls, which is why nothing here has a default sender.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from prober.config.mail import Mailbox
from prober.config.reader import Section

KINDS = ("spam", "virus")
SPAM_EXPECT = ("reject", "junk", "tagged", "quarantine")
VIRUS_EXPECT = ("reject", "strip", "quarantine", "deliver")
# the contract's list of attachment types (§5)
VIRUS_VARIANTS = ("doc", "xls", "exe", "dll", "zip", "html")
_ZONE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_-]{1,63}\.)+[A-Za-z0-9-]{1,63}\.?$")


@dataclass(frozen=True)
class FilterProbe:
    """One `[[filter]]`: test messages from `sender` to `recipient` every `interval_s`."""

    name: str
    kind: str  # spam | virus
    sender: str  # mailbox name: an external mailbox the operator controls
    recipient: str  # mailbox name: a contracted mailbox
    expect: str
    variants: tuple[str, ...]
    interval_s: float = 3600.0
    wait_s: float = 300.0
    tag_header: str = "X-Spam-Flag"  # expect = "tagged": this header on the arrived message


@dataclass(frozen=True)
class Blocklist:
    zones: tuple[str, ...]
    subjects: tuple[str, ...]  # IP addresses or domain names of the provider
    nameserver: str | None = None  # "host" or "host:port"; None: the system's resolver
    interval_s: float = 3600.0


@dataclass(frozen=True)
class AbuseCheck:
    address: str  # abuse@provider.example
    host: str  # the provider's MX (or any host that receives for the domain)
    port: int = 25
    sender: str = ""  # MAIL FROM; "" sends the null reverse-path
    interval_s: float = 3600.0


@dataclass(frozen=True)
class AntispamSettings:
    blocklist: Blocklist | None = None
    abuse: AbuseCheck | None = None


def parse_filters(root: Section, mailboxes: dict[str, Mailbox]) -> tuple[FilterProbe, ...]:
    probes: list[FilterProbe] = []
    for s in root.tables("filter"):
        name = s.text("name")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise s.error("name", f"{name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if any(p.name == name for p in probes):
            raise s.error("name", f"filter {name!r} is defined twice")
        kind = s.choice("kind", KINDS)
        expect = s.choice("expect", SPAM_EXPECT if kind == "spam" else VIRUS_EXPECT)
        sender, recipient = s.text("from"), s.text("to")
        for key, ref in (("from", sender), ("to", recipient)):
            if ref not in mailboxes:
                known = ", ".join(sorted(mailboxes)) or "none defined"
                raise s.error(key, f"no mailbox named {ref!r} (known: {known})")
        if kind == "virus":
            variants = tuple(s.text_list("variants", list(VIRUS_VARIANTS)))
            for v in variants:
                if v not in VIRUS_VARIANTS:
                    raise s.error("variants", f"{v!r} is not one of "
                                  + ", ".join(VIRUS_VARIANTS))
            if not variants:
                raise s.error("variants", "must name at least one attachment type")
        else:
            variants = ("gtube",)
        probes.append(FilterProbe(
            name=name, kind=kind, sender=sender, recipient=recipient, expect=expect,
            variants=variants,
            interval_s=s.number("interval_s", 3600.0, minimum=60, maximum=31 * 86400),
            wait_s=s.number("wait_s", 300.0, minimum=1, maximum=86400),
            tag_header=s.text("tag_header", "X-Spam-Flag"),
        ))
        s.check_unknown()
    return tuple(probes)


def parse_antispam(root: Section) -> AntispamSettings:
    s = root.table("antispam")
    if s is None:
        return AntispamSettings()
    blocklist = None
    zones = s.text_list("blocklist_zones", [])
    subjects = s.text_list("blocklist_subjects", [])
    if zones or subjects:
        if not zones or not subjects:
            missing = "blocklist_zones" if not zones else "blocklist_subjects"
            raise s.error(missing, "is needed too: a blocklist check names zones and subjects")
        for z in zones:
            if not _ZONE.match(z):
                raise s.error("blocklist_zones", f"{z!r} is not a DNS zone name")
        for subject in subjects:
            if not _is_ip(subject) and not _ZONE.match(subject):
                raise s.error("blocklist_subjects", f"{subject!r} is neither an IP address "
                              "nor a domain name")
        blocklist = Blocklist(tuple(zones), tuple(subjects), s.text("nameserver", None),
                              s.number("interval_s", 3600.0, minimum=60, maximum=31 * 86400))
    abuse = None
    if s.has("abuse_address"):
        address = s.text("abuse_address")
        if "@" not in address:
            raise s.error("abuse_address", f"{address!r} is not an email address")
        abuse = AbuseCheck(address=address,
                           host=s.text("abuse_host", address.rsplit("@", 1)[1]),
                           port=s.integer("abuse_port", 25, minimum=1, maximum=65535),
                           sender=s.text("abuse_sender", ""),
                           interval_s=s.number("interval_s", 3600.0, minimum=60,
                                               maximum=31 * 86400))
    s.check_unknown()
    return AntispamSettings(blocklist, abuse)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
