"""The §4/§5 probes through both drivers: `prober run` runs the filter tests and the
blocklist and abuse@ checks from the plan and spools their points; `prober check` shows
the blocklist and abuse@ rows (the filter tests wait for a filter, a daemon's job)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_helpers import own_state_dir, spool_points
from tests.localstack.dnsbl import Dnsbl
from tests.localstack.filter import ContentFilter, Policy
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[MailStack, ContentFilter, Dnsbl]]:
    with MailStack(content_filter=True) as st, \
            ContentFilter(st.reinject_port, port=st.filter_port,
                          policy=Policy(spam="junk", virus="strip")) as f, \
            Dnsbl("bl.test", listed=["127.0.0.2"]) as zone:
        yield st, f, zone


def _config(st: MailStack, zone: Dnsbl, tmp: Path, abuse: str) -> Path:
    extra = f"""
[agent]
tick_s = 2

[[filter]]
name = "spam-in"
kind = "spam"
from = "alice"
to = "bob"
expect = "junk"
wait_s = 10

[[filter]]
name = "av-in"
kind = "virus"
from = "alice"
to = "carol"
expect = "strip"
variants = ["exe", "zip"]
wait_s = 10

[antispam]
blocklist_zones = ["bl.test"]
blocklist_subjects = ["127.0.0.2", "127.0.0.3"]
nameserver = "127.0.0.1:{zone.port}"
abuse_address = "{abuse}"
abuse_host = "{st.host}"
abuse_port = {st.smtp_port}
"""
    path = tmp / "probes.toml"
    path.write_text(own_state_dir(st.probes_toml(routes=[("a-b", "alice", "bob")],
                                                 extra=extra), st, tmp))
    return path


def test_the_daemon_runs_them_from_the_plan(world: tuple[MailStack, ContentFilter, Dnsbl],
                                            tmp_path: Path) -> None:
    st, _, zone = world
    config = _config(st, zone, tmp_path, f"abuse@{st.domain}")
    proc = subprocess.run([sys.executable, "-m", "prober.cli", "run", "-c", str(config),
                           "--ticks", "2"], env={**os.environ, **st.env()},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    filters = {(p.tags["route"], p.tags["variant"]): p for p in
               spool_points(tmp_path, "mail_filter")}
    # once each (interval_s is an hour), not once a tick
    assert sorted(filters) == [("av-in", "exe"), ("av-in", "zip"), ("spam-in", "gtube")]
    assert filters[("spam-in", "gtube")].fields["outcome"] == "junk"
    assert all(p.fields["as_expected"] is True for p in filters.values())
    listed = {p.tags["subject"]: p.fields["listed"]
              for p in spool_points(tmp_path, "mail_blocklist")}
    assert listed == {"127.0.0.2": True, "127.0.0.3": False}
    (abuse,) = spool_points(tmp_path, "mail_abuse")
    assert abuse.tags["outcome"] == "ok"
    assert "probe kind=blocklist" in proc.stderr  # the listing is logged as a warning


def test_check_shows_blocklist_and_abuse_rows(world: tuple[MailStack, ContentFilter, Dnsbl],
                                             tmp_path: Path) -> None:
    st, _, zone = world
    config = _config(st, zone, tmp_path, st.refused_address)
    proc = subprocess.run([sys.executable, "-m", "prober.cli", "check", "-c", str(config)],
                          env={**os.environ, **st.env()}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout  # WARNING: a listing and a refused abuse@
    first = proc.stdout.splitlines()[0]
    assert first.startswith("PROBER WARNING")
    assert "127.0.0.2 on bl.test: listed (127.0.0.2)" in first
    assert f"abuse {st.refused_address}: rcpt: protocol: 554" in proc.stdout
    assert "mail_filter" not in proc.stdout
