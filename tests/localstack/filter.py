"""A stand-in for the provider's spam and virus filter: a before-queue content filter.

Postfix's submission services hand each SMTP session to this filter
(`smtpd_proxy_filter`), which sees the whole message before Postfix answers the client, so
it can do what a provider's gateway does: refuse at SMTP, hold the message (quarantine),
tag it, file it as junk, or strip an infected attachment. What it does is set per test
with `policy`; it recognises GTUBE anywhere in the message and EICAR in any attachment
(a .zip holding it included), exactly as a real scanner's test signatures do. Mail it
lets through goes on to Postfix's reinjection listener, where it is queued as usual.
"""

from __future__ import annotations

import asyncio
import io
import smtplib
import time
import zipfile
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import SMTP, default
from typing import Any

from aiosmtpd.controller import Controller

from tests.localstack.ports import free_port

GTUBE = b"XJS*C4JDBQADN1.NSO*C4J2RD57B7XR1K4W47XL.CZ0XGRF8Q5U8R6RS4.IOE"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SPAM_ACTIONS = ("pass", "reject", "junk", "tag", "quarantine")
VIRUS_ACTIONS = ("pass", "reject", "strip", "quarantine")


@dataclass
class Policy:
    spam: str = "pass"
    virus: str = "pass"
    # seconds the filter holds an infected message before acting on it (a scanner that is
    # slow on what it finds): the "scanning adds no delay" figure must show it
    infected_delay_s: float = 0.0


def infected(msg: Message) -> bool:
    for part in msg.walk():
        if part.get_filename() is None:
            continue
        body = part.get_payload(decode=True)
        if not isinstance(body, bytes):
            continue
        if EICAR in body:
            return True
        if body[:2] == b"PK":
            try:
                with zipfile.ZipFile(io.BytesIO(body)) as z:
                    if any(EICAR in z.read(n) for n in z.namelist()[:20]):
                        return True
            except (zipfile.BadZipFile, KeyError, OSError):
                pass
    return False


def strip(msg: Message) -> bytes:
    """The message with every infected attachment replaced by a short notice."""
    out = EmailMessage(policy=SMTP)
    for key, value in msg.items():
        if key.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
            out[key] = value
    body = ""
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and part.get_filename() is None:
            body = part.get_content()
            break
    out.set_content(body)
    out.add_attachment(b"An attachment was removed: it contained a virus (EICAR test).\n",
                       maintype="text", subtype="plain", filename="removed.txt")
    return out.as_bytes()


class _Handler:
    def __init__(self, stack: ContentFilter) -> None:
        self.stack = stack

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return await self.stack.decide(envelope.mail_from, list(envelope.rcpt_tos),
                                       envelope.original_content or envelope.content)


@dataclass
class ContentFilter:
    """Start with `with ContentFilter(reinject_port) as f:`; `f.port` goes into Postfix."""

    reinject_port: int
    port: int = 0  # 0: a free one
    host: str = "127.0.0.1"
    policy: Policy = field(default_factory=Policy)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self._controller: Controller | None = None

    async def decide(self, mail_from: str, rcpts: list[str], data: bytes) -> str:
        msg = message_from_bytes(data, policy=default)
        if GTUBE in data:
            action = self.policy.spam
            self.log.append(f"spam {action}")
            if action == "reject":
                return "550 5.7.1 Message rejected as spam (GTUBE)"
            if action == "quarantine":
                return "250 2.0.0 Ok: held in quarantine"
            if action in ("tag", "junk"):
                data = b"X-Spam-Flag: YES\r\n" + data
            if action == "junk":
                rcpts = [r.replace("@", "+Junk@", 1) for r in rcpts]
        elif infected(msg):
            await asyncio.sleep(self.policy.infected_delay_s)
            action = self.policy.virus
            self.log.append(f"virus {action}")
            if action == "reject":
                return "554 5.7.1 Virus found: Eicar-Test-Signature"
            if action == "quarantine":
                return "250 2.0.0 Ok: held in quarantine"
            if action == "strip":
                data = strip(msg)
        return await asyncio.to_thread(self._forward, mail_from, rcpts, data)

    def _forward(self, mail_from: str, rcpts: list[str], data: bytes) -> str:
        try:
            with smtplib.SMTP(self.host, self.reinject_port, timeout=30) as smtp:
                smtp.sendmail(mail_from, rcpts, data)
        except smtplib.SMTPResponseException as exc:
            return f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}"
        except (OSError, smtplib.SMTPException) as exc:
            return f"451 4.3.0 filter could not pass the message on: {exc}"
        return "250 2.0.0 Ok: passed the filter"

    def start(self) -> None:
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()
        time.sleep(0.05)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> ContentFilter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
