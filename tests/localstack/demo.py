"""The quick-start demo: a real Postfix + Dovecot on loopback, and `prober check` against it.

    python -m tests.localstack.demo [--keep] [-- extra prober check options]

Brings the stack up in a temporary directory (installing the Debian packages when
missing), writes a probes.toml for it with three mailboxes and three internal routes,
runs `prober check` as an operator would, and stops the stack. `--keep` leaves it
running and prints how to use it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.localstack.mail import MailStack

ROUTES = [("alice-to-bob", "alice", "bob"), ("bob-to-carol", "bob", "carol"),
          ("carol-to-alice", "carol", "alice")]


def main(argv: list[str]) -> int:
    keep = "--keep" in argv
    extra = [a for a in argv if a not in ("--keep", "--")]
    stack = MailStack()
    print(f"starting Postfix and Dovecot on 127.0.0.1 in {stack.dir} ...", flush=True)
    stack.start()
    try:
        config = stack.dir / "probes.toml"
        config.write_text(stack.probes_toml(vantage="demo", routes=ROUTES))
        env = {**os.environ, **stack.env()}
        cmd = [sys.executable, "-m", "prober.cli", "check", "-c", str(config), *extra]
        print(f"$ prober check -c {config} {' '.join(extra)}".rstrip(), flush=True)
        code = subprocess.run(cmd, env=env).returncode
        print(f"(exit status {code}: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)")
        if keep:
            # the throwaway passwords go in a file only root can read, not on the screen
            env_file = stack.dir / "passwords.env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in stack.env().items()))
            env_file.chmod(0o600)
            print(f"\nthe stack keeps running; try:\n  set -a; . {env_file}; set +a\n"
                  f"  .venv/bin/prober run -c {config}\nCtrl-C here stops the stack.",
                  flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return code
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
