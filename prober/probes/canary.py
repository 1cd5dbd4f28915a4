"""Canary messages: build them, recognise them, and read their Received-hop timeline."""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import format_datetime, parsedate_to_datetime

HEADER = "X-Prober-Canary"
# The token travels in its own header and in the Subject, so a canary is still recognised
# where a gateway strips unknown X- headers.
# Bounded repeats (names are 1-64 characters): with `+` each of the n starts of "v=v=v=..."
# scanned to the end of the header, and a 64 KB header blocked the event loop for 44 s.
_SUBJECT = re.compile(r"\[prober\] canary (?P<vantage>[^\s/]{1,64})/(?P<route>[^\s/]{1,64}) "
                      r"#(?P<seq>\d{1,19}) (?P<id>[0-9a-f]{16})")
_TOKEN = re.compile(r"v=(?P<vantage>[^\s;]{1,64}); r=(?P<route>[^\s;]{1,64}); "
                    r"s=(?P<seq>\d{1,19}); id=(?P<id>[0-9a-f]{16})")
# What of a header block is parsed at all: a canary's own fields are short, and the email
# package's header parser is slow on long values (0.4 s for a 64 KB Subject of words).
MAX_FIELD_BYTES = 4096
MAX_RECEIVED = 100
FETCH_FIELDS = "MESSAGE-ID SUBJECT X-PROBER-CANARY RECEIVED DATE"


@dataclass(frozen=True)
class CanaryId:
    vantage: str
    route: str
    seq: int
    id: str  # 16 hex digits, random: the key a canary is matched by

    @property
    def token(self) -> str:
        return f"v={self.vantage}; r={self.route}; s={self.seq}; id={self.id}"

    @property
    def subject(self) -> str:
        return f"[prober] canary {self.vantage}/{self.route} #{self.seq} {self.id}"


def new_canary_id(vantage: str, route: str, seq: int) -> CanaryId:
    return CanaryId(vantage, route, seq, secrets.token_hex(8))


def build_message(cid: CanaryId, sender: str, recipient: str, sent_at: datetime,
                  extra_headers: dict[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = cid.subject
    msg["Date"] = format_datetime(sent_at)
    domain = sender.rsplit("@", 1)[-1]
    msg["Message-ID"] = f"<prober.{cid.id}.{cid.seq}@{domain}>"
    msg[HEADER] = cid.token
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to canaries
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(
        "This is a canary message of the prober, a synthetic monitor of this mail service.\n"
        "It measures delivery time and is deleted by the prober when it arrives.\n"
        f"Token: {cid.token}\n")
    return msg


def recognise(headers: bytes | str) -> CanaryId | None:
    """The canary in a message's header block, or None if it is not one of ours."""
    raw = headers.encode() if isinstance(headers, str) else headers
    block = _fields(raw, (HEADER.lower(), "subject"), 1)
    parsed = BytesHeaderParser(policy=default).parsebytes(block)
    token = parsed.get(HEADER)
    match = _TOKEN.search(" ".join(str(token).split())) if token else None
    if match is None:
        subject = parsed.get("Subject")
        match = _SUBJECT.search(" ".join(str(subject).split())) if subject else None
    if match is None:
        return None
    return CanaryId(match["vantage"], match["route"], int(match["seq"]), match["id"])


@dataclass(frozen=True)
class Hop:
    by: str | None
    received_from: str | None
    at: datetime | None


_BY = re.compile(r"\bby\s{1,64}([^\s;()]{1,255})", re.I)
_FROM = re.compile(r"^\s*from\s{1,64}([^\s;()]{1,255})", re.I)


def _fields(raw: bytes, names: tuple[str, ...], most: int) -> bytes:
    """The header fields named (lower case), at most `most` of each and MAX_FIELD_BYTES
    of each field: a bound on what the parser and the patterns see, in one linear pass."""
    out: list[bytes] = []
    counts = dict.fromkeys(names, 0)
    keep = False
    size = 0
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if line[:1] in (b" ", b"\t"):  # a folded continuation of the field before
            if keep and size < MAX_FIELD_BYTES:
                piece = line[:MAX_FIELD_BYTES - size]
                size += len(piece)
                out.append(piece)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        keep = name in counts and counts[name] < most and b":" in line
        if keep:
            counts[name] += 1
            piece = line[:MAX_FIELD_BYTES]
            size = len(piece)
            out.append(piece)
    return b"\r\n".join(out) + b"\r\n\r\n"


def received_hops(headers: bytes | str) -> list[Hop]:
    """Received headers as hops in the order the mail travelled (oldest first)."""
    raw = headers.encode() if isinstance(headers, str) else headers
    parsed = BytesHeaderParser(policy=default).parsebytes(_fields(raw, ("received",),
                                                                  MAX_RECEIVED))
    hops = []
    for value in reversed(parsed.get_all("Received") or []):
        text = " ".join(str(value).split())
        stamp = text.rsplit(";", 1)[1].strip() if ";" in text else ""
        try:
            at = parsedate_to_datetime(stamp) if stamp else None
        except (TypeError, ValueError):
            at = None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)  # "-0000" (RFC 5322: UTC, source zone unknown)
        by = _BY.search(text)
        frm = _FROM.search(text)
        hops.append(Hop(by[1].lower() if by else None, frm[1].lower() if frm else None, at))
    return hops


@dataclass(frozen=True)
class DelaySplit:
    send_delay_s: float | None
    receive_delay_s: float | None
    clock_skew: bool


def _inside(host: str | None, provider_domains: tuple[str, ...]) -> bool:
    if not host:
        return False
    return any(host == d or host.endswith("." + d) for d in provider_domains)


def split_delay(hops: list[Hop], accepted_ns: int, internaldate_ns: int | None,
                direction: str, provider_domains: tuple[str, ...]) -> DelaySplit:
    """Send and receive delay where the hops let them be told apart (DESIGN: scoring rules).

    outbound: the provider hands the canary to a destination outside it; send delay runs
    from acceptance to the first Received stamped by a host outside `provider_domains`.
    inbound: the provider receives from outside; receive delay runs from the first Received
    stamped by a provider host to INTERNALDATE (delivery into the mailbox). internal: one
    provider does both, the handover is not visible, so neither is split (delivery_s counts).
    Stamps have 1 s resolution and come from several clocks: a negative step is flagged.
    """
    stamps = [h.at.timestamp() for h in hops if h.at is not None]
    if internaldate_ns is not None:
        stamps.append(internaldate_ns / 1e9)
    skew = any(b < a for a, b in itertools.pairwise(stamps))
    send = receive = None
    if direction == "outbound":
        handover = next((h for h in hops if h.at and h.by and
                         not _inside(h.by, provider_domains)), None)
        if handover is not None and handover.at is not None:
            send = handover.at.timestamp() - accepted_ns / 1e9
    elif direction == "inbound" and internaldate_ns is not None:
        entry = next((h for h in hops if h.at and _inside(h.by, provider_domains)), None)
        if entry is not None and entry.at is not None:
            receive = internaldate_ns / 1e9 - entry.at.timestamp()
    if (send is not None and send < 0) or (receive is not None and receive < 0):
        skew = True
    return DelaySplit(send, receive, skew)
