"""Access checks try each address of the server's host name: a dead member of a pool is a
failure of that address, visible in the points and in `prober check`, while the others
are ok. The name resolves through the system resolver (/etc/hosts) to two loopback
addresses, of which only 127.0.0.1 has the servers listening."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prober.measurement import Measurement
from tests.fixtures_mail import run_prober
from tests.hosts_file import hosts_name
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration


def _config(stack: MailStack, tmp_path: Path, host: str, family: str | None = None) -> Path:
    text = stack.probes_toml().replace(f'host = "{stack.host}"', f'host = "{host}"')
    if family:
        text = text.replace('tls = "starttls"', f'tls = "starttls"\nfamily = "{family}"')
    path = tmp_path / "probes.toml"
    path.write_text(text)
    return path


def _access(stdout: str) -> list[Measurement]:
    return [m for m in map(Measurement.from_line, json.loads(stdout)["measurements"])
            if m.name == "mail_access"]


def test_dead_address_of_two_is_reported_and_the_other_is_ok(mail_stack: MailStack,
                                                            tmp_path: Path):
    with hosts_name(["127.0.0.1", "127.0.0.2"]) as name:
        cfg = _config(mail_stack, tmp_path, name)
        r = run_prober("check", "-c", str(cfg), "--no-write", "--json")
        table = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 2, r.stdout + r.stderr
    points = _access(r.stdout)
    # three mailboxes x two protocols x two addresses
    assert len(points) == 12
    by_ip = {ip: [p for p in points if p.fields["peer_ip"] == ip]
             for ip in ("127.0.0.1", "127.0.0.2")}
    assert all(p.tags["outcome"] == "ok" for p in by_ip["127.0.0.1"])
    assert all(p.tags["outcome"] == "fail" and p.fields["error_class"] == "refused"
               and str(p.fields["error"]).startswith("connect: refused")
               for p in by_ip["127.0.0.2"])
    assert all(p.tags["family"] == "ipv4" and p.fields["addresses"] == 2 for p in points)
    # the points of one check do not overwrite each other in InfluxDB (same series)
    keys = {(tuple(sorted(p.tags.items())), p.time_ns) for p in points}
    assert len(keys) == len(points)

    doc = json.loads(r.stdout)
    rows = {(row["check"], row["target"]): row for row in doc["rows"]}
    assert rows[("smtp", "alice@example.test [127.0.0.2]")]["state"] == "CRITICAL"
    assert rows[("smtp", "alice@example.test [127.0.0.1]")]["state"] == "OK"
    assert rows[("imap", "bob@example.test [127.0.0.2]")]["state"] == "CRITICAL"
    assert rows[("imap", "bob@example.test [127.0.0.1]")]["state"] == "OK"
    # the canary connects as a client does (first address that answers): it arrives
    assert [row["state"] for row in doc["rows"] if row["check"] == "canary"] == ["OK"]
    first = table.stdout.splitlines()[0]
    print(first[:200])
    assert first.startswith("PROBER CRITICAL - smtp alice@example.test [127.0.0.2]: "
                            "connect: refused"), first
    assert "smtp_alice@example.test[127.0.0.1]=" in first


def test_family_selects_the_addresses_probed(mail_stack: MailStack, tmp_path: Path):
    with hosts_name(["127.0.0.1", "::1"]) as name:
        r4 = run_prober("check", "-c", str(_config(mail_stack, tmp_path, name, "ipv4")),
                        "--no-write", "--json")
        r6 = run_prober("check", "-c", str(_config(mail_stack, tmp_path, name, "ipv6")),
                        "--no-write", "--json")
    # ipv4: only 127.0.0.1, where the servers listen
    assert r4.returncode == 0, r4.stdout + r4.stderr
    v4 = _access(r4.stdout)
    assert {(p.tags["family"], p.fields["peer_ip"], p.fields["addresses"]) for p in v4} == {
        ("ipv4", "127.0.0.1", 1)}
    # ipv6: only ::1, where nothing listens; the canary cannot be sent either
    assert r6.returncode == 2, r6.stdout + r6.stderr
    v6 = _access(r6.stdout)
    assert len(v6) == 6
    assert {(p.tags["family"], p.tags["outcome"], p.fields["peer_ip"]) for p in v6} == {
        ("ipv6", "fail", "::1")}


def test_a_name_without_an_address_of_the_family_is_a_dns_failure(mail_stack: MailStack,
                                                                 tmp_path: Path):
    with hosts_name(["127.0.0.1"]) as name:
        r = run_prober("check", "-c", str(_config(mail_stack, tmp_path, name, "ipv6")),
                       "--no-write", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    v6 = _access(r.stdout)
    assert len(v6) == 6
    for p in v6:
        assert p.tags["outcome"] == "fail" and p.tags["family"] == "ipv6"
        assert p.fields["error_class"] == "dns" and "peer_ip" not in p.fields
