"""Canary messages: build them, authenticate them, and read their Received-hop timeline.

A canary names itself in a token (vantage, route, seq, random id, the stamp of when the
agent built it, which driver sent it) and carries a MAC over that token and the recipient
mailbox's address: HMAC-SHA256 under the vantage's canary key, cut to `MAC_HEX` hex digits.
Anyone can read a canary; only a holder of the key can make one that verifies, and a
genuine canary copied into another mailbox no longer verifies there. The token travels in
its own header and in the Subject, so a canary is still recognised, and verified, where a
gateway strips unknown X- headers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import format_datetime, parsedate_to_datetime

HEADER = "X-Prober-Canary"
# 80 bits: a forger without the key passes one try in 2**80 (8e-25); even 10**12 forged
# messages (each one counted and logged) give 8e-13. More digits buy nothing measurable
# and lengthen a Subject that must carry the MAC too (README: what a canary carries).
MAC_HEX = 20
RUN, CHECK = "run", "check"  # the driver that sent a canary: `prober run` or `prober check`
_MAC_CONTEXT = "prober-canary-v1"  # domain separation: this key signs nothing else

# Bounded repeats (names are 1-64 characters): with `+` each of the n starts of "v=v=v=..."
# scanned to the end of the header, and a 64 KB header blocked the event loop for 44 s.
_SUBJECT = re.compile(
    r"\[prober\] canary (?P<vantage>[^\s/]{1,64})/(?P<route>[^\s/]{1,64}) "
    r"#(?P<seq>\d{1,19}) (?P<id>[0-9a-f]{16})"
    r"(?: t=(?P<stamp>\d{1,12}) by=(?P<by>run|check) mac=(?P<mac>[0-9a-f]{1,64}))?")
_TOKEN = re.compile(
    r"v=(?P<vantage>[^\s;]{1,64}); r=(?P<route>[^\s;]{1,64}); s=(?P<seq>\d{1,19}); "
    r"id=(?P<id>[0-9a-f]{16})"
    r"(?:; t=(?P<stamp>\d{1,12}); by=(?P<by>run|check); mac=(?P<mac>[0-9a-f]{1,64}))?")
# What of a header block is parsed at all: a canary's own fields are short, and the email
# package's header parser is slow on long values (0.4 s for a 64 KB Subject of words).
MAX_FIELD_BYTES = 4096
MAX_RECEIVED = 100
# Reply and forward prefixes of common mail clients (en, de, nordic, fr, es/it, nl, pl, pt)
_REPLY_PREFIX = re.compile(
    r"(?:^|[\s\]:])(?:re|fwd?|aw|wg|sv|vs|tr|rv|antw|doorst|r|rif|enc|res|odp|pd)"
    r"\s*(?:\[\d+\])?\s*:", re.I)
# A reply, a forward or a resend says so in these (RFC 5322 3.6.4 and 3.6.6)
_REPLY_HEADERS = ("In-Reply-To", "References", "Resent-From", "Resent-Sender", "Resent-Date",
                  "Resent-Message-ID", "Resent-To")
_CLAIM_FIELDS = tuple(n.lower() for n in (HEADER, "Subject", "Message-ID", *_REPLY_HEADERS))
FETCH_FIELDS = ("MESSAGE-ID SUBJECT X-PROBER-CANARY RECEIVED DATE IN-REPLY-TO REFERENCES "
                "RESENT-FROM RESENT-SENDER RESENT-DATE RESENT-MESSAGE-ID RESENT-TO "
                "AUTHENTICATION-RESULTS")


@dataclass(frozen=True)
class CanaryId:
    vantage: str
    route: str
    seq: int
    id: str  # 16 hex digits, random: the key a canary is matched by
    # unix seconds when the agent built the canary, before the SMTP session: it does not
    # depend on the provider's acceptance. None (and mac None): a canary from before MACs.
    stamp: int | None = None
    mac: str | None = None
    driver: str = RUN

    @property
    def signed(self) -> bool:
        return self.mac is not None

    def _tail(self, sep: str) -> str:
        if self.mac is None:
            return ""
        return f"{sep}t={self.stamp}{sep}by={self.driver}{sep}mac={self.mac}"

    @property
    def token(self) -> str:
        return (f"v={self.vantage}; r={self.route}; s={self.seq}; id={self.id}"
                + self._tail("; "))

    @property
    def subject(self) -> str:
        return (f"[prober] canary {self.vantage}/{self.route} #{self.seq} {self.id}"
                + self._tail(" "))

    @property
    def message_id_prefix(self) -> str:
        return f"<prober.{self.id}.{self.seq}@"


class CanaryKey:
    """The secret canaries are signed with. Not a dataclass, like Secret: no repr, asdict
    or printer may reach the bytes."""

    __slots__ = ("_key", "_previous", "since_ns", "source")

    def __init__(self, key: bytes, source: str, since_ns: int = 0,
                 previous: bytes | None = None) -> None:
        self._key = key
        # a key being retired: verifies the canaries it signed while they are in flight
        self._previous = previous
        self.source = source  # "env:NAME", "file:/path", "credential:NAME", "state:/path"
        # canaries entered in a ledger from this moment on were all signed: an unsigned
        # message claiming one of them is never a delivery (see README: upgrading)
        self.since_ns = since_ns

    def __repr__(self) -> str:
        return f"CanaryKey({self.source}, ****)"

    __str__ = __repr__

    def mac(self, cid: CanaryId, recipient: str) -> str:
        return _mac(self._key, cid, recipient)

    def verify(self, cid: CanaryId, recipient: str) -> bool:
        if cid.mac is None or cid.stamp is None or len(cid.mac) != MAC_HEX:
            return False
        keys = (self._key,) if self._previous is None else (self._key, self._previous)
        return any(hmac.compare_digest(_mac(k, cid, recipient), cid.mac) for k in keys)

    @property
    def fingerprint(self) -> str:
        """Names the key without revealing it (an HMAC of a constant), to notice a change."""
        return _fingerprint(self._key)

    @property
    def previous_fingerprint(self) -> str | None:
        return _fingerprint(self._previous) if self._previous is not None else None


def _mac(key: bytes, cid: CanaryId, recipient: str) -> str:
    parts = (_MAC_CONTEXT, cid.vantage, cid.route, str(cid.seq), cid.id, str(cid.stamp),
             cid.driver, recipient.strip().lower())
    # length-prefixed parts: no choice of names can make two tokens sign alike
    data = "".join(f"{len(p)}:{p}" for p in parts).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:MAC_HEX]


def _fingerprint(key: bytes) -> str:
    return hmac.new(key, b"prober-canary-key-fingerprint", hashlib.sha256).hexdigest()[:16]


def new_canary_id(vantage: str, route: str, seq: int, *, key: CanaryKey, recipient: str,
                  driver: str = RUN, stamp: int | None = None) -> CanaryId:
    """A fresh signed canary for `recipient` (the route's recipient mailbox address)."""
    cid = CanaryId(vantage, route, seq, secrets.token_hex(8),
                   int(time.time()) if stamp is None else stamp, None, driver)
    return dataclasses.replace(cid, mac=key.mac(cid, recipient))


def build_message(cid: CanaryId, sender: str, recipient: str, sent_at: datetime,
                  extra_headers: dict[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = cid.subject
    msg["Date"] = format_datetime(sent_at)
    domain = sender.rsplit("@", 1)[-1]
    msg["Message-ID"] = f"{cid.message_id_prefix}{domain}>"
    msg[HEADER] = cid.token
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to canaries
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(
        "This is a canary message of the prober, a synthetic monitor of this mail service.\n"
        "It measures delivery time and is deleted by the prober when it arrives.\n"
        f"Token: {cid.token}\n")
    return msg


def _cid(match: re.Match[str]) -> CanaryId:
    stamp = match["stamp"]
    return CanaryId(match["vantage"], match["route"], int(match["seq"]), match["id"],
                    int(stamp) if stamp is not None else None, match["mac"],
                    match["by"] or RUN)


@dataclass(frozen=True)
class Claim:
    """What a message's header block says about itself, before anything is checked."""

    tokens: tuple[CanaryId, ...]  # the header's token first, then the Subject's
    reply: bool  # a reply, a forward or a resend: never a canary, whatever it carries
    message_id: str

    @property
    def canary(self) -> CanaryId:
        return self.tokens[0]

    def of_vantage(self, vantage: str) -> Claim | None:
        """Only the tokens that name `vantage`: another vantage judges its own canaries."""
        mine = tuple(t for t in self.tokens if t.vantage == vantage)
        return dataclasses.replace(self, tokens=mine) if mine else None


def claim(headers: bytes | str) -> Claim | None:
    """The canary a message claims to be, or None when it does not look like one."""
    raw = headers.encode() if isinstance(headers, str) else headers
    parsed = BytesHeaderParser(policy=default).parsebytes(_fields(raw, _CLAIM_FIELDS, 1))
    tokens = []
    token = parsed.get(HEADER)
    match = _TOKEN.search(" ".join(str(token).split())) if token else None
    if match is not None:
        tokens.append(_cid(match))
    subject = " ".join(str(parsed.get("Subject") or "").split())
    match = _SUBJECT.search(subject)
    reply = any(parsed.get(name) is not None for name in _REPLY_HEADERS)
    if match is not None:
        tokens.append(_cid(match))
        reply = reply or _REPLY_PREFIX.search(subject[:match.start()]) is not None
    if not tokens:
        return None
    return Claim(tuple(tokens), reply, " ".join(str(parsed.get("Message-ID") or "").split()))


def recognise(headers: bytes | str) -> CanaryId | None:
    """The canary a message claims to be (unverified), or None if it does not look like one."""
    c = claim(headers)
    return c.canary if c else None


VERIFIED = "verified"  # the MAC verifies for this key and mailbox: a genuine canary
UNSIGNED = "unsigned"  # no MAC at all: a canary from before MACs, or a forgery
REJECTED = "rejected"  # a MAC that does not verify, or a reply/forward: never ours


@dataclass(frozen=True)
class Verdict:
    canary: CanaryId  # the verified token when there is one, else the first claimed
    status: str  # VERIFIED, UNSIGNED or REJECTED
    why: str  # for the log line when not VERIFIED
    # the original message, not a copy someone made of it: only these are ever removed
    original: bool


def authenticate(c: Claim, key: CanaryKey, recipient: str) -> Verdict:
    """Judge a claim for the mailbox whose address is `recipient`."""
    good = next((t for t in c.tokens if key.verify(t, recipient)), None)
    if c.reply:
        return Verdict(good or c.canary, REJECTED, "a reply, forward or resend", False)
    if good is not None:
        original = c.message_id.startswith(good.message_id_prefix)
        return Verdict(good, VERIFIED, "", original)
    if any(t.signed for t in c.tokens):
        return Verdict(c.canary, REJECTED, "its MAC does not verify (another key, another "
                       "mailbox, or altered)", False)
    return Verdict(c.canary, UNSIGNED, "it carries no MAC", False)


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
    """Send and receive delay where the hops let them be told apart (docs/judge.md: scoring rules).

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
