"""Install the Debian packages of the local test stack, without starting their system daemons."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

POLICY_RC = Path("/usr/sbin/policy-rc.d")
_LOCK = Path("/tmp/prober-apt.lock")
# when `apt-get update` last ran for the stack: the suite's workers, the demo and the
# benches each install what they miss, and one update an hour serves them all
_UPDATED = Path("/tmp/prober-apt.updated")
UPDATE_EVERY_S = 3600.0


class StackError(RuntimeError):
    """The local stack could not be installed or started; the message says which part."""


def ensure_packages(binaries: Mapping[str, str], preseed: str = "") -> None:
    """Install the packages whose binaries are missing. `binaries` maps binary (or an
    absolute path of any file) -> package; `preseed`: debconf answers (lines for
    debconf-set-selections) so no package asks or sets up what the tests do themselves.

    Idempotent and serialized with a file lock, so parallel test processes don't race apt.
    """
    missing = sorted({pkg for binary, pkg in binaries.items() if not _have(binary)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(f"packages {', '.join(missing)} are missing and installing them "
                         "needs root (apt-get)")
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = sorted({pkg for binary, pkg in binaries.items() if not _have(binary)})
        if missing:
            _apt_install(missing, preseed)
    still = sorted(b for b in binaries if not _have(b))
    if still:
        raise StackError(f"installed {', '.join(missing)} but still cannot find "
                         f"{', '.join(still)}")


def _have(binary: str) -> bool:
    if binary.startswith("/"):  # any file the package installs (a Perl module, a plugin)
        return Path(binary).exists()
    return shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin") is not None


def _fresh(stamp: Path) -> bool:
    try:
        return time.time() - stamp.stat().st_mtime < UPDATE_EVERY_S
    except OSError:
        return False


def _apt_install(packages: list[str], preseed: str = "") -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # "No configuration" keeps the postfix package from writing /etc/postfix/main.cf.
    subprocess.run(["debconf-set-selections"], input=b"postfix postfix/main_mailer_type select "
                   b"No configuration\npostfix postfix/mailname string localhost\n"
                   + preseed.encode(), check=False)
    # policy-rc.d answering 101 keeps apt from starting the system daemons on ports
    # 25/143/993/8086; an existing policy (containers ship one) is left as it was.
    had_policy = POLICY_RC.exists()
    if not had_policy:
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
    try:
        if not _fresh(_UPDATED):  # under _LOCK (ensure_packages holds it)
            _run(["apt-get", "update", "-qq"], env)
            _UPDATED.touch()
        _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env)
    finally:
        if not had_policy:
            POLICY_RC.unlink(missing_ok=True)


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise StackError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}): "
                         + " | ".join(tail))
