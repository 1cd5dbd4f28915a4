"""The facts of every mail connection (TLS version, cipher, certificate, peer address) on
the real stack, and `prober check`'s warning for a certificate about to expire."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.measurement import Measurement
from tests.fixtures_mail import run_prober, write_config
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration

FACTS = ("tls_version", "tls_cipher", "cert_expiry_days", "cert_subject", "peer_ip")


def _points(stdout: str) -> list[Measurement]:
    return [Measurement.from_line(line) for line in json.loads(stdout)["measurements"]]


@pytest.mark.parametrize("tls", ["starttls", "tls"])
def test_every_mail_connection_carries_its_tls_facts(mail_stack: MailStack, tmp_path: Path,
                                                     tls: str):
    cfg = write_config(mail_stack, tmp_path, smtp_tls=tls, imap_tls=tls)
    r = run_prober("check", "-c", str(cfg), "--no-write", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    points = _points(r.stdout)
    access = [p for p in points if p.name == "mail_access"]
    assert {p.tags["protocol"] for p in access} == {"smtp", "imap"}
    for p in access:
        f = p.fields
        assert f["tls_version"] in ("TLSv1.2", "TLSv1.3"), (p.tags, f)
        assert isinstance(f["tls_cipher"], str) and f["tls_cipher"]
        assert f["cert_subject"] == "CN=mail.example.test"
        # the stack's certificate is made for 30 days when the session's stack starts
        assert 29 < float(f["cert_expiry_days"]) <= 30  # type: ignore[arg-type]
        assert f["peer_ip"] == "127.0.0.1"
    canary = next(p for p in points if p.name == "mail_roundtrip")
    assert canary.fields["smtp_cert_subject"] == "CN=mail.example.test"
    assert canary.fields["smtp_peer_ip"] == "127.0.0.1"
    assert canary.fields["smtp_tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert not any(name in canary.fields for name in FACTS)  # prefixed there, not bare


@pytest.fixture(scope="module")
def expiring_stack() -> Iterator[MailStack]:
    """A provider whose certificate (SMTP and IMAP) runs out in 3 days."""
    with MailStack(cert_days=3) as stack:
        os.environ.update(stack.env())
        yield stack


def test_certificate_expiring_in_3_days_makes_check_warn(expiring_stack: MailStack,
                                                         tmp_path: Path):
    cfg = write_config(expiring_stack, tmp_path)
    r = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 1, r.stdout + r.stderr
    first, *table = r.stdout.splitlines()
    print(first)
    assert first.startswith("PROBER WARNING - ")
    # the summary names the mailbox, the protocol and the expiry
    assert "smtp alice@example.test: certificate CN=mail.example.test expires in 3.0 days" \
        in first or "smtp alice@example.test: certificate CN=mail.example.test expires in 2.9" \
        in first, first
    warned = [line for line in table if " WARNING " in line]
    assert {line.split()[0] for line in warned} == {"smtp", "imap"}
    assert len(warned) == 6  # three mailboxes, two protocols: one certificate
    assert all("warning at 14" in line for line in warned)
    canary = next(line for line in table if line.startswith("canary"))
    assert " OK " in canary  # the mail itself flows: only the certificate is at fault
    assert "Traceback" not in r.stderr

    # below the configured threshold: no warning
    cfg.write_text(cfg.read_text() + "\n[check]\ncert_warning_days = 2\n")
    r = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 0, r.stdout + r.stderr
