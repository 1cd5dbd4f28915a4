"""`prober check` as Nagios runs it: exit codes, the first line, the reasons."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest

from prober.config import load
from prober.probes.plan import context
from prober.probes.roundtrip import CanaryTarget, send_canary
from tests.agent_helpers import own_state_dir
from tests.canary_helpers import TEST_KEY
from tests.faults import CuttingProxy
from tests.fixtures_mail import run_prober, write_config
from tests.localstack.influx import InfluxDB1
from tests.localstack.mail import HOLD_HEADER, MailStack
from tests.localstack.ports import free_port

pytestmark = pytest.mark.integration


def test_check_ok_prints_summary_perfdata_and_table(mail_stack: MailStack, tmp_path: Path):
    cfg = write_config(mail_stack, tmp_path, routes=[("alice-to-bob", "alice", "bob"),
                                                     ("bob-to-carol", "bob", "carol")])
    r = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 0, r.stdout + r.stderr
    first, *table = r.stdout.splitlines()
    assert first.startswith("PROBER OK - ")
    assert "delivery_alice-to-bob=" in first and ";60;3600" in first
    assert any(line.startswith("canary") and "delivered" in line for line in table)
    assert sum(line.startswith(("smtp", "imap")) for line in table) == 6
    assert "Traceback" not in r.stderr


def test_check_json_and_route_filter(mail_stack: MailStack, tmp_path: Path):
    cfg = write_config(mail_stack, tmp_path, routes=[("alice-to-bob", "alice", "bob"),
                                                     ("bob-to-carol", "bob", "carol")])
    r = run_prober("check", "-c", str(cfg), "--no-write", "--json", "--route", "bob-to-carol")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["state"] == "OK" and doc["exit_code"] == 0
    canaries = [row for row in doc["rows"] if row["check"] == "canary"]
    assert [c["target"].split()[0] for c in canaries] == ["bob-to-carol"]
    assert canaries[0]["delivery_s"] > 0
    assert any(line.startswith("mail_roundtrip,") for line in doc["measurements"])
    r = run_prober("check", "-c", str(cfg), "--no-write", "--route", "nope")
    assert r.returncode == 3 and "no route named nope" in r.stdout


def test_dovecot_down_is_critical_and_names_imap(dovecot_down: MailStack, tmp_path: Path):
    cfg = write_config(dovecot_down, tmp_path)
    r = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith("PROBER CRITICAL - ")
    imap_rows = [line for line in r.stdout.splitlines() if line.startswith("imap ")]
    assert imap_rows and all("CRITICAL" in line and "connect: refused" in line
                             for line in imap_rows)
    assert "Traceback" not in r.stderr


def test_wrong_password_names_mailbox_and_auth(mail_stack: MailStack, tmp_path: Path):
    cfg = write_config(mail_stack, tmp_path)
    r = run_prober("check", "-c", str(cfg), "--no-write", env={"PROBER_TEST_ALICE": "wrong"})
    assert r.returncode == 2, r.stdout + r.stderr
    rows = r.stdout.splitlines()
    assert "alice@example.test" in rows[0] and "auth" in rows[0]
    smtp = next(line for line in rows if line.startswith("smtp ") and "alice" in line)
    imap = next(line for line in rows if line.startswith("imap ") and "alice" in line)
    assert "CRITICAL" in smtp and "auth: 535" in smtp
    assert "CRITICAL" in imap and "auth: NO [AUTHENTICATIONFAILED]" in imap
    assert "wrong" not in r.stdout.replace("wrong password", "")  # the secret is not echoed
    bob = next(line for line in rows if line.startswith("imap ") and "bob" in line)
    assert " OK " in bob


def test_untrusted_certificate_and_refused_port(mail_stack: MailStack, tmp_path: Path):
    cfg = tmp_path / "probes.toml"
    cfg.write_text(mail_stack.probes_toml().replace(f'ca_file = "{mail_stack.cert_file}"\n', ""))
    r = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 2
    alice = [line for line in r.stdout.splitlines() if "alice@example.test" in line]
    assert any(line.startswith("smtp") and "tls: certificate not trusted" in line
               for line in alice)
    assert any(line.startswith("imap") and "tls: certificate not trusted" in line
               for line in alice)
    cfg.write_text(mail_stack.probes_toml().replace(f"port = {mail_stack.imap_port}",
                                                    f"port = {free_port()}"))
    r = run_prober("check", "-c", str(cfg), "--no-write")
    assert r.returncode == 2
    assert any(line.startswith("imap") and "connect: refused" in line
               for line in r.stdout.splitlines() if "bob@example.test" in line)
    assert "IMAP watcher down: connect: refused" in r.stdout


def test_malformed_config_exits_3_naming_file_and_key(tmp_path: Path):
    cfg = tmp_path / "probes.toml"
    cfg.write_text('[vantage]\nname = "v"\n[[mailbox]]\nname = "a"\naddress = "a@x.test"\n'
                   'password_env = "X"\n[mailbox.smtp]\nhost = "h"\nport = "587"\n'
                   'tls = "starttls"\n[mailbox.imap]\nhost = "h"\ntls = "tls"\n')
    r = run_prober("check", "-c", str(cfg), env={"X": "x"})
    assert r.returncode == 3
    assert r.stdout.startswith("PROBER UNKNOWN - ")
    assert f"{cfg}: mailbox[0].smtp.port: must be an integer" in r.stdout
    cfg.write_text('[vantage]\nname = "v"\n\n[[mailbox]\n')
    r = run_prober("check", "-c", str(cfg))
    assert r.returncode == 3 and f"{cfg}:4: TOML syntax error" in r.stdout
    r = run_prober("config", "check", "-c", str(tmp_path / "missing.toml"))
    assert r.returncode == 3 and "missing.toml" in r.stderr and "cannot read" in r.stderr


def test_config_check_masks_secrets(mail_stack: MailStack, tmp_path: Path):
    cfg = write_config(mail_stack, tmp_path)
    r = run_prober("config", "check", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    for user in mail_stack.users:
        assert user.password not in r.stdout
    assert 'password = "****" # from env:PROBER_TEST_ALICE' in r.stdout


def test_connection_dropped_mid_data_is_send_uncertain(mail_stack: MailStack, tmp_path: Path):
    with CuttingProxy(mail_stack.submission_port) as proxy:
        text = mail_stack.probes_toml().replace(f"port = {mail_stack.submission_port}",
                                                f"port = {proxy.port}")
        (tmp_path / "probes.toml").write_text(text)
        config = load(tmp_path / "probes.toml")
        route = config.routes[0]
        target = dataclasses.replace(CanaryTarget.of(config, route),
                                     headers=(("X-Padding", "x" * 6000),))
        sent = asyncio.run(send_canary(context(config), target, 1, key=TEST_KEY))
    assert proxy.cuts == 1
    assert not sent.submission.ok
    assert sent.submission.uncertain
    assert sent.initial_outcome == "send_uncertain"
    assert sent.submission.error is not None and sent.submission.error.step == "data"
    assert "smtp_connect_s" not in sent.submission.phases or \
        sent.submission.phases["auth_s"] >= 0


def test_check_writes_to_influxdb_or_keeps_points_spooled(mail_stack: MailStack,
                                                          influxdb1: InfluxDB1, influx_db: str,
                                                          tmp_path: Path):
    def config(url: str) -> Path:
        text = mail_stack.probes_toml(vantage="check-influx", extra=(
            f'[influx]\napi = "v1"\nurl = "{url}"\ndatabase = "{influx_db}"\n'))
        text = own_state_dir(text, mail_stack, tmp_path)
        path = tmp_path / "probes.toml"
        path.write_text(text)
        return path

    def count(measurement: str) -> int:
        series = influxdb1.query(f"SELECT count(canary) FROM {measurement}"
                                 if measurement == "mail_roundtrip" else
                                 f"SELECT count(total_s) FROM {measurement}",
                                 db=influx_db)["results"][0].get("series") or []
        return int(series[0]["values"][0][1]) if series else 0

    # InfluxDB unreachable: the verdict stands, the points wait in the spool
    r = run_prober("check", "-c", str(config(f"http://127.0.0.1:{free_port()}")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "measurements: 7 points spooled, 7 waiting in" in r.stdout
    assert "refused" in r.stdout or "unreachable" in r.stdout
    # reachable again: this run's points and the earlier ones arrive
    r = run_prober("check", "-c", str(config(influxdb1.url)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "measurements: 7 points delivered to InfluxDB" in r.stdout
    assert "with 7 points spooled earlier" in r.stdout
    assert count("mail_access") == 12 and count("mail_roundtrip") == 2


def test_check_sends_the_configured_headers_and_counts_seq_like_the_daemon(
        mail_stack: MailStack, tmp_path: Path):
    # the hold header comes from [canary] headers: if check dropped it, the canary would
    # be delivered; held by Postfix it is not, and stays in the queue to be looked at
    text = mail_stack.probes_toml(routes=[("alice-to-bob", "alice", "bob")],
                                  extra=f'[canary]\nheaders = {{ "{HOLD_HEADER}" = "yes" }}\n'
                                        '[check]\nwait_s = 2\n')
    text = text.replace('direction = "internal"\n',
                        'direction = "internal"\nheaders = { "X-Route-Tag" = "r1" }\n')
    cfg = tmp_path / "probes.toml"
    cfg.write_text(own_state_dir(text, mail_stack, tmp_path))
    before = set(mail_stack.held())
    try:
        first = run_prober("check", "-c", str(cfg), "--json")
        second = run_prober("check", "-c", str(cfg), "--json")
        held = [q for q in mail_stack.held() if q not in before]
        assert len(held) == 2, first.stdout + first.stderr
        queued = [subprocess.run(["postcat", "-c", str(mail_stack.postfix_dir), "-h", "-q", q],
                                 capture_output=True, text=True).stdout for q in held]
    finally:
        mail_stack.purge_held()
    assert all("X-Route-Tag: r1" in h for h in queued), queued
    seqs = []
    for r in (first, second):
        assert r.returncode == 2, r.stdout + r.stderr
        (line,) = [m for m in json.loads(r.stdout)["measurements"]
                   if m.startswith("mail_roundtrip,")]
        seqs.append(int(line.split("seq=")[1].split("i")[0]))
    assert seqs == [1, 2]  # the ledger's counter, shared with `prober run`, not the clock


def test_check_answers_within_its_timeout_with_a_canary_held(mail_stack: MailStack,
                                                             tmp_path: Path):
    # wait_s = 120 (the default) is longer than a monitoring system waits: --timeout wins,
    # and the held canary is prober's CRITICAL, not the monitor's timeout
    text = mail_stack.probes_toml(routes=[("alice-to-bob", "alice", "bob")],
                                  extra=f'[canary]\nheaders = {{ "{HOLD_HEADER}" = "yes" }}\n')
    cfg = tmp_path / "probes.toml"
    cfg.write_text(own_state_dir(text, mail_stack, tmp_path))
    t0 = time.monotonic()
    try:
        r = run_prober("check", "-c", str(cfg), "--timeout", "12")
    finally:
        mail_stack.purge_held()
    took = time.monotonic() - t0
    assert took < 12, took
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith("PROBER CRITICAL - ")
    assert "(cut from wait_s = 120 by --timeout)" in r.stdout


def test_check_reports_forged_canaries_without_charging_them(mail_stack: MailStack,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    """A message claiming to be this vantage's canary with a MAC of another key reaches
    bob while the check watches: the check says so in its text, perfdata and JSON, and
    its state is what the provider did (the real canary arrived: OK)."""
    from datetime import UTC, datetime

    from click.testing import CliRunner

    import prober.commands.check as checking
    from prober.cli import main
    from prober.probes.canary import build_message, new_canary_id
    from tests.canary_helpers import OTHER_KEY

    text = mail_stack.probes_toml(routes=[("alice-to-bob", "alice", "bob")])
    cfg = tmp_path / "probes.toml"
    cfg.write_text(own_state_dir(text, mail_stack, tmp_path))
    bob = mail_stack.user("bob").address
    real_send = checking.send_canary
    tokens: list[bytes] = []

    async def forge_then_send(*args: object, **kwargs: object) -> object:
        # the watcher is ready by now: the forgery lands just before the real canary
        fake = new_canary_id("local", "alice-to-bob", 7, key=OTHER_KEY, recipient=bob)
        tokens.append(fake.id.encode())  # the header may be folded: the id is not
        msg = build_message(fake, "alice@example.test", bob, datetime.now(UTC))
        mail_stack.deliver_local("bob", msg.as_bytes())
        return await real_send(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(checking, "send_canary", forge_then_send)
    r = CliRunner().invoke(main, ["check", "-c", str(cfg), "--no-write"])
    first = next(line for line in r.output.splitlines() if line.startswith("PROBER"))
    print(r.exit_code, first)
    print(r.output.splitlines()[-1])
    assert r.exit_code == 0, r.output
    assert first.startswith("PROBER OK - 1 forged canary seen (claimed to be this vantage's, "
                            "MAC wrong or missing: not counted, left in place); ")
    assert "1 canary delivered" in first and " forged_canaries=1;;" in first
    assert r.output.splitlines()[-1].startswith("1 forged canary seen")
    j = CliRunner().invoke(main, ["check", "-c", str(cfg), "--no-write", "--json"])
    assert json.loads(j.output[j.output.index("{"):])["forged_canaries"] == 1
    # the forgeries stay where they are: never removed
    left = [p for sub in ("new", "cur") for p in (mail_stack.maildir("bob") / sub).iterdir()
            if any(t in p.read_bytes() for t in tokens)]
    assert len(left) == len(tokens) == 2
    for p in left:
        p.unlink()
