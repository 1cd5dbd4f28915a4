"""The daemon's seams without servers: the plan, the guarded task boundary, reloads, exit 3."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from prober.agent.daemon import Agent
from prober.agent.ledger import LedgerError
from prober.cli import main
from prober.config import Config, load
from prober.probes.access import imap_access, smtp_access
from prober.probes.plan import plan

TOML = """
[vantage]
name = "unit"
state_dir = "{state}"

[[mailbox]]
name = "a"
address = "a@example.test"
password_env = "PROBER_UNIT_PW"
allow_plaintext = true
[mailbox.smtp]
host = "127.0.0.1"
port = 9
tls = "none"
[mailbox.imap]
host = "127.0.0.1"
port = 9
tls = "none"

[[mailbox]]
name = "b"
address = "b@example.test"
password_env = "PROBER_UNIT_PW"
allow_plaintext = true
[mailbox.smtp]
host = "127.0.0.1"
port = 9
tls = "none"
[mailbox.imap]
host = "127.0.0.1"
port = 9
tls = "none"

[[route]]
name = "a-to-b"
from = "a"
to = "b"
direction = "internal"
headers = {{ "X-Route" = "1" }}

[[route]]
name = "b-to-a"
from = "b"
to = "a"
direction = "internal"

[canary]
headers = {{ "X-All" = "yes" }}
{extra}
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(TOML.format(state=tmp_path / "state", extra=extra))
    return path


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROBER_UNIT_PW", "pw")
    return write(tmp_path)


@pytest.fixture
def config(config_path: Path) -> Config:
    return load(config_path)


# -- the plan both drivers loop over ---------------------------------------------------------

def test_plan_lists_access_per_mailbox_and_protocol_and_a_canary_per_route(
        config: Config) -> None:
    todo = plan(config)
    assert [(c.mailbox.name, c.protocol, c.probe) for c in todo.access] == [
        ("a", "smtp", smtp_access), ("a", "imap", imap_access),
        ("b", "smtp", smtp_access), ("b", "imap", imap_access)]
    assert [c.route.name for c in todo.canaries] == ["a-to-b", "b-to-a"]
    # [canary] headers first, then the route's own: the same for `check` and `run`
    assert todo.canaries[0].headers == (("X-All", "yes"), ("X-Route", "1"))
    assert todo.canaries[1].headers == (("X-All", "yes"),)
    assert todo.recipients == ["a", "b"]
    assert todo.webmail == ()
    only = plan(config, ["b-to-a"])
    assert [c.route.name for c in only.canaries] == ["b-to-a"]
    assert only.recipients == ["a"]
    assert len(only.access) == 4  # `--route` narrows the canaries, not the access checks


# -- the guarded task boundary ----------------------------------------------------------------

def test_a_failing_task_logs_its_own_failure_and_is_counted(
        config_path: Path, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> Agent:
        agent = Agent(str(config_path), config)

        async def broken() -> None:
            raise ValueError("boom")

        async def ledger_broken() -> None:
            raise LedgerError("canary ledger /x/prober.db: cannot write: disk I/O error")

        task = agent._spawn(broken(), "canary route=a-to-b")
        other = agent._spawn(ledger_broken(), "canary route=b-to-a")
        await asyncio.wait({task, other})
        assert task.result() is None and other.result() is None  # nothing escapes
        agent.spool.close()
        agent.ledger.close()
        return agent

    with caplog.at_level(logging.ERROR, logger="prober.agent"):
        agent = asyncio.run(scenario())
    assert agent.task_errors == 2
    text = caplog.text
    assert "canary route=a-to-b failed" in text and "ValueError: boom" in text
    assert "canary route=b-to-a failed: canary ledger /x/prober.db: cannot write" in text


def test_a_ledger_write_failure_in_a_canary_is_logged_not_silent(
        config_path: Path, config: Config, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> Agent:
        agent = Agent(str(config_path), config)
        blocker = sqlite3.connect(agent.ledger.path, isolation_level=None)
        agent.ledger._db.execute("PRAGMA busy_timeout=50")
        blocker.execute("BEGIN IMMEDIATE")  # the ledger cannot write: enter() fails
        try:
            task = agent._spawn(agent._canary(agent.plan.canaries[0], 0.0),
                                "canary route=a-to-b")
            await asyncio.wait({task})
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        agent.spool.close()
        agent.ledger.close()
        return agent

    with caplog.at_level(logging.ERROR, logger="prober.agent"):
        agent = asyncio.run(scenario())
    assert agent.task_errors == 1
    assert "canary route=a-to-b failed: canary ledger" in caplog.text
    assert "locked" in caplog.text


# -- reload -------------------------------------------------------------------------------------

def test_sighup_reload_applies_a_changed_influx_section(
        tmp_path: Path, config_path: Path, config: Config,
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[str | None, str | None]:
        agent = Agent(str(config_path), config)
        agent._start_writer()
        before = agent.writer.settings.target if agent.writer else None
        write(tmp_path, '[influx]\napi = "v1"\nurl = "http://127.0.0.1:9"\n'
                        'database = "unit"\ntimeout_s = 1\n')
        agent._reload = True
        await agent._apply_reload()
        after = agent.writer.settings.target if agent.writer else None
        assert agent._writer_task is not None and not agent._writer_task.done()
        await agent._stop_writer()
        await agent._stop_watchers()
        agent.spool.close()
        agent.ledger.close()
        return before, after

    with caplog.at_level(logging.INFO, logger="prober.agent"):
        before, after = asyncio.run(scenario())
    assert before is None
    assert after is not None and "127.0.0.1:9" in after
    assert "reload: [influx] now" in caplog.text


# -- one exit status for a bad config ------------------------------------------------------------

@pytest.mark.parametrize("args", [["spool", "status"], ["spool", "export"], ["spool", "flush"],
                                  ["config", "check"], ["run"], ["check"],
                                  ["score", "--month", "2026-10"]])
def test_a_bad_config_exits_3_in_every_command(tmp_path: Path, args: list[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[vantage\n")
    result = CliRunner().invoke(main, [*args, "-c", str(bad)])
    assert result.exit_code == 3, result.output
    assert "bad.toml" in result.output and "Traceback" not in result.output
