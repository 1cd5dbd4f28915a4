"""A DNS blocklist zone on loopback, answering as real DNSBLs do (dnslib's server).

A listed subject's name (reversed IPv4 octets, or a domain, under the zone) answers an A
record 127.0.0.2 and a TXT reason; anything else under the zone is NXDOMAIN. A subject
listed as "refused" answers 127.255.255.254, Spamhaus' code for a refused query.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from tests.localstack.ports import free_port


def subject_name(subject: str, zone: str) -> str:
    try:
        ip = ipaddress.ip_address(subject)
    except ValueError:
        return f"{subject}.{zone}."
    return ".".join(reversed(str(ip).split("."))) + f".{zone}."


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower()
        answer = self.answers.get(name)
        if answer is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(answer), ttl=60))
        return reply


class Dnsbl:
    """`with Dnsbl("bl.test", listed=["127.0.0.2"]) as bl:` then query 127.0.0.1:bl.port."""

    def __init__(self, zone: str, listed: list[str], refused: list[str] = ()) -> None:
        answers = {subject_name(s, zone).lower(): "127.0.0.2" for s in listed}
        answers.update({subject_name(s, zone).lower(): "127.255.255.254" for s in refused})
        self.zone = zone
        self.port = free_port()
        self._server = DNSServer(_Zone(answers), port=self.port, address="127.0.0.1")

    def __enter__(self) -> Dnsbl:
        self._server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
