"""TLS for the mail probes: verified contexts, and the facts of the connection made.

The facts (version, cipher, the leaf certificate's subject and days to expiry, the peer's
address) are recorded on every mail connection, because an expiring certificate or a
front end that negotiates an old protocol is a fault some customers hit before the
provider notices. A verified peer's certificate is read from the standard library's
parsed form; an unverified one's (`tls_verify = false`: that form is empty) from its DER
bytes with `cryptography`, imported only then: it costs ~10 MB of resident memory, a
quarter of the daemon's.
"""

from __future__ import annotations

import asyncio.sslproto
import contextlib
import datetime as dt
import functools
import os
import socket
import ssl

from prober.config.mail import Endpoint
from prober.probes.errors import PROBER, ProbeError, local_cause
from prober.schema import (
    FIELD_CERT_EXPIRY_DAYS,
    FIELD_CERT_SUBJECT,
    FIELD_PEER_IP,
    FIELD_TLS_CIPHER,
    FIELD_TLS_VERSION,
)

Facts = dict[str, str | float]

# asyncio reads every TLS connection through a buffer of SSLProtocol.max_size (256 KiB),
# allocated zero-filled, so resident, when the connection is made. An IMAP watcher holds
# its connection for hours and reads a few hundred bytes at a time; a tick's submissions
# and logins make one each at once. Two full TLS records (16 KiB of data each) per read
# are plenty for mail protocols and cost a read per 32 KiB on a larger transfer.
TLS_READ_BUFFER = 32 * 1024


def small_tls_read_buffers() -> None:
    """Make TLS connections opened from now on read through TLS_READ_BUFFER (process-wide:
    the daemon calls it once at start)."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def client_context(endpoint: Endpoint) -> ssl.SSLContext:
    """One context per CA file (and its modification time) and verify mode, shared by
    every connection: loading the system's CA store costs ~25 ms of CPU per context,
    most of a check's or an idle daemon's CPU when made per connection."""
    stamp = None
    if endpoint.ca_file:
        with contextlib.suppress(OSError):  # a missing file fails in load_verify_locations
            stamp = os.stat(endpoint.ca_file).st_mtime_ns
    return _built(endpoint.ca_file, stamp, endpoint.tls_verify)


def _built(ca_file: str | None, stamp: int | None, verify: bool) -> ssl.SSLContext:
    """The context, or ProbeError("prober", "tls", ...): a CA file we cannot read or parse,
    or a host out of descriptors or memory while loading the CA store, is our failure
    before any byte reaches the server, never the server's TLS."""
    try:
        return _context(ca_file, stamp, verify)
    except (OSError, ssl.SSLError, MemoryError) as exc:
        cause = local_cause(exc)
        what = f"the CA file {ca_file}" if ca_file else "the system's CA certificates"
        why = cause or (getattr(exc, "strerror", None) or getattr(exc, "reason", None)
                        or str(exc))
        raise ProbeError(PROBER, "tls", f"cannot load {what}: {why}") from None


def client_context_for(ca_file: str | None) -> ssl.SSLContext:
    """A verifying context for another HTTPS peer of a mailbox (its OAuth2 token endpoint)."""
    stamp = None
    if ca_file:
        with contextlib.suppress(OSError):
            stamp = os.stat(ca_file).st_mtime_ns
    return _built(ca_file, stamp, True)


@functools.lru_cache(maxsize=32)
def _context(ca_file: str | None, stamp: int | None, verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        # explicit opt-in in the config (tls_verify = false)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def peer_facts(sock: socket.socket) -> Facts:
    """The address actually connected to (one of several a name may resolve to)."""
    try:
        return {FIELD_PEER_IP: str(sock.getpeername()[0])}
    except OSError:  # already closed or reset: the address is then unknown, not invented
        return {}


def tls_facts(ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
              now: dt.datetime | None = None) -> Facts:
    """Version, cipher and the leaf certificate of an established TLS session."""
    if ssl_object is None:
        return {}
    facts: Facts = {}
    version = ssl_object.version()
    if version:
        facts[FIELD_TLS_VERSION] = version
    cipher = ssl_object.cipher()
    if cipher:
        facts[FIELD_TLS_CIPHER] = cipher[0]
    parsed = ssl_object.getpeercert()
    known = parsed_certificate_facts(parsed, now) if parsed else None
    if known is not None:
        facts.update(known)
        return facts
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        facts.update(certificate_facts(der, now))
    return facts


# RFC 4514's short names, as cryptography's rfc4514_string() writes them; a name not here
# sends the certificate to the DER reader, so both readers give the same text.
_SHORT_NAMES = {"commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST",
                "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
                "streetAddress": "STREET", "domainComponent": "DC", "userId": "UID"}


def _escape(value: str) -> str:
    """RFC 4514, section 2.4."""
    if not value:
        return ""
    for ch in ("\\", '"', "+", ",", ";", "<", ">"):
        value = value.replace(ch, "\\" + ch)
    value = value.replace("\0", "\\00")
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def parsed_certificate_facts(cert: dict, now: dt.datetime | None = None) -> Facts | None:
    """The same facts from `getpeercert()`'s dict (a verified peer); None when it holds an
    attribute without an RFC 4514 short name or no notAfter."""
    try:
        rdns = []
        for rdn in reversed(cert.get("subject", ())):
            rdns.append("+".join(f"{_SHORT_NAMES[name]}={_escape(value)}"
                                 for name, value in rdn))
        not_after = ssl.cert_time_to_seconds(cert["notAfter"])
    except (KeyError, ValueError, TypeError):
        return None
    now = now or dt.datetime.now(dt.UTC)
    left = not_after - now.timestamp()
    return {FIELD_CERT_SUBJECT: ",".join(rdns),
            FIELD_CERT_EXPIRY_DAYS: round(left / 86400, 4)}


def certificate_facts(der: bytes, now: dt.datetime | None = None) -> Facts:
    """Subject (RFC 4514 text) and days until notAfter (negative once expired)."""
    from cryptography import x509  # only for unverified peers (see the module's docstring)

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return {}  # a certificate we cannot parse: no facts rather than wrong ones
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    return {FIELD_CERT_SUBJECT: cert.subject.rfc4514_string(),
            FIELD_CERT_EXPIRY_DAYS: round(left.total_seconds() / 86400, 4)}
