"""aioimaplib's protocol behind a small interface of our own: timed phases, a bound on every
step, STARTTLS, and a connection watch.

aioimaplib 2.0.3 has no STARTTLS (issue #1), hangs in idle_start() on BYE (#110), and its
commands wait forever when the connection dies (docs/field-notes.md). So we drive its
IMAP4ClientProtocol ourselves: we make the connection (socket, TLS, loop.start_tls after
STARTTLS), and race every command against a timeout and against the connection's loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aioimaplib.aioimaplib import AUTH, Command, IMAP4ClientProtocol

from prober.config.mail import Endpoint, Mailbox, Timeouts
from prober.probes.canary import FETCH_FIELDS
from prober.probes.connect import Address, open_socket
from prober.probes.errors import ProbeError, classify, mask, masked
from prober.probes.imap_protocol import BoundedIMAP4ClientProtocol
from prober.probes.oauth import SASL_ABORT, challenge_text, sasl_initial, token_cache
from prober.probes.tls import Facts, client_context, peer_facts, tls_facts

T = TypeVar("T")
_FETCH_START = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_CHANGE = re.compile(rb"^\d+ (EXISTS|EXPUNGE|RECENT|FETCH)\b")


@dataclass(frozen=True)
class Folder:
    name: str
    uidvalidity: int
    uidnext: int
    exists: int


@dataclass(frozen=True)
class Fetched:
    uid: int
    internaldate_ns: int | None
    flags: tuple[str, ...]
    headers: bytes


# Messages whose headers one FETCH asks for, so that one response stays bounded however the
# mailbox fills.
FETCH_BATCH = 100
# Of each message's canary fields: 100 x 128 KiB stays below the 16 MiB response cap.
MAX_HEADER_BYTES = 128 * 1024


@dataclass(frozen=True)
class Batch:
    messages: list[Fetched]
    last_uid: int  # every UID up to this one has been looked at (vanished ones too)
    more: bool  # UIDs above last_uid are waiting for the next batch


@dataclass
class ImapSession:
    endpoint: Endpoint
    timeouts: Timeouts
    phases: dict[str, float] = field(default_factory=dict)
    proto: BoundedIMAP4ClientProtocol | None = None
    selected: Folder | None = None
    # peer_ip, and once TLS is up its version, cipher and certificate (probes/tls.py)
    facts: Facts = field(default_factory=dict)
    address: Address | None = None  # this address of the host only (connect_s: TCP alone)

    def __post_init__(self) -> None:
        self._lost: asyncio.Future[None] | None = None
        self._secrets: tuple[str, ...] = ()  # masked out of every server reply we repeat
        self.pending_uids: list[int] = []

    @property
    def capabilities(self) -> set[str]:
        return set(self.proto.capabilities) if self.proto else set()

    @property
    def alive(self) -> bool:
        return self._lost is not None and not self._lost.done()

    async def _bounded(self, aw: Awaitable[T], step: str, timeout: float | None = None) -> T:
        """Await `aw`, but give up on timeout or when the connection is lost."""
        assert self._lost is not None
        task = asyncio.ensure_future(aw)
        waiters: set[asyncio.Future[Any]] = {task, self._lost}
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED,
                                     timeout=timeout or self.timeouts.command_s)
        if task in done:
            try:
                return task.result()
            except Exception as exc:
                raise masked(classify(exc, step), self._secrets) from None
        task.cancel()
        if self._lost.done():
            if self.proto is not None and self.proto.overflow:
                raise ProbeError("protocol", step, self.proto.overflow)
            raise ProbeError("closed", step, "server closed the connection")
        raise ProbeError("timeout", step, "no answer in time")

    async def connect(self) -> None:
        """TCP (connect_s), TLS (tls_s: implicit handshake, or STARTTLS), greeting."""
        ep = self.endpoint
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()

        def on_lost(exc: Exception | None) -> None:
            if not self._lost.done():  # type: ignore[union-attr]
                self._lost.set_result(None)  # type: ignore[union-attr]

        self.proto = BoundedIMAP4ClientProtocol(loop, on_lost)
        t = time.monotonic()
        sock = await open_socket(ep.host, ep.port, self.timeouts.connect_s, ep.family,
                                 self.address)
        self.phases["connect_s"] = time.monotonic() - t
        self.facts.update(peer_facts(sock))
        t = time.monotonic()
        ctx = client_context(ep) if ep.tls != "none" else None
        step = "tls" if ep.tls == "tls" else "greeting"
        try:
            await asyncio.wait_for(loop.create_connection(
                lambda: self.proto, sock=sock,
                ssl=ctx if ep.tls == "tls" else None,
                server_hostname=ep.host if ep.tls == "tls" else None,
                ssl_handshake_timeout=self.timeouts.connect_s if ep.tls == "tls" else None),
                self.timeouts.connect_s)
        except Exception as exc:
            sock.close()
            raise classify(exc, step) from None
        await self._bounded(self.proto.wait("AUTH|NONAUTH"), "greeting",
                            self.timeouts.connect_s)
        if ep.tls == "starttls":
            if "STARTTLS" not in self.proto.capabilities:
                raise ProbeError("tls", "tls", "server does not offer STARTTLS")
            response = await self._bounded(self.proto.execute(
                Command("STARTTLS", self.proto.new_tag(), loop=loop)), "tls")
            if response.result != "OK":
                raise ProbeError("tls", "tls", f"STARTTLS refused: {self._text(response.lines)}")
            transport = self.proto.transport
            new_transport = await self._bounded(loop.start_tls(
                transport, self.proto, ctx, server_hostname=ep.host),  # type: ignore[arg-type]
                "tls", self.timeouts.connect_s)
            self.proto.transport = new_transport
            # RFC 3501 6.2.1: capabilities learnt before TLS must be discarded
            await self._bounded(self.proto.capability(), "tls")
        if ep.tls != "none":
            self.phases["tls_s"] = time.monotonic() - t
            transport = self.proto.transport
            if transport is not None:
                self.facts.update(tls_facts(transport.get_extra_info("ssl_object")))

    async def login(self, user: str, password: str) -> None:
        assert self.proto is not None
        t = time.monotonic()
        self._secrets = (password,)
        response = await self._bounded(self.proto.login(user, password), "auth")
        if response.result != "OK":
            raise ProbeError("auth", "auth", f"{response.result} {self._text(response.lines)}")
        # servers may announce more capabilities after login
        await self._bounded(self.proto.capability(), "auth")
        self.phases["auth_s"] = time.monotonic() - t

    async def authenticate(self, mailbox: Mailbox) -> None:
        """LOGIN with the password, or AUTHENTICATE XOAUTH2 / OAUTHBEARER with the mailbox's
        token (fetched before auth_s starts: the token endpoint is not the IMAP server)."""
        if mailbox.oauth2 is None:
            assert mailbox.password is not None
            await self.login(mailbox.user, mailbox.password.reveal())
            return
        assert self.proto is not None
        mechanism = mailbox.oauth2.mechanism
        if f"AUTH={mechanism.upper()}" not in self.capabilities:
            raise ProbeError("auth", "auth", f"server does not offer AUTH={mechanism.upper()}")
        cache = token_cache(mailbox)
        token = await cache.get(self.timeouts.command_s)
        t = time.monotonic()
        ep = self.endpoint
        initial = sasl_initial(mechanism, mailbox.user, token, ep.host, ep.port)
        self._secrets = (token, initial)
        command = _SaslCommand(self.proto, mechanism, initial)
        response = await self._bounded(self.proto.execute(command, scrub=initial), "auth")
        if response.result != "OK":
            cache.drop(token)
            detail = challenge_text(command.challenge)
            raise ProbeError("auth", "auth", f"{response.result} {self._text(response.lines)}"
                             + (f" {detail}" if detail else ""))
        self.proto.state = AUTH
        await self._bounded(self.proto.capability(), "auth")
        self.phases["auth_s"] = time.monotonic() - t

    async def select(self, folder: str, readonly: bool = False) -> Folder:
        assert self.proto is not None
        t = time.monotonic()
        if readonly:
            response = await self._bounded(
                self.proto.simple_command("EXAMINE", _quote(folder)), "select")
        else:
            response = await self._bounded(self.proto.select(_quote(folder)), "select")
        if response.result != "OK":
            raise ProbeError("protocol", "select",
                             f"SELECT {folder}: {response.result} {self._text(response.lines)}")
        self.phases["select_s"] = time.monotonic() - t
        codes: dict[bytes, int] = {}
        exists = 0
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            for name, value in _CODE.findall(line):
                codes[name] = int(value)
            if line.endswith(b" EXISTS"):
                exists = int(line.split()[0])
        self.selected = Folder(folder, codes.get(b"UIDVALIDITY", 0), codes.get(b"UIDNEXT", 0),
                               exists)
        return self.selected

    async def fetch_after(self, last_uid: int, limit: int = FETCH_BATCH) -> Batch:
        """The `limit` lowest messages with UID > last_uid: UID, INTERNALDATE, FLAGS and the
        canary headers. The UIDs first (a few bytes each), then the headers of one bounded
        batch: 3,000 messages at once broke aioimaplib and stopped the cursor for ever."""
        assert self.proto is not None
        self.pending_uids = []
        response = await self._bounded(
            self.proto.fetch(f"{last_uid + 1}:*", "(UID)", by_uid=True), "fetch")
        if response.result != "OK":
            raise ProbeError("protocol", "fetch",
                             f"{response.result} {self._text(response.lines)}")
        # "n:*" also returns the highest message when no UID is above n: filter.
        uids = sorted({m.uid for m in parse_fetch(response.lines) if m.uid > last_uid})
        batch = uids[:limit]
        self.pending_uids = batch  # what the header fetch asks for, should it fail
        if not batch:
            return Batch([], last_uid, more=False)
        return Batch(await self.fetch_uids(batch), batch[-1], more=len(uids) > limit)

    async def search_old_canaries(self, before: datetime) -> list[int]:
        """UIDs whose Subject has our signed-canary marks and INTERNALDATE is before
        `before`'s day.

        Only a coarse pre-filter (SEARCH is unreliable on some servers, and whole days
        only): the caller verifies every hit locally before touching it. Unsigned canaries
        are never swept, so they are not asked for. No CHARSET: some servers refuse CHARSET
        UTF-8 (docs/field-notes.md).
        """
        assert self.proto is not None
        response = await self._bounded(self.proto.search(
            "BEFORE", before.strftime("%d-%b-%Y"), "SUBJECT", '"[prober] canary"',
            "SUBJECT", '" mac="', charset=None, by_uid=True), "sweep")
        if response.result != "OK":
            raise ProbeError("protocol", "sweep", f"UID SEARCH: {self._text(response.lines)}")
        uids: list[int] = []
        for line in response.lines[:-1]:  # the last line is the tagged status text
            if isinstance(line, bytes):
                # aioimaplib strips "* SEARCH" from the untagged line; tolerate it either way
                uids.extend(int(x) for x in line.split() if x.isdigit())
        return uids

    async def fetch_uids(self, uids: list[int]) -> list[Fetched]:
        assert self.proto is not None
        if not uids:
            return []
        # <0.n>: the server sends at most the first n bytes of the fields (RFC 3501 partial
        # fetch), so one message with megabytes of Received cannot push a batch past the cap
        parts = (f"(UID INTERNALDATE FLAGS BODY.PEEK[HEADER.FIELDS ({FETCH_FIELDS})]"
                 f"<0.{MAX_HEADER_BYTES}>)")
        response = await self._bounded(self.proto.fetch(
            ",".join(str(u) for u in sorted(uids)), parts, by_uid=True), "fetch")
        if response.result != "OK":
            raise ProbeError("protocol", "fetch", f"{response.result} {self._text(response.lines)}")
        wanted = set(uids)
        return [m for m in parse_fetch(response.lines) if m.uid in wanted]

    async def noop(self) -> bool:
        """NOOP; True when the server announced a change (EXISTS, EXPUNGE, RECENT, FETCH)."""
        assert self.proto is not None
        response = await self._bounded(self.proto.simple_command("NOOP"), "noop")
        return any(isinstance(line, bytes) and _CHANGE.match(line)
                   for line in response.lines[:-1])

    async def idle_wait(self, timeout: float, wake: asyncio.Event | None = None) -> bool:
        """IDLE until the server pushes something, `timeout` passes or `wake` is set.

        True when the server pushed. Raises ProbeError when IDLE is refused or the
        connection dies (aioimaplib's own idle_start hangs on BYE: #110).
        """
        proto = self.proto
        assert proto is not None and self._lost is not None
        idle = asyncio.ensure_future(proto.idle())
        ack = asyncio.ensure_future(proto.wait_for_idle_response())
        try:
            done, _ = await asyncio.wait({idle, ack, self._lost},
                                         return_when=asyncio.FIRST_COMPLETED,
                                         timeout=self.timeouts.command_s)
            if ack not in done:
                if self._lost.done():
                    raise ProbeError("closed", "idle", "server closed the connection")
                if idle.done() and idle.exception() is None:
                    raise ProbeError("protocol", "idle",
                                     f"IDLE refused: {self._text(idle.result().lines)}")
                raise ProbeError("timeout", "idle", "no continuation for IDLE")
            push = asyncio.ensure_future(proto.idle_queue.get())
            waiters: set[asyncio.Future] = {push, self._lost, idle}
            woken = asyncio.ensure_future(wake.wait()) if wake else None
            if woken:
                waiters.add(woken)
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED,
                                         timeout=timeout)
            for w in (push, woken):
                if w is not None and not w.done():
                    w.cancel()
            if self._lost.done():
                raise ProbeError("closed", "idle", "server closed the connection")
            pushed = push in done and not push.cancelled()
            if not idle.done():
                proto.idle_done()
                await self._bounded(idle, "idle")
            while not proto.idle_queue.empty():
                proto.idle_queue.get_nowait()
                pushed = True
            return pushed
        finally:
            for task in (idle, ack):
                if not task.done():
                    task.cancel()

    async def remove(self, uids: list[int], mode: str, trash: str) -> str:
        """Remove exactly these UIDs. Returns how: "expunged", "moved", or "kept".

        Never a plain EXPUNGE: it would also remove what a person marked \\Deleted.
        Without UIDPLUS a UID EXPUNGE is impossible; MOVE to the trash is the safe fallback.
        """
        if not uids or mode == "keep":
            return "kept"
        assert self.proto is not None
        uid_set = ",".join(str(u) for u in sorted(uids))
        caps = self.capabilities
        if mode == "delete" and "UIDPLUS" in caps:
            r = await self._bounded(self.proto.store(uid_set, "+FLAGS.SILENT", r"(\Deleted)",
                                                     by_uid=True), "cleanup")
            if r.result != "OK":
                raise ProbeError("protocol", "cleanup", f"UID STORE: {self._text(r.lines)}")
            r = await self._bounded(self.proto.expunge(uid_set, by_uid=True), "cleanup")
            if r.result != "OK":
                raise ProbeError("protocol", "cleanup", f"UID EXPUNGE: {self._text(r.lines)}")
            return "expunged"
        if "MOVE" in caps:
            r = await self._bounded(self.proto.move(uid_set, _quote(trash), by_uid=True),
                                    "cleanup")
            if r.result != "OK":
                raise ProbeError("protocol", "cleanup", f"UID MOVE: {self._text(r.lines)}")
            return "moved"
        return "kept"

    async def logout(self) -> None:
        if self.proto is None or not self.alive:
            self.close()
            return
        with contextlib.suppress(ProbeError):  # leaving anyway
            await self._bounded(self.proto.logout(), "logout", min(5.0, self.timeouts.command_s))
        self.close()

    def _text(self, lines: list) -> str:
        """The server's last words, secrets masked: they become error text."""
        return mask(_last_text(lines), self._secrets)

    def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()


class _SaslCommand(Command):
    """AUTHENTICATE with an initial response (SASL-IR). A failure comes as a challenge with
    the server's JSON error, answered with the mechanism's abort so the server says NO
    (aioimaplib would leave the server waiting)."""

    def __init__(self, proto: IMAP4ClientProtocol, mechanism: str, initial: str) -> None:
        super().__init__("AUTHENTICATE", proto.new_tag(), mechanism.upper(), initial,
                         loop=proto.loop)
        self._proto = proto
        self._abort = SASL_ABORT[mechanism]
        self.challenge = ""

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        if result == "Pending" and isinstance(line, bytes) and line.startswith(b"+"):
            if not self.challenge:
                self.challenge = line[1:].strip()[:4096].decode("ascii", "replace")
                self._proto.transport.write(self._abort.encode() + b"\r\n")
            return
        super().append_to_resp(line, result)


def _quote(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._/-]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _last_text(lines: list) -> str:
    for line in reversed(lines):
        if isinstance(line, bytes) and line.strip():
            return line.decode(errors="replace")
    return "(no text)"


def parse_fetch(lines: list) -> list[Fetched]:
    """Group aioimaplib's FETCH response lines per message; the literal is the header block.

    Servers order the items as they like (UID may come after the literal), so the
    non-literal lines of one message are searched together.
    """
    groups: list[tuple[list[bytes], bytes]] = []
    for line in lines:
        if isinstance(line, bytearray):
            if groups:
                groups[-1] = (groups[-1][0], bytes(line))
        elif isinstance(line, bytes):
            if _FETCH_START.match(line):
                groups.append(([line], b""))
            elif groups:
                groups[-1][0].append(line)
    out = []
    for meta_lines, headers in groups:
        meta = b" ".join(meta_lines)
        uid = _UID.search(meta)
        if uid is None:
            continue
        date = _INTERNALDATE.search(meta)
        flags = _FLAGS.search(meta)
        out.append(Fetched(
            uid=int(uid[1]),
            internaldate_ns=_internaldate_ns(date[1].decode()) if date else None,
            flags=tuple(flags[1].decode().split()) if flags else (),
            headers=headers,
        ))
    return out


def _internaldate_ns(text: str) -> int | None:
    try:
        dt = datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None
    return int(dt.timestamp()) * 1_000_000_000
