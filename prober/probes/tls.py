"""TLS for the mail probes: verified contexts, and the facts of the connection made.

The facts (version, cipher, the leaf certificate's subject and days to expiry, the peer's
address) are recorded on every mail connection, because an expiring certificate or a
front end that negotiates an old protocol is a fault some customers hit before the
provider notices. The certificate is read from its DER bytes with `cryptography`, so the
facts are there with `tls_verify = false` too (the standard library's parsed form is
empty for an unverified peer).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl

from cryptography import x509

from prober.config.mail import Endpoint
from prober.schema import (
    FIELD_CERT_EXPIRY_DAYS,
    FIELD_CERT_SUBJECT,
    FIELD_PEER_IP,
    FIELD_TLS_CIPHER,
    FIELD_TLS_VERSION,
)

Facts = dict[str, str | float]


def client_context(endpoint: Endpoint) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=endpoint.ca_file)
    if not endpoint.tls_verify:
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
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        facts.update(certificate_facts(der, now))
    return facts


def certificate_facts(der: bytes, now: dt.datetime | None = None) -> Facts:
    """Subject (RFC 4514 text) and days until notAfter (negative once expired)."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return {}  # a certificate we cannot parse: no facts rather than wrong ones
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    return {FIELD_CERT_SUBJECT: cert.subject.rfc4514_string(),
            FIELD_CERT_EXPIRY_DAYS: round(left.total_seconds() / 86400, 4)}
