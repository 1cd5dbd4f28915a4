"""Certificate facts from DER bytes, and the check's verdict on an expiring certificate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from prober.commands.check import CRITICAL, OK, WARNING, Row, cert_verdict
from prober.measurement import Measurement
from prober.probes.tls import certificate_facts, parsed_certificate_facts, tls_facts

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def der_cert(not_after: dt.datetime, cn: str = "mail.example.test") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc.")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - dt.timedelta(days=30)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


def test_expiry_in_days_as_float_and_subject_as_rfc4514() -> None:
    facts = certificate_facts(der_cert(NOW + dt.timedelta(days=3, hours=12)), NOW)
    assert facts["cert_expiry_days"] == 3.5
    assert facts["cert_subject"] == "O=Example\\, Inc.,CN=mail.example.test"


def test_expired_certificate_gives_negative_days() -> None:
    facts = certificate_facts(der_cert(NOW - dt.timedelta(hours=6)), NOW)
    assert facts["cert_expiry_days"] == -0.25


def test_unparseable_certificate_gives_no_facts() -> None:
    assert certificate_facts(b"\x30\x03not a certificate", NOW) == {}


def test_no_tls_no_facts() -> None:
    assert tls_facts(None) == {}


def point(days: float | None) -> Measurement:
    fields = {"total_s": 0.1} if days is None else {
        "total_s": 0.1, "cert_expiry_days": days, "cert_subject": "CN=mail.example.test"}
    return Measurement("mail_access", {"vantage": "v", "mailbox": "a@example.test",
                                       "protocol": "imap", "outcome": "ok"},
                       fields, int(NOW.timestamp() * 1e9))


def row() -> Row:
    return Row("imap", "a@example.test", OK, {}, "ok")


@pytest.mark.parametrize(("days", "state", "detail"), [
    (None, OK, "ok"),
    (30.0, OK, "ok"),
    (14.01, OK, "ok"),
    (14.0, WARNING, "certificate CN=mail.example.test expires in 14.0 days "
                    "(2026-12-14 12:00 UTC, warning at 14)"),
    (3.0, WARNING, "certificate CN=mail.example.test expires in 3.0 days "
                   "(2026-12-03 12:00 UTC, warning at 14)"),
    (-1.5, CRITICAL, "certificate CN=mail.example.test expired 1.5 days ago "
                     "(2026-11-29 00:00 UTC)"),
])
def test_cert_verdict(days: float | None, state: int, detail: str) -> None:
    out = cert_verdict(row(), point(days), 14)
    assert (out.state, out.detail) == (state, detail)


def _stdlib_form(der: bytes, tmp_path: Path) -> dict:
    """What getpeercert() returns for a verified peer with this certificate."""
    pem = tmp_path / "cert.pem"
    pem.write_text(ssl.DER_cert_to_PEM_cert(der))
    return ssl._ssl._test_decode_cert(str(pem))  # type: ignore[attr-defined]


@pytest.mark.parametrize("cn", ["mail.example.test", "a,b+c;d<e>f\"g\\h", "#lead", " lead",
                                "trail ", " ", "Ünïcode"])
def test_verified_and_unverified_readers_agree(cn: str, tmp_path: Path) -> None:
    der = der_cert(NOW + dt.timedelta(days=40, hours=3), cn)
    assert parsed_certificate_facts(_stdlib_form(der, tmp_path), NOW) == \
        certificate_facts(der, NOW)


def test_an_attribute_without_a_short_name_goes_to_the_der_reader(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x"),
                      x509.NameAttribute(NameOID.EMAIL_ADDRESS, "pm@example.test")])
    der = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(key.public_key()).serial_number(1)
           .not_valid_before(NOW - dt.timedelta(days=1))
           .not_valid_after(NOW + dt.timedelta(days=1)).sign(key, hashes.SHA256())
           .public_bytes(Encoding.DER))
    assert parsed_certificate_facts(_stdlib_form(der, tmp_path), NOW) is None
    subject = certificate_facts(der, NOW)["cert_subject"]
    assert subject == "1.2.840.113549.1.9.1=pm@example.test,CN=x"


def test_a_verified_connection_does_not_import_cryptography() -> None:
    code = ("import sys, prober.probes.imap_session, prober.probes.smtp;"
            "print('cryptography' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_one_context_per_ca_file_and_mode_reloaded_when_the_file_changes(
        tmp_path: Path) -> None:
    from prober.config.mail import Endpoint
    from prober.probes.tls import client_context

    ca = tmp_path / "ca.pem"
    ca.write_text(ssl.DER_cert_to_PEM_cert(der_cert(NOW + dt.timedelta(days=9))))
    ep = Endpoint(host="mail.example.test", port=993, tls="tls", ca_file=str(ca))
    first = client_context(ep)
    assert client_context(ep) is first
    unverified = client_context(dataclasses.replace(ep, tls_verify=False))
    assert unverified is not first and unverified.verify_mode == ssl.CERT_NONE
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    ca.write_text(ssl.DER_cert_to_PEM_cert(der_cert(NOW + dt.timedelta(days=99))))
    os.utime(ca, ns=(1, 1))  # a new file: a new context
    assert client_context(ep) is not first
