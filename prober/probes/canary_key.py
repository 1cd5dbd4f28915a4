"""The canary key: the configured secret, or one made once in the state directory.

Made with O_EXCL semantics (a temporary file linked into place), so a daemon and a
`prober check` starting together on one vantage end up with the same key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from pathlib import Path

from prober.config import Config, ConfigError
from prober.config.mail import CANARY_KEY_MIN_BYTES as MIN_KEY_BYTES
from prober.config.reader import MAX_SECRET_BYTES, FileProblem, read_regular_file
from prober.probes.canary import CanaryKey

log = logging.getLogger("prober.canary")
KEY_FILE = "canary.key"
# when this vantage first signed its canaries: ledger entries from before may be unsigned
SIGNED_SINCE_FILE = "canary-signed-since"
FINGERPRINT_FILE = "canary-key-fingerprint"  # of the key last used: not secret


def load_canary_key(config: Config, create: bool = True) -> CanaryKey:
    """The vantage's canary key; with `create`, made in the state directory when none is
    configured and none is there yet. Raises ConfigError naming the file and the cause."""
    state = Path(config.vantage.state_dir)
    key = _load(config, state, create)
    if create:
        _note_change(state, key)
    return key


def _load(config: Config, state: Path, create: bool) -> CanaryKey:
    since = _signed_since(state) if create else 0
    old = config.canary.previous_key
    previous = old.reveal().encode() if old is not None else None
    secret = config.canary.key
    if secret is not None:
        return CanaryKey(secret.reveal().encode(), secret.source, since, previous)
    path = state / KEY_FILE
    if not path.exists() and create:
        _create(config, path)
    try:
        # the one check for secret files (a FIFO refused, not waited on; size; UTF-8)
        raw, _ = read_regular_file(path, MAX_SECRET_BYTES)
        text = raw.decode("utf-8").strip()
    except FileProblem as exc:
        raise ConfigError(config.file, "canary.key_file",
                          f"no key configured and {exc}; configure key_file, key_env or "
                          "key_credential") from None
    except UnicodeDecodeError:
        raise ConfigError(config.file, "canary.key_file",
                          f"{path} is not UTF-8 text; remove it to have a new one made, or "
                          "configure one") from None
    if len(text.encode()) < MIN_KEY_BYTES:
        raise ConfigError(config.file, "canary.key_file",
                          f"{path} holds no usable key (under {MIN_KEY_BYTES} bytes); "
                          "remove it to have a new one made, or configure one")
    if path.stat().st_mode & 0o077:
        log.warning("canary key %s is readable by others than its owner: anyone who reads "
                    "it can forge canaries; chmod 600 it", path)
    return CanaryKey(text.encode(), f"state:{path}", since, previous)


def _note_change(state: Path, key: CanaryKey) -> None:
    """A new key makes the canaries in flight unverifiable unless the old one is kept as
    previous_key: say so once, loudly (the fingerprints name keys without revealing them)."""
    path = state / FINGERPRINT_FILE
    with contextlib.suppress(OSError):
        last = path.read_text().strip()
        if last == key.fingerprint:
            return
        if last and last != key.previous_fingerprint:
            log.warning("the canary key changed since the last start (fingerprint %s, now %s) "
                        "and the old key is not configured as [canary] previous_key_*: "
                        "canaries in flight signed with it cannot be verified any more; "
                        "they will be counted as forged and end lost", last, key.fingerprint)
    with contextlib.suppress(OSError):
        path.write_text(key.fingerprint + "\n")


def _create(config: Config, path: Path) -> None:
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if another process made it first: theirs stands
        except FileExistsError:
            return
        log.warning("created a new canary key in %s (mode 0600): no key is configured in "
                    "[canary]; back it up with the state directory, since canaries signed "
                    "with a lost key are no longer recognised as ours", path)
    except OSError as exc:
        raise ConfigError(config.file, "canary.key_file",
                          f"no key configured and cannot create {path}: {exc.strerror}; "
                          "configure key_file, key_env or key_credential, or make the state "
                          "directory writable") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _signed_since(state: Path) -> int:
    """When this vantage began signing (written once). 0 when it cannot be kept: then no
    unsigned message is ever taken for a canary in flight (the safe side)."""
    path = state / SIGNED_SINCE_FILE
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    now = time.time_ns()
    try:
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(f"{now}\n")
        return now
    except FileExistsError:
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
    except OSError:
        pass
    return 0
