"""Helpers for tests that run `prober run` as a subprocess and read its spool."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prober.agent.spool import Spool
from prober.measurement import Measurement
from tests.localstack.mail import MailStack


def own_state_dir(text: str, stack: MailStack, tmp: Path) -> str:
    """A probes.toml text whose spool is the test's own: no other test's points in it."""
    text = text.replace(f'state_dir = "{stack.dir / "state"}"', f'state_dir = "{tmp / "state"}"')
    assert f'state_dir = "{tmp / "state"}"' in text
    return text


def spool_points(tmp: Path, measurement: str) -> list[Measurement]:
    db = tmp / "state" / "prober.db"
    if not db.exists():
        return []
    with Spool(db) as spool:
        return [Measurement.from_line(line) for line in spool.read_lines(measurement=measurement)]


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
