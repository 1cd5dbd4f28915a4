"""A host name the test controls, through the system's own resolver: lines added to
/etc/hosts for the test and removed after (only those lines: the rest is left as found)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HOSTS = Path("/etc/hosts")
# one writer at a time: test processes run side by side (scripts/test.sh's workers, other
# checkouts' suites), and a read-modify-write beside an append would drop the append
_LOCK = Path("/tmp/prober-hosts.lock")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def hosts_name(addresses: list[str], domain: str = "example.test") -> Iterator[str]:
    """A fresh name under `domain` resolving to `addresses`, in this order."""
    if os.geteuid() != 0 or not os.access(HOSTS, os.W_OK):
        pytest.skip("needs root to add a name to /etc/hosts")
    name = f"pool-{uuid.uuid4().hex[:10]}.{domain}"
    mark = f"  # prober test {name}"
    lines = [f"{ip} {name}{mark}\n" for ip in addresses]
    with _locked(), HOSTS.open("a") as f:
        f.writelines(lines)
    try:
        yield name
    finally:
        with _locked():
            kept = [line for line in HOSTS.read_text().splitlines(keepends=True)
                    if not line.endswith(mark + "\n")]
            HOSTS.write_text("".join(kept))
