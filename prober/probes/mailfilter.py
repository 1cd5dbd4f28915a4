"""§4 anti-spam and §5 anti-virus: send the industry's test strings, see what the filter did.

GTUBE (SpamAssassin's test string) makes any spam filter call a message spam; EICAR (the
anti-malware test file) makes any virus scanner call an attachment infected. Neither is
harmful. For each variant the probe sends a test message from an external mailbox the
operator controls to a contracted mailbox, then looks for it in the recipient's folder
and junk folder, and records what happened against what the contract's configuration
expects:

| outcome | meaning |
|---|---|
| rejected | refused at SMTP (a 5xx to the message) |
| junk | arrived in the junk folder |
| tagged | arrived with the configured spam header (e.g. X-Spam-Flag: YES) |
| inbox | arrived in the folder, untouched (spam only) |
| stripped | arrived without the infected attachment, or with it replaced |
| delivered | arrived with the infected attachment intact (virus) |
| quarantined | accepted, and not seen within `wait_s` |
| send_failed | the test could not be sent (the sender's fault, not the filter's) |

Every virus variant also goes out clean (the same attachment type with harmless content)
in the same run: `extra_delay_s` is the infected copy's delay minus the clean one's, the
figure for "scanning adds no delay". The messages carry the canaries' MAC, and only
messages whose MAC verifies are removed, by UID.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import re
import secrets
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import format_datetime

from prober.config.filters import FilterProbe
from prober.config.mail import Mailbox
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.probes.canary import CanaryId, CanaryKey
from prober.probes.errors import ProbeError, classify
from prober.probes.imap_session import ImapSession, parse_fetch
from prober.probes.smtp import submit
from prober.schema import MAIL_FILTER

HEADER = "X-Prober-Filter"
# SpamAssassin's Generic Test for Unsolicited Bulk Email
GTUBE = "XJS*C4JDBQADN1.NSO*C4J2RD57B7XR1K4W47XL.CZ0XGRF8Q5U8R6RS4.IOE"
# The EICAR anti-malware test file (68 bytes; any scanner reports it, it does nothing)
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CLEAN = "prober: a harmless attachment, the clean twin of an anti-virus test\r\n"
_MIME = {"doc": "application/msword", "xls": "application/vnd.ms-excel",
         "exe": "application/x-msdownload", "dll": "application/x-msdownload",
         "zip": "application/zip", "html": "text/html"}
_TOKEN = re.compile(r"v=(?P<vantage>[^\s;]+); f=(?P<name>[^\s;]+); k=(?P<variant>[a-z]+); "
                    r"c=(?P<clean>[01]); id=(?P<id>[0-9a-f]{16}); t=(?P<stamp>\d{1,12}); "
                    r"mac=(?P<mac>[0-9a-f]{1,64})")
_POLL_S = 0.2  # a few cheap NOOP/FETCH rounds a second, for the length of one test
_MAX_MESSAGE = 512 * 1024  # our test messages are ~2 KB; a larger one is not looked into
DRIVER = "filter"  # in the MAC's input: a filter test can never pass for a round-trip canary

OUTCOMES = ("rejected", "junk", "tagged", "inbox", "stripped", "delivered", "quarantined",
            "send_failed", "unknown")
# what each configured expectation accepts as the filter doing its job
MEETS = {"reject": {"rejected"}, "junk": {"junk"}, "tagged": {"tagged", "junk"},
         "quarantine": {"quarantined", "rejected"}, "strip": {"stripped"},
         "deliver": {"delivered"}}


@dataclass(frozen=True)
class FilterTarget:
    """One `[[filter]]` with its mailboxes and the key its messages are signed with."""

    probe: FilterProbe
    sender: Mailbox
    recipient: Mailbox
    key: CanaryKey


@dataclass(frozen=True)
class TestMessage:
    variant: str
    clean: bool
    cid: CanaryId

    @property
    def token(self) -> str:
        return (f"v={self.cid.vantage}; f={self.cid.route.split('/')[0]}; k={self.variant}; "
                f"c={int(self.clean)}; id={self.cid.id}; t={self.cid.stamp}; mac={self.cid.mac}")


def _signed(key: CanaryKey, vantage: str, name: str, variant: str, clean: bool,
            recipient: str) -> CanaryId:
    cid = CanaryId(vantage, f"{name}/{variant}/{int(clean)}", 0, secrets.token_hex(8),
                   int(time.time()), None, DRIVER)
    return dataclasses.replace(cid, mac=key.mac(cid, recipient))


def build(msg: TestMessage, kind: str, sender: str, recipient: str) -> EmailMessage:
    m = EmailMessage(policy=SMTP)
    m["From"] = sender
    m["To"] = recipient
    label = "clean" if msg.clean else ("GTUBE" if kind == "spam" else "EICAR")
    m["Subject"] = f"[prober] filter test {label} .{msg.variant} {msg.cid.id} mac={msg.cid.mac}"
    m["Date"] = format_datetime(datetime.now(UTC))
    m["Message-ID"] = f"<prober.filter.{msg.cid.id}@{sender.rsplit('@', 1)[-1]}>"
    m[HEADER] = msg.token
    m["Auto-Submitted"] = "auto-generated"
    text = ("This is a test message of the prober, a synthetic monitor of this mail service.\n"
            "It checks that the provider's filter recognises the industry's test strings.\n")
    if kind == "spam":
        m.set_content(text + "\n" + GTUBE + "\n")
        return m
    m.set_content(text)
    payload, filename = _attachment(msg.variant, msg.clean)
    maintype, subtype = _MIME[msg.variant].split("/")
    m.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return m


def _attachment(variant: str, clean: bool) -> tuple[bytes, str]:
    content = (CLEAN if clean else EICAR).encode()
    if variant == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("eicar.com" if not clean else "clean.txt", content)
        return buf.getvalue(), "test.zip"
    return content, f"test.{variant}"


def _attachment_state(raw: bytes, variant: str) -> str:
    """'intact' when the test attachment arrived as sent, else 'stripped'."""
    expected, filename = _attachment(variant, clean=False)
    parsed: Message = message_from_bytes(raw, policy=default)
    for part in parsed.walk():
        if part.get_filename() == filename:
            body = part.get_payload(decode=True)
            if isinstance(body, bytes) and (body == expected or (
                    variant == "zip" and _zip_holds_eicar(body))):
                return "intact"
    return "stripped"


def _zip_holds_eicar(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(z.read(n) == EICAR.encode() for n in z.namelist()[:10])
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError):
        return False


@dataclass
class _Sent:
    msg: TestMessage
    accepted_ns: int | None
    smtp_code: int | None
    error: ProbeError | None
    rejected: bool
    started_ns: int


@dataclass
class _Found:
    folder: str
    uid: int
    internaldate_ns: int | None
    seen_ns: int
    tagged: bool
    attachment: str  # intact | stripped | "" (spam)


async def probe(ctx: ProbeContext, target: FilterTarget) -> list[Measurement]:
    p = target.probe
    messages = []
    for variant in p.variants:
        messages.append(TestMessage(variant, False, _signed(
            target.key, ctx.vantage, p.name, variant, False, target.recipient.address)))
        if p.kind == "virus":
            messages.append(TestMessage(variant, True, _signed(
                target.key, ctx.vantage, p.name, variant, True, target.recipient.address)))
    watcher = _Watcher(ctx, target)
    try:
        # look first, so the cursors are set before anything is sent and a mailbox we
        # cannot read is found out before the filter is tested for nothing
        await watcher.open()
    except ProbeError as exc:
        await watcher.close()
        return [_point(ctx, target, m, None, None, "unknown", exc, time.time_ns(), None)
                for m in messages if not m.clean]
    by_id = {m.cid.id: m for m in messages}
    watcher.expect(by_id)
    # watch while sending: a message that passes the filter at once is seen at once
    watching = asyncio.create_task(watcher.wait())
    watch_error: ProbeError | None = None
    try:
        sent = await asyncio.gather(*(_send(ctx, target, m) for m in messages))
        watcher.sent({s.msg.cid.id for s in sent if s.accepted_ns is not None})
        try:
            await watching
        except ProbeError as exc:
            watch_error = exc
        await watcher.remove_found()
    finally:
        watching.cancel()
        await watcher.close()
    return _points(ctx, target, sent, watcher.found, watch_error)


async def _send(ctx: ProbeContext, target: FilterTarget, msg: TestMessage) -> _Sent:
    m = build(msg, target.probe.kind, target.sender.address, target.recipient.address)
    started = time.time_ns()
    sub = await submit(target.sender, ctx.timeouts, m.as_bytes(), [target.recipient.address])
    rejected = (sub.error is not None and sub.error.step == "data" and sub.code is not None
                and 500 <= sub.code < 600)
    return _Sent(msg, sub.accepted_ns, sub.code, sub.error, rejected, started)


class _Watcher:
    """The recipient's folder and junk folder, each in its own session, polled by UID."""

    def __init__(self, ctx: ProbeContext, target: FilterTarget) -> None:
        self.ctx = ctx
        self.target = target
        self.sessions: dict[str, ImapSession] = {}
        self.cursors: dict[str, int] = {}
        self.found: dict[str, _Found] = {}
        self.messages: dict[str, TestMessage] = {}
        self.accepted: set[str] | None = None  # None: still sending

    def expect(self, messages: dict[str, TestMessage]) -> None:
        self.messages = messages

    def sent(self, accepted: set[str]) -> None:
        self.accepted = accepted

    def _done(self) -> bool:
        return self.accepted is not None and self.accepted <= set(self.found)

    async def open(self) -> None:
        imap = self.target.recipient.imap
        for folder in [imap.folder] + ([imap.junk_folder] if imap.junk_folder else []):
            sess = ImapSession(imap.endpoint, self.ctx.timeouts)
            step = "connect"
            try:
                await sess.connect()
                step = "auth"
                await sess.authenticate(self.target.recipient)
                step = "select"
                state = await sess.select(folder)
            except Exception as exc:
                sess.close()
                if folder != imap.folder and step == "select":
                    continue  # no junk folder on this server: the folder is still watched
                raise classify(exc, step) from None
            self.sessions[folder] = sess
            self.cursors[folder] = max(0, state.uidnext - 1)

    async def wait(self) -> None:
        deadline = time.monotonic() + self.target.probe.wait_s
        if self.ctx.deadline is not None:
            deadline = min(deadline, self.ctx.deadline)
        while not self._done():
            if self.accepted is not None and time.monotonic() >= deadline:
                return
            for folder, sess in self.sessions.items():
                await sess.noop()
                for item in await _fetch_new(sess, self.cursors[folder],
                                             self.target.probe.tag_header):
                    self.cursors[folder] = max(self.cursors[folder], item.uid)
                    hit = _match(item.headers, self.ctx.vantage, self.target, self.messages)
                    if hit is None or hit in self.found:
                        continue
                    seen = time.time_ns()
                    msg = self.messages[hit]
                    attachment = ""
                    if self.target.probe.kind == "virus" and not msg.clean:
                        raw = await _fetch_body(sess, item.uid)
                        attachment = _attachment_state(raw, msg.variant) if raw else "stripped"
                    self.found[hit] = _Found(folder, item.uid, item.internaldate_ns, seen,
                                             _tagged(item.headers, self.target.probe.tag_header),
                                             attachment)
            if not self._done():
                await asyncio.sleep(_POLL_S)

    async def remove_found(self) -> None:
        """Only what matched: a test message of this run whose MAC verified, by UID."""
        for folder, sess in self.sessions.items():
            uids = [f.uid for f in self.found.values() if f.folder == folder]
            if uids:
                with contextlib.suppress(ProbeError):  # the result stands; the sweep retries
                    await sess.remove(uids, "delete", self.target.recipient.imap.trash_folder)

    async def close(self) -> None:
        for sess in self.sessions.values():
            await sess.logout()


async def _fetch_new(sess: ImapSession, after: int, tag_header: str) -> list:
    assert sess.proto is not None
    fields = f"{HEADER} SUBJECT IN-REPLY-TO REFERENCES {tag_header}".upper()
    response = await sess._bounded(sess.proto.fetch(
        f"{after + 1}:*", f"(UID INTERNALDATE FLAGS BODY.PEEK[HEADER.FIELDS ({fields})])",
        by_uid=True), "fetch")
    if response.result != "OK":
        raise ProbeError("protocol", "fetch", f"UID FETCH: {response.result}")
    return [m for m in parse_fetch(response.lines) if m.uid > after]


async def _fetch_body(sess: ImapSession, uid: int) -> bytes:
    assert sess.proto is not None
    response = await sess._bounded(sess.proto.fetch(str(uid), "(UID RFC822.SIZE)", by_uid=True),
                                   "fetch")
    size = re.search(rb"RFC822\.SIZE (\d+)", b" ".join(
        x for x in response.lines if isinstance(x, bytes)))
    if size is None or int(size[1]) > _MAX_MESSAGE:
        return b""
    response = await sess._bounded(sess.proto.fetch(str(uid), "(UID BODY.PEEK[])", by_uid=True),
                                   "fetch")
    got = parse_fetch(response.lines)
    return got[0].headers if got else b""  # the literal: here the whole message


def _match(headers: bytes, vantage: str, target: FilterTarget,
           waiting: dict[str, TestMessage]) -> str | None:
    """The id of the test message these headers are, if its MAC verifies for this mailbox
    and it is one this run sent; replies and forwards never match."""
    parsed = BytesHeaderParser(policy=default).parsebytes(headers)
    if parsed.get("In-Reply-To") or parsed.get("References"):
        return None
    token = " ".join(str(parsed.get(HEADER) or "").split())
    found = _TOKEN.search(token)
    if found is None or found["vantage"] != vantage or found["id"] not in waiting:
        return None
    msg = waiting[found["id"]]
    claimed = dataclasses.replace(msg.cid, stamp=int(found["stamp"]), mac=found["mac"])
    if (found["name"] != target.probe.name or found["variant"] != msg.variant
            or found["clean"] != str(int(msg.clean))
            or not target.key.verify(claimed, target.recipient.address)):
        return None
    return found["id"]


def _tagged(headers: bytes, name: str) -> bool:
    value = BytesHeaderParser(policy=default).parsebytes(headers).get(name)
    return value is not None and str(value).strip().lower() not in ("", "no", "false", "0")


def outcome_of(kind: str, sent: _Sent, found: _Found | None, junk_folder: str | None) -> str:
    if sent.accepted_ns is None:
        return "rejected" if sent.rejected else "send_failed"
    if found is None:
        return "quarantined"
    if kind == "virus" and not sent.msg.clean:
        return "delivered" if found.attachment == "intact" else "stripped"
    if junk_folder is not None and found.folder == junk_folder:
        return "junk"
    if kind == "spam" and found.tagged:
        return "tagged"
    return "inbox" if kind == "spam" else "delivered"


def _delay(sent: _Sent, found: _Found | None) -> float | None:
    """SMTP 250 -> seen, as a round-trip canary's delivery_s."""
    if sent.accepted_ns is None or found is None:
        return None
    return max(0.0, (found.seen_ns - sent.accepted_ns) / 1e9)


def _total(sent: _Sent, found: _Found | None) -> float | None:
    """Start of the SMTP session -> seen: a filter that scans before it answers the 250
    (a before-queue filter) delays this, not delay_s, so the extra delay is taken here."""
    if sent.accepted_ns is None or found is None:
        return None
    return (found.seen_ns - sent.started_ns) / 1e9


def _points(ctx: ProbeContext, target: FilterTarget, sent: Sequence[_Sent],
            found: dict[str, _Found], watch_error: ProbeError | None) -> list[Measurement]:
    clean_total = {s.msg.variant: _total(s, found.get(s.msg.cid.id))
                   for s in sent if s.msg.clean}
    points = []
    for s in sent:
        if s.msg.clean:
            continue
        f = found.get(s.msg.cid.id)
        outcome = outcome_of(target.probe.kind, s, f, target.recipient.imap.junk_folder)
        error = s.error if outcome == "send_failed" else None
        if outcome == "quarantined" and watch_error is not None:
            # we could not look to the end: not evidence that the filter held it
            outcome, error = "unknown", watch_error
        points.append(_point(ctx, target, s.msg, s, f, outcome, error,
                             s.accepted_ns or s.started_ns, clean_total.get(s.msg.variant)))
    return points


def _point(ctx: ProbeContext, target: FilterTarget, msg: TestMessage, sent: _Sent | None,
           found: _Found | None, outcome: str, error: ProbeError | None, time_ns: int,
           clean: float | None) -> Measurement:
    p = target.probe
    delay = _delay(sent, found) if sent is not None else None
    total = _total(sent, found) if sent is not None else None
    return Measurement(MAIL_FILTER, {
        "vantage": ctx.vantage, "route": p.name, "kind": p.kind, "variant": msg.variant,
        "expected": p.expect,
    }, {
        "outcome": outcome,
        "as_expected": outcome in MEETS[p.expect] if outcome != "unknown" else None,
        "folder": found.folder if found else None,
        "smtp_code": sent.smtp_code if sent else None,
        "delay_s": delay,
        "total_s": total,
        "clean_total_s": clean,
        "extra_delay_s": total - clean if total is not None and clean is not None else None,
        "canary": msg.cid.id,
        "error": str(error) if error else None,
        "error_class": error.kind if error else None,
    }, time_ns)
