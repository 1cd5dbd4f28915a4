"""`prober run` with `[prometheus] listen`: curl of /metrics gives the newest figures of
every series, in text that Prometheus's own parser reads, while the spool keeps them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.agent_helpers import own_state_dir, spool_points, wait_for
from tests.localstack.mail import MailStack
from tests.localstack.ports import free_port

pytestmark = pytest.mark.integration


def _curl(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", "-D", "-", url],
                          capture_output=True, text=True, timeout=10)


def test_curl_of_metrics_parses_with_prometheus_client(mail_stack: MailStack, tmp_path: Path):
    port = free_port()
    text = mail_stack.probes_toml(vantage="prom", routes=[("a-to-b", "alice", "bob")],
                                  extra=f'[agent]\ntick_s = 2\n[prometheus]\n'
                                        f'listen = "127.0.0.1:{port}"\n')
    config = tmp_path / "probes.toml"
    config.write_text(own_state_dir(text, mail_stack, tmp_path))
    log = (tmp_path / "daemon.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "prober.cli", "-v", "run", "-c", str(config)],
                            stdout=log, stderr=log, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        def delivered() -> bool:
            r = _curl(url)
            return r.returncode == 0 and 'outcome="delivered"} 1' in r.stdout

        wait_for("a delivered canary on /metrics", delivered, 60)
        r = _curl(url)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    head, body = r.stdout.split("\n\n", 1)  # text mode: CRLF read as LF
    assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head
    families = {f.name: f for f in text_string_to_metric_families(body)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    print(f"{len(families)} families, {len(samples)} samples")
    assert families["prober_mail_access_success"].type == "gauge"
    access = {dict(lab)["mailbox"] + "/" + dict(lab)["protocol"]: v
              for (n, lab), v in samples.items() if n == "prober_mail_access_success"}
    assert access == {f"{u}@example.test/{p}": 1.0 for u in ("alice", "bob", "carol")
                      for p in ("smtp", "imap")}
    delivery = [v for (n, lab), v in samples.items()
                if n == "prober_mail_roundtrip_delivery_seconds" and ("route", "a-to-b") in lab]
    assert len(delivery) == 1 and 0 < delivery[0] < 60
    assert samples[("prober_watchers_up", (("vantage", "prom"),))] == 1
    assert families["prober_missed_ticks"].type == "counter"
    cert = [v for (n, _), v in samples.items() if n == "prober_mail_access_cert_expiry_seconds"]
    assert cert and all(29 * 86400 < v <= 30 * 86400 for v in cert)
    # the spool is still the durable path: every point shown is in it
    assert len(spool_points(tmp_path, "mail_roundtrip")) >= 1
    assert len(spool_points(tmp_path, "mail_access")) >= 6
    assert "prometheus: serving /metrics" in (tmp_path / "daemon.log").read_text()
