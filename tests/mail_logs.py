"""What the local servers' logs say about our canaries: the truth a verdict is held to.

Postfix's cleanup line names the queue file and the Message-ID (the provider accepted the
message); Dovecot's LMTP line says when it was saved, to the microsecond (the stack logs
`%{usecs}`). A canary's Message-ID is `<prober.ID.SEQ@domain>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from tests.localstack.mail import MailStack

_CLEANUP = re.compile(r"cleanup\[\d+\]: (\w+): message-id=<prober\.([0-9a-f]{16})\.\d+@")
_SAVED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) lmtp\([^)]*\)[^:]*: "
                    r"(?:Info: )?msgid=<prober\.([0-9a-f]{16})\.\d+@[^>]*>: saved mail to ")


@dataclass
class LoggedCanary:
    accepted: bool = False  # Postfix's cleanup took it (a queue file exists)
    saved_at: float | None = None  # unix seconds, Dovecot's "saved mail"


def canaries_in_logs(stack: MailStack) -> dict[str, LoggedCanary]:
    found: dict[str, LoggedCanary] = {}
    for line in (stack.dir / "postfix.log").read_text(errors="replace").splitlines():
        m = _CLEANUP.search(line)
        if m:
            found.setdefault(m[2], LoggedCanary()).accepted = True
    for line in (stack.dir / "dovecot.log").read_text(errors="replace").splitlines():
        m = _SAVED.search(line)
        if m:
            saved = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            entry = found.setdefault(m[2], LoggedCanary())
            entry.saved_at = min(saved, entry.saved_at or saved)
    return found
