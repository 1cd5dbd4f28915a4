"""`prober check` side by side with the Nagios plugin check_email_delivery, on one local stack.

Both send a message from alice to bob through the same Postfix and find it in bob's
mailbox on the same Dovecot, interleaved round by round (the order alternates), N rounds.
Prints per tool: the median wall time of one check, CPU (user + system, children included)
and peak RSS, and the delay each reported against the truth from the servers' logs:
Postfix's long queue id encodes the queue file's creation (the provider took the message:
Postfix creates it at the first accepted RCPT, so the truth also holds the client's DATA
transfer, a few ms) to the microsecond; Dovecot logs "saved mail" with microseconds
(visible in the mailbox).
`prober check` runs one route with its two mailboxes' SMTP and IMAP access checks.
Then `prober config check` on the same file, 11 times: its CPU (the start-up cost).

Installs Debian's monitoring-plugins-contrib (and the Perl modules its mail plugins need)
when the plugin is missing.
Usage: python bench/check_bench.py [--rounds 15] [--keep-going]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# the local test servers live under tests/, which is not installed: run from a clone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.localstack.mail import MailStack
from tests.localstack.packages import ensure_packages

PLUGIN_DIR = Path("/usr/lib/nagios/plugins")
PLUGIN = PLUGIN_DIR / "check_email_delivery"
# --no-install-recommends: the mail plugins' Perl modules are only Recommends
PLUGIN_PACKAGES = {
    str(PLUGIN): "monitoring-plugins-contrib",
    "/usr/share/perl5/Mail/IMAPClient.pm": "libmail-imapclient-perl",
    "/usr/share/perl5/Net/SMTP/TLS.pm": "libnet-smtp-tls-perl",
    "/usr/share/perl5/Net/SMTP/SSL.pm": "libnet-smtp-ssl-perl",
    "/usr/share/perl5/IO/Socket/SSL.pm": "libio-socket-ssl-perl",
    "/usr/share/perl5/Net/SMTP_auth.pm": "libnet-smtpauth-perl",
    "/usr/share/perl5/Monitoring/Plugin.pm": "libmonitoring-plugin-perl",
}

# Postfix's safe_ultostr() alphabet: digits and consonants; the queue id's last "z"
# separates the time (base 52: seconds, then 4 digits of microseconds) from the inode
# number (base 51: the alphabet without "z").
_SAFE = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
_CLEANUP = re.compile(r"^(\w{3} [ \d]\d \d\d:\d\d:\d\d) .*cleanup\[\d+\]: "
                      r"([0-9B-Zb-z]{10,}z[0-9B-Zb-y]+): message-id=(<[^>]*>)?")
_SAVED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) lmtp\([^)]*\)[^:]*: "
                    r"(?:Info: )?msgid=(<[^>]*>|[^:]*): saved mail to ")


def queue_id_time(queue_id: str) -> float:
    """The creation time of a long Postfix queue id's queue file, in unix seconds."""
    stamp = queue_id.rsplit("z", 1)[0]  # the time may hold a "z", the inode cannot
    sec, usec = stamp[:-4], stamp[-4:]

    def decode(digits: str) -> int:
        n = 0
        for c in digits:
            n = n * 52 + _SAFE.index(c)
        return n

    return decode(sec) + decode(usec) / 1e6


def check_decoded(stamp: float, logged: str) -> float:
    """The decoded time must fall in the log line's whole second (give or take one)."""
    year = datetime.fromtimestamp(stamp).year
    second = datetime.strptime(f"{year} {logged}", "%Y %b %d %H:%M:%S").timestamp()
    if not second - 1 <= stamp < second + 2:
        sys.exit(f"queue id decodes to {datetime.fromtimestamp(stamp)}, but Postfix logged "
                 f"it at {logged}: the decoding is wrong")
    return stamp


@dataclass
class Run:
    tool: str
    wall_s: float
    cpu_s: float
    rss_mb: float
    exit_code: int
    reported_s: float | None  # the delivery delay the tool reported
    true_s: float | None  # Dovecot's "saved mail" - Postfix's queue file, from the logs
    output: str

    @property
    def error_s(self) -> float | None:
        if self.reported_s is None or self.true_s is None:
            return None
        return self.reported_s - self.true_s


class Logs:
    """New lines of the servers' logs since the last call."""

    def __init__(self, stack: MailStack) -> None:
        self.files = {"postfix": stack.dir / "postfix.log", "dovecot": stack.dir / "dovecot.log"}
        self.offsets = {k: p.stat().st_size for k, p in self.files.items()}
        self.unpaired: tuple[dict[str, float], dict[str, float]] = ({}, {})

    def new(self) -> dict[str, list[str]]:
        out = {}
        for key, path in self.files.items():
            with path.open("rb") as f:
                f.seek(self.offsets[key])
                data = f.read()
            # keep a partial last line for the next call
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[key] += len(complete)
            out[key] = complete.decode(errors="replace").splitlines()
        return out

    def truth(self, timeout: float = 5.0) -> float | None:
        """The one message of this run: queue file creation -> saved in the mailbox."""
        deadline = time.monotonic() + timeout
        queued: dict[str, float] = {}
        saved: dict[str, float] = {}
        while time.monotonic() < deadline:
            lines = self.new()
            for line in lines["postfix"]:
                m = _CLEANUP.search(line)
                if m:
                    queued[m[3] or m[2]] = check_decoded(queue_id_time(m[2]), m[1])
            for line in lines["dovecot"]:
                m = _SAVED.search(line)
                if m:
                    stamp = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").timestamp()
                    saved[m[2]] = stamp
            both = set(queued) & set(saved)
            if len(queued) == 1 and len(saved) == 1 and not both:
                # cleanup logged no message-id: the one message of the run still pairs up
                return next(iter(saved.values())) - next(iter(queued.values()))
            if both:
                key = both.pop()
                return saved[key] - queued[key]
            time.sleep(0.05)
        self.unpaired = (queued, saved)
        return None


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, int, str]:
    """Wall s, CPU s (the process and every child it waited for), peak RSS MB, exit, stdout."""
    with tempfile.TemporaryFile() as out:
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    # ru_maxrss (KiB) is the largest of the process and its waited-for descendants
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, text


def prober_command() -> list[str]:
    script = Path(sys.executable).parent / "prober"
    return [str(script)] if script.exists() else [sys.executable, "-m", "prober.cli"]


def run_prober(path: Path, env: dict[str, str], logs: Logs) -> Run:
    wall, cpu, rss, code, text = timed([*prober_command(), "check", "-c", str(path), "--json"],
                                       env)
    reported = None
    try:
        doc = json.loads(text[text.index("{"):])
        reported = next(r["delivery_s"] for r in doc["rows"] if r["check"] == "canary")
    except (ValueError, StopIteration, KeyError):
        pass
    return Run("prober check", wall, cpu, rss, code, reported, logs.truth(), text)


def run_plugin(stack: MailStack, env: dict[str, str], logs: Logs) -> Run:
    alice, bob = stack.user("alice"), stack.user("bob")
    cmd = [str(PLUGIN), "-H", stack.host, "--libexec", str(PLUGIN_DIR),
           "--mailto", bob.address, "--mailfrom", alice.address,
           "--smtp-port", str(stack.submission_port), "--smtptls",
           "--smtp-username", alice.address, "--smtp-password", alice.password,
           "--imap-port", str(stack.imaps_port), "--imapssl",
           "--imap-username", bob.address, "--imap-password", bob.password,
           "--username", bob.address, "--password", bob.password]
    # the stack's self-signed CA, as prober's ca_file: IO::Socket::SSL reads SSL_CERT_FILE
    wall, cpu, rss, code, text = timed(cmd, {**env, "SSL_CERT_FILE": str(stack.cert_file)})
    m = re.search(r"\bdelay=(\d+(?:\.\d+)?)s", text)
    return Run("check_email_delivery", wall, cpu, rss, code, float(m[1]) if m else None,
               logs.truth(), text)


def probes_toml(stack: MailStack, state: Path) -> str:
    return (f'[vantage]\nname = "bench"\nstate_dir = "{state}"\n\n'
            + stack.mailbox_toml("alice") + "\n" + stack.mailbox_toml("bob")
            + '\n[[route]]\nname = "alice-to-bob"\nfrom = "alice"\nto = "bob"\n'
              'direction = "internal"\n\n[check]\nwait_s = 30\n')


def summary(runs: list[Run]) -> dict[str, float]:
    def med(values: list[float | None]) -> float:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else float("nan")

    return {"wall": med([r.wall_s for r in runs]), "cpu": med([r.cpu_s for r in runs]),
            "rss": max(r.rss_mb for r in runs), "err": med([r.error_s for r in runs]),
            "err_max": max((abs(r.error_s) for r in runs if r.error_s is not None),
                           default=float("nan")),
            "failed": sum(1 for r in runs if r.exit_code != 0)}


def fmt(v: float | None, unit: str = "s") -> str:
    return "-" if v is None else f"{v:.3f}{unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--keep-going", action="store_true",
                        help="do not stop at the first check that does not exit OK")
    args = parser.parse_args()
    ensure_packages(PLUGIN_PACKAGES)
    with MailStack() as stack, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **stack.env()}
        # An installed prober has its bytecode compiled (pip does it); a clone run with
        # PYTHONDONTWRITEBYTECODE would compile every module on every start instead.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        path = Path(tmp) / "probes.toml"
        path.write_text(probes_toml(stack, Path(tmp) / "state"))
        logs = Logs(stack)
        tools = {"prober check": lambda: run_prober(path, env, logs),
                 "check_email_delivery": lambda: run_plugin(stack, env, logs)}
        for run in tools.values():  # warm-up: first connections, caches; not counted
            run()
        results: dict[str, list[Run]] = {name: [] for name in tools}
        print(f"{'round':>5}  {'tool':<21} {'exit':>4} {'wall':>8} {'cpu':>7} {'rss':>8} "
              f"{'reported':>9} {'truth':>7} {'error':>7}")
        for i in range(args.rounds):
            order = list(tools) if i % 2 == 0 else list(reversed(tools))
            for name in order:
                r = tools[name]()
                results[name].append(r)
                print(f"{i + 1:>5}  {name:<21} {r.exit_code:>4} {fmt(r.wall_s):>8} "
                      f"{fmt(r.cpu_s):>7} {fmt(r.rss_mb, 'MB'):>8} {fmt(r.reported_s):>9} "
                      f"{fmt(r.true_s):>7} {fmt(r.error_s):>7}", flush=True)
                if r.true_s is None:
                    print(f"       no truth from the logs: queued {logs.unpaired[0]}, "
                          f"saved {logs.unpaired[1]}")
                if r.exit_code != 0 and not args.keep_going:
                    print(r.output, file=sys.stderr)
                    sys.exit(f"{name} exited {r.exit_code}; --keep-going to go on")
        p, q = summary(results["prober check"]), summary(results["check_email_delivery"])
        print(f"\nover {args.rounds} interleaved rounds on one local Postfix + Dovecot:")
        for name, s in (("prober check", p), ("check_email_delivery", q)):
            print(f"  {name:<21} median {s['wall']:.3f} s wall, CPU median {s['cpu']:.3f} s, "
                  f"peak RSS {s['rss']:.1f} MB, delay error median {s['err']:+.3f} s "
                  f"(max |error| {s['err_max']:.3f} s), {s['failed']} not OK")
        print(f"  ratio: prober check is {q['wall'] / p['wall']:.1f}x faster (wall), "
              f"uses {p['cpu'] / q['cpu']:.2f}x the plugin's CPU and "
              f"{p['rss'] / q['rss']:.2f}x its peak RSS")
        runs = [timed([*prober_command(), "config", "check", "-c", str(path)], env)
                for _ in range(11)]
        assert all(r[3] == 0 for r in runs), runs[0][4]
        print(f"  prober config check (the same file): CPU median "
              f"{statistics.median(r[1] for r in runs):.3f} s, wall median "
              f"{statistics.median(r[0] for r in runs):.3f} s, peak RSS "
              f"{max(r[2] for r in runs):.1f} MB over 11 runs")
        print(f"  load average during the run: {os.getloadavg()[0]:.2f} "
              f"({os.cpu_count()} cores)")
        shutil.rmtree(Path(tmp) / "state", ignore_errors=True)


if __name__ == "__main__":
    main()
