"""aioimaplib's client protocol with a bound on what a server can make us hold.

aioimaplib 2.0.3 reads every response whole into memory, however large a literal the
server announces (a 100 MB literal peaked at 841 MB), re-slices the read buffer once per
line and FetchCommand.wait_data() joins every line of the response so far, per line
(both quadratic in the number of lines), and it recurses once per line (3,000 small FETCH
responses in one read end in RecursionError, and the watcher's cursor never advances).
This subclass parses the same grammar in a loop over offsets, refuses a literal or a line
larger than the cap when it is announced, and caps the bytes of one response; past the
cap it aborts the connection and says why in `overflow`, which the session reports as a
protocol error of the step that was waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aioimaplib.aioimaplib import (
    CRLF,
    Command,
    FetchCommand,
    IMAP4ClientProtocol,
    IncompleteRead,
    literal_data_re,
)

MiB = 1024 * 1024
# One response (from a command to its tagged status): the watcher fetches headers in
# batches of FETCH_BATCH messages, far below this; a mailbox's UID list of 100,000
# messages is ~3 MB.
MAX_RESPONSE_BYTES = 16 * MiB
# One line outside a literal: IMAP lines are short; a server that never sends CRLF must
# not make us buffer for ever.
MAX_LINE_BYTES = 1 * MiB


class ResponseTooLarge(Exception):
    pass


class BoundedIMAP4ClientProtocol(IMAP4ClientProtocol):
    def __init__(self, *args: Any, max_response: int = MAX_RESPONSE_BYTES,
                 max_line: int = MAX_LINE_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_response = max_response
        self.max_line = max_line
        self.overflow: str | None = None  # why the connection was aborted, if it was
        self._response_bytes = 0

    def data_received(self, d: bytes) -> None:
        if self.overflow is not None:
            return  # aborted: the transport is closing, drop what is still arriving
        self._response_bytes += len(d)
        try:
            if self._response_bytes > self.max_response + self.max_line:
                # a response of many small lines (no literal announces its size)
                raise ResponseTooLarge(f"server response larger than "
                                       f"{self.max_response // MiB} MiB")
            super().data_received(d)
        except ResponseTooLarge as exc:
            self._abort(str(exc))

    def _abort(self, why: str) -> None:
        self.overflow = why
        self.incomplete_line = b""
        self.current_command = None
        if self.transport is not None:
            self.transport.abort()

    def _response_done(self, line: bytes) -> None:
        self._response_bytes = 0
        super()._response_done(line)

    def _handle_responses(self, data: bytes,
                          line_handler: Callable[[bytes, Command], Command | None],
                          current_cmd: Command | None = None) -> None:
        """aioimaplib's parser as a loop over offsets into `data` (same grammar)."""
        pos = 0
        end = len(data)
        while True:
            if pos >= end:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and _wait_data(current_cmd):
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                need = current_cmd._expected_size - len(current_cmd._resp_literal_data)
                take = min(need, end - pos)
                current_cmd.append_literal_data(data[pos:pos + take])
                pos += take
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
                if pos >= end:
                    continue
            eol = data.find(CRLF, pos)
            if eol < 0:
                if end - pos > self.max_line:
                    raise ResponseTooLarge(f"server line longer than "
                                           f"{self.max_line // MiB} MiB")
                raise IncompleteRead(current_cmd, data[pos:])
            if eol - pos > self.max_line:
                raise ResponseTooLarge(f"server line longer than {self.max_line // MiB} MiB")
            line = data[pos:eol]
            pos = eol + len(CRLF)
            cmd = line_handler(line, current_cmd)
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                size = int(begin_literal.group("size"))
                if size > self.max_response:
                    raise ResponseTooLarge(f"server announced a {size}-byte literal, more "
                                           f"than {self.max_response // MiB} MiB")
                if cmd is None:
                    cmd = Command("NIL", "unused")
                cmd.begin_literal_data(size)
                current_cmd = cmd
            elif cmd is not None and _wait_data(cmd):
                current_cmd = cmd
            else:
                current_cmd = None


def _wait_data(cmd: Command) -> bool:
    """Command.wait_data(), with FetchCommand's looking back only to the start of the last
    message's FETCH line instead of over the whole response (same answer)."""
    if not isinstance(cmd, FetchCommand):
        return bool(cmd.wait_data())
    lines = cmd._resp_lines
    start = len(lines) - 1
    while start > 0 and not (isinstance(lines[start], bytes)
                             and FetchCommand.FETCH_MESSAGE_DATA_RE.match(lines[start])):
        start -= 1
    tail = b"".join(line for line in lines[max(start, 0):] if isinstance(line, bytes))
    return tail.count(b"(") != tail.count(b")")
