"""Fixtures for the local mail stack (Postfix + Dovecot), started once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prober.config import Config, load
from tests.localstack.mail import MailStack


@pytest.fixture(scope="session")
def mail_stack() -> Iterator[MailStack]:
    with MailStack() as stack:
        os.environ.update(stack.env())
        yield stack


@pytest.fixture(scope="session")
def mail_stack_noidle() -> Iterator[MailStack]:
    """A Dovecot that does not announce IDLE: the watcher must fall back to polling."""
    with MailStack(idle=False) as stack:
        os.environ.update(stack.env())
        yield stack


@pytest.fixture
def dovecot_down(mail_stack: MailStack) -> Iterator[MailStack]:
    mail_stack.stop_dovecot()
    try:
        yield mail_stack
    finally:
        mail_stack.start_dovecot()


def write_config(stack: MailStack, directory: Path, name: str = "probes.toml",
                 **kwargs: object) -> Path:
    path = directory / name
    path.write_text(stack.probes_toml(**kwargs))  # type: ignore[arg-type]
    return path


def load_config(stack: MailStack, directory: Path, **kwargs: object) -> Config:
    return load(write_config(stack, directory, **kwargs))


def run_prober(*args: str, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed CLI, as an operator or Nagios would run it."""
    return subprocess.run([sys.executable, "-m", "prober.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
