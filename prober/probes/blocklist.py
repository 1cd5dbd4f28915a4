"""§4 listed sources: is the provider's sending address or domain on a DNS blocklist?

One `mail_blocklist` point per zone and subject. A DNSBL answers an A record in 127.0.0.0/8
for a listed subject and NXDOMAIN otherwise; answers in 127.255.255.0/24 are the zone's
own errors (Spamhaus refuses queries from public resolvers that way), never a listing.
"""

from __future__ import annotations

import ipaddress
import time

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

from prober.config.filters import Blocklist
from prober.measurement import Measurement
from prober.probes.base import ProbeContext
from prober.schema import MAIL_BLOCKLIST, ErrorClass

_ZONE_ERRORS = ipaddress.ip_network("127.255.255.0/24")


def query_name(subject: str, zone: str) -> str:
    """`2.0.0.127.zone.` for an IPv4 address, nibbles for IPv6, `domain.zone.` for a name."""
    zone = zone.rstrip(".")
    try:
        ipaddress.ip_address(subject)
    except ValueError:
        return f"{subject.rstrip('.')}.{zone}."
    reverse = dns.reversename.from_address(subject).to_text()
    suffix = ".in-addr.arpa." if "in-addr" in reverse else ".ip6.arpa."
    return reverse.removesuffix(suffix) + f".{zone}."


def _resolver(bl: Blocklist, timeout_s: float) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=bl.nameserver is None)
    if bl.nameserver is not None:
        host, _, port = bl.nameserver.rpartition(":") if bl.nameserver.count(":") == 1 \
            else (bl.nameserver, "", "")
        resolver.nameservers = [host or bl.nameserver]
        resolver.port = int(port) if port else 53
    resolver.lifetime = timeout_s
    resolver.timeout = timeout_s
    return resolver


async def probe(ctx: ProbeContext, bl: Blocklist) -> list[Measurement]:
    resolver = _resolver(bl, ctx.timeouts.command_s)
    points = []
    for zone in bl.zones:
        for subject in bl.subjects:
            points.append(await _one(ctx.vantage, resolver, zone, subject))
    return points


async def _one(vantage: str, resolver: dns.asyncresolver.Resolver, zone: str,
               subject: str) -> Measurement:
    started = time.time_ns()
    t0 = time.monotonic()
    fields: dict[str, float | int | str | bool | None] = {}
    try:
        answer = await resolver.resolve(query_name(subject, zone), "A")
        addresses = sorted(r.to_text() for r in answer)
        errors = [a for a in addresses if ipaddress.ip_address(a) in _ZONE_ERRORS]
        if errors:
            fields.update(error=f"query: protocol: the zone answered {', '.join(errors)}, "
                          "its code for a refused or bad query (not a listing)",
                          error_class=ErrorClass.PROTOCOL, answer=", ".join(addresses))
        else:
            fields.update(listed=True, answer=", ".join(addresses))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        fields.update(listed=False, answer="")
    except dns.exception.Timeout:
        fields.update(error="query: timeout: no answer in time", error_class=ErrorClass.TIMEOUT)
    except dns.exception.DNSException as exc:
        fields.update(error=f"query: dns: {exc}", error_class=ErrorClass.DNS)
    fields["query_s"] = time.monotonic() - t0
    return Measurement(MAIL_BLOCKLIST, {"vantage": vantage, "zone": zone, "subject": subject},
                       fields, started)
