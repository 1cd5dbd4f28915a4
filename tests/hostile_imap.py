"""A small hostile IMAP server on loopback, and a client run that reports its own peak RSS.

The server speaks just enough IMAP4rev1 for a login and a SELECT, then misbehaves in the
way `mode` names. A real server cannot be made to do this; the behaviour under test is
the prober's, against the server's hostility.

    python -m tests.hostile_imap PORT   runs ImapSession connect/login/select/fetch_after
                                        against 127.0.0.1:PORT and prints one JSON line
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path

MiB = 1024 * 1024
LITERAL_BYTES = 100 * MiB
ECHO_PASSWORD = 'hostile-"Pa55\\word'  # a quote and a backslash: quoted on the wire


class HostileImapServer:
    """`mode`: "literal" (a 100 MB literal in every FETCH), "lines" (an endless stream of
    small untagged FETCH lines), "endless-line" (a line that never ends), "echo-login"
    (the LOGIN line repeated back in a NO and in an untagged BAD)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.port = 0
        self.sent = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> HostileImapServer:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"* OK hostile IMAP ready\r\n")
            while line := await reader.readline():
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                command = rest.split(b" ", 1)[0].upper()
                if command == b"UID":
                    command = rest.split(b" ", 2)[1].upper()
                await self._answer(writer, tag, command, line)
                if command == b"LOGOUT":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, tag: bytes, command: bytes,
                      line: bytes) -> None:
        if command == b"CAPABILITY":
            writer.write(b"* CAPABILITY IMAP4rev1 UIDPLUS\r\n" + tag + b" OK done\r\n")
        elif command == b"LOGIN" and self.mode == "echo-login":
            echoed = line.rstrip(b"\r\n")
            writer.write(b"* BAD you sent: " + echoed + b"\r\n")
            writer.write(tag + b" NO [AUTHENTICATIONFAILED] refused: " + echoed + b"\r\n")
        elif command in (b"SELECT", b"EXAMINE"):
            writer.write(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 6] ok\r\n"
                         + tag + b" OK [READ-WRITE] done\r\n")
        elif command == b"FETCH" and self.mode == "literal":
            writer.write(b"* 1 FETCH (UID 5 BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n"
                         % LITERAL_BYTES)
            chunk = b"X" * MiB
            for _ in range(LITERAL_BYTES // MiB):
                writer.write(chunk)
                self.sent += len(chunk)
                await writer.drain()
            writer.write(b")\r\n" + tag + b" OK done\r\n")
        elif command == b"FETCH" and self.mode == "lines":
            chunk = b"* 1 FETCH (UID 5 FLAGS (\\Seen))\r\n" * 32768
            while self.sent < LITERAL_BYTES:
                writer.write(chunk)
                self.sent += len(chunk)
                await writer.drain()
            writer.write(tag + b" OK done\r\n")
        elif command == b"FETCH" and self.mode == "endless-line":
            writer.write(b"* 1 FETCH (UID 5 FLAGS (")
            chunk = b"\\Seen " * (MiB // 6)
            while self.sent < LITERAL_BYTES:
                writer.write(chunk)
                self.sent += len(chunk)
                await writer.drain()
        elif command == b"LOGOUT":
            writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
        else:
            writer.write(tag + b" OK done\r\n")
        await writer.drain()


async def _client_run(port: int) -> dict[str, object]:
    from prober.config.mail import Endpoint, Timeouts
    from prober.probes.errors import ProbeError
    from prober.probes.imap_session import ImapSession

    sess = ImapSession(Endpoint("127.0.0.1", port, "none"), Timeouts(connect_s=5, command_s=20))
    start = time.monotonic()
    result: dict[str, object] = {}
    try:
        await sess.connect()
        await sess.login("probe", ECHO_PASSWORD)
        await sess.select("INBOX")
        batch = await sess.fetch_after(0)
        result = {"kind": None, "messages": len(batch.messages)}
    except ProbeError as exc:
        result = {"kind": exc.kind, "step": exc.step, "error": str(exc)}
    finally:
        sess.close()
    result["seconds"] = time.monotonic() - start
    result["maxrss_mb"] = _peak_rss_kb() / 1024
    return result


def _peak_rss_kb() -> int:
    """This process's peak RSS. Not getrusage's ru_maxrss: Linux carries it across fork and
    exec, so a child of a large pytest would report the parent's size; VmHWM is this
    program's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_client_run(int(sys.argv[1])))))
