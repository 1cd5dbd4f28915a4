"""OAuth2 logins on the real stack: Dovecot's oauth2 passdb (and Postfix's SASL through it)
checks each token at the introspection URL of a small authlib-built authorization server on
loopback, which issues the tokens the prober fetches (client credentials, refresh token) or
an operator's token_command prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.measurement import Measurement
from tests.agent_helpers import spool_points, wait_for
from tests.fixtures_mail import run_prober
from tests.localstack.mail import MailStack
from tests.oauth_server import TokenServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oauth_stack() -> Iterator[tuple[MailStack, TokenServer]]:
    stack = MailStack()
    server = TokenServer(stack.cert_file, stack.dir / "tls" / "key.pem")
    stack.oauth2_introspection_url = server.introspection_url
    stack.start()
    server.start()
    os.environ.update(stack.env())
    try:
        yield stack, server
    finally:
        server.stop()
        stack.stop()


def _mailbox(stack: MailStack, user: str, oauth2: str) -> str:
    text = stack.mailbox_toml(user)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("password_env"))
    return text + "\n[mailbox.oauth2]\n" + oauth2 + "\n"


def _config(stack: MailStack, server: TokenServer, tmp: Path, routes: str = "",
            extra: str = "", carol_token: str = "") -> Path:
    env = {"PROBER_TEST_ALICE_SECRET": "alice-client-secret",
           "PROBER_TEST_BOB_REFRESH": server.issue_refresh_token("probe-bob"),
           "PROBER_TEST_BOB_SECRET": "bob-client-secret"}
    os.environ.update(env)
    token_file = tmp / "carol.token"
    token_file.write_text(carol_token)
    ca = f'ca_file = "{stack.cert_file}"\n'
    parts = [f'[vantage]\nname = "oauth"\nstate_dir = "{tmp / "state"}"\n',
             _mailbox(stack, "alice", f'token_url = "{server.token_url}"\n'
                      f'client_id = "probe-alice"\nclient_secret_env = '
                      f'"PROBER_TEST_ALICE_SECRET"\nscope = "mail"\n{ca}'),
             _mailbox(stack, "bob", f'mechanism = "oauthbearer"\n'
                      f'token_url = "{server.token_url}"\nclient_id = "probe-bob"\n'
                      f'client_secret_env = "PROBER_TEST_BOB_SECRET"\n'
                      f'refresh_token_env = "PROBER_TEST_BOB_REFRESH"\n{ca}'),
             _mailbox(stack, "carol", f'token_command = ["cat", "{token_file}"]\n'),
             routes or ('[[route]]\nname = "a-to-b"\nfrom = "alice"\nto = "bob"\n'
                        'direction = "internal"\n[[route]]\nname = "b-to-c"\nfrom = "bob"\n'
                        'to = "carol"\ndirection = "internal"\n'),
             extra]
    path = tmp / "probes.toml"
    path.write_text("\n".join(parts))
    return path


def _carol_token(server: TokenServer) -> str:
    if "probe-carol" not in server.clients:
        server.add_client("probe-carol", "carol-client-secret", "carol@example.test")
    return server.issue_access_token("probe-carol", expires_in=3600)


@pytest.fixture(autouse=True)
def _clients(oauth_stack: tuple[MailStack, TokenServer]) -> None:
    _, server = oauth_stack
    server.expires_in = 3600
    server.add_client("probe-alice", "alice-client-secret", "alice@example.test")
    server.add_client("probe-bob", "bob-client-secret", "bob@example.test")


def test_check_logs_in_with_xoauth2_and_oauthbearer(oauth_stack, tmp_path: Path):
    stack, server = oauth_stack
    before = dict(server.grants_issued)
    cfg = _config(stack, server, tmp_path, carol_token=_carol_token(server))
    r = run_prober("check", "-c", str(cfg), "--no-write", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    print(doc["summary"])
    assert {row["state"] for row in doc["rows"]} == {"OK"}
    assert len([row for row in doc["rows"] if row["check"] in ("smtp", "imap")]) == 6
    grants = {k: v - before.get(k, 0) for k, v in server.grants_issued.items()}
    print("grants", grants)
    # one token per mailbox and process, shared by its SMTP, IMAP, watcher and canary logins
    assert grants == {"client_credentials": 1, "refresh_token": 1}
    log = (stack.dir / "dovecot.log").read_text()
    assert "method=XOAUTH2" in log and "method=OAUTHBEARER" in log
    assert "alice-client-secret" not in r.stdout + r.stderr


def test_token_expiring_mid_run_is_refreshed_with_no_failed_probe(oauth_stack, tmp_path: Path):
    stack, server = oauth_stack
    server.expires_in = 4  # the prober fetches a new one 2 s before the end (half its life)
    before = dict(server.grants_issued)
    cfg = _config(stack, server, tmp_path, carol_token=_carol_token(server),
                  routes='[[route]]\nname = "a-to-b"\nfrom = "alice"\nto = "bob"\n'
                         'direction = "internal"\n', extra="[agent]\ntick_s = 1\n")
    log = (tmp_path / "daemon.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "prober.cli", "-v", "run", "-c", str(cfg)],
                            stdout=log, stderr=log, env=dict(os.environ))
    try:
        wait_for("ten seconds of ticks", lambda: len(
            [p for p in spool_points(tmp_path, "mail_access")
             if p.tags["mailbox"] == "alice@example.test"]) >= 16, 40)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    access = spool_points(tmp_path, "mail_access")
    canaries = spool_points(tmp_path, "mail_roundtrip")
    grants = {k: v - before.get(k, 0) for k, v in server.grants_issued.items()}
    print(f"{len(access)} access points, {len(canaries)} canary points, grants {grants}")
    failed = [(p.tags["mailbox"], p.fields.get("error")) for p in access
              if p.tags["outcome"] != "ok"]
    assert failed == []
    assert not [p for p in canaries if p.fields["outcome"] in ("send_failed", "send_uncertain")]
    # the tokens lived 4 s over a run of 8 s or more: each mailbox fetched again
    assert grants["client_credentials"] >= 3 and grants["refresh_token"] >= 3


def test_google_service_account_key(oauth_stack, tmp_path: Path):
    """google-auth signs the assertion with the key; the token is for the mailbox's user."""
    stack, server = oauth_stack
    key = server.add_service_account("probe@prober-test.iam.example", "carol@example.test")
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(key))
    key_file.chmod(0o600)
    before = dict(server.grants_issued)
    cfg = _config(stack, server, tmp_path, carol_token="unused")
    text = cfg.read_text().replace(
        f'token_command = ["cat", "{tmp_path / "carol.token"}"]\n',
        f'service_account_file = "{key_file}"\nca_file = "{stack.cert_file}"\n')
    cfg.write_text(text)
    r = run_prober("check", "-c", str(cfg), "--no-write", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {(row["check"], row["target"]): row for row in json.loads(r.stdout)["rows"]}
    assert rows[("imap", "carol@example.test")]["state"] == "OK"
    assert rows[("smtp", "carol@example.test")]["state"] == "OK"
    grants = {k: v - before.get(k, 0) for k, v in server.grants_issued.items()}
    assert grants.get("urn:ietf:params:oauth:grant-type:jwt-bearer") == 1
    assert "PRIVATE KEY" not in r.stdout + r.stderr


def test_revoked_token_gives_auth_errors_naming_the_mailbox(oauth_stack, tmp_path: Path):
    stack, server = oauth_stack
    revoked = _carol_token(server)
    server.by_access[revoked].revoked = True
    server.revoke_all("probe-bob")  # bob's refresh token: the token endpoint refuses
    cfg = _config(stack, server, tmp_path, carol_token=revoked)
    server.revoke_all("probe-bob")
    r = run_prober("check", "-c", str(cfg), "--no-write", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    rows = {(row["check"], row["target"]): row for row in json.loads(r.stdout)["rows"]}
    for proto in ("smtp", "imap"):
        print(proto, rows[(proto, "carol@example.test")]["detail"])
        print(proto, rows[(proto, "bob@example.test")]["detail"])
        assert rows[(proto, "alice@example.test")]["state"] == "OK"
    assert rows[("smtp", "carol@example.test")]["detail"].startswith("auth: 535 5.7.8")
    assert rows[("imap", "carol@example.test")]["detail"].startswith(
        "auth: NO [AUTHENTICATIONFAILED]")
    for proto in ("smtp", "imap"):
        assert rows[(proto, "bob@example.test")]["detail"] == (
            "token: auth: token endpoint refused: invalid_grant")
    points = [Measurement.from_line(line) for line in json.loads(r.stdout)["measurements"]]
    assert {p.fields["error_class"] for p in points if p.name == "mail_access"
            and p.tags["outcome"] == "fail"} == {"auth"}
    assert revoked not in r.stdout + r.stderr

