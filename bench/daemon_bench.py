"""The daemon's footprint and its scale limit, on the local Postfix + Dovecot stack.

  soak:  N routes at one tick a minute for M minutes; prints the resident memory at the
         end and the CPU share of one core from minute 1 to the end (start-up excluded).
         The daemon is this environment's `prober` executable, started as systemd's
         ExecStart starts it (the units set no Environment=), its bytecode compiled as
         pip compiles it at install; MB are 10^6 bytes.
         python bench/daemon_bench.py soak --routes 10 --minutes 30
  scale: for each load in routes per minute, run the daemon for a few ticks and check
         that no tick was missed and every canary was delivered (none lost, failed or
         still pending); prints one line per load. A shorter tick with proportionally
         fewer routes gives the same rate: --tick-s 10 --rates 1000,2000 runs 167 and
         333 routes per 10 s tick.
         python bench/daemon_bench.py scale --rates 500,1000,1500,2000 --tick-s 10
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# the local test servers live under tests/, which is not installed: run from a clone
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prober.agent.spool import Spool
from prober.measurement import Measurement
from tests.localstack.mail import MailStack

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1e6


def config(stack: MailStack, tmp: Path, routes: int, tick_s: float, vantage: str) -> Path:
    users = [u.name for u in stack.users]
    pairs = [(f"r{i:05d}", users[i % 3], users[(i + 1) % 3]) for i in range(routes)]
    text = stack.probes_toml(vantage=vantage, routes=pairs,
                             extra=f"[agent]\ntick_s = {tick_s}\nconcurrency = 64\n")
    text = text.replace(f'state_dir = "{stack.dir / "state"}"', f'state_dir = "{tmp}/state"')
    path = tmp / "probes.toml"
    path.write_text(text)
    return path


def executable() -> list[str]:
    """The `prober` executable of this environment, as systemd's ExecStart runs it."""
    script = Path(sys.executable).with_name("prober")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prober"]


def installed_env() -> dict[str, str]:
    """The environment of an installed prober: pip compiles the bytecode when it installs,
    a clone run with PYTHONDONTWRITEBYTECODE compiles every module at every start instead
    (for the daemon's resident memory a wash: within 0.2 MB at minutes 1 to 4)."""
    import prober

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(prober.__file__).parent)],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def start(path: Path, *args: str) -> subprocess.Popen:
    log = (path.parent / "daemon.log").open("ab")
    return subprocess.Popen([*executable(), "run", "-c", str(path), *args],
                            stdout=log, stderr=log, env=installed_env())


def soak(stack: MailStack, routes: int, minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = config(stack, Path(tmp), routes, 60, "soak")
        proc = start(path)
        time.sleep(60)
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        peak = rss_mb(proc.pid)
        while time.monotonic() - t0 < (minutes - 1) * 60:
            time.sleep(10)
            peak = max(peak, rss_mb(proc.pid))
        share = (cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
        rss = rss_mb(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        outcomes = final_outcomes(Path(tmp))
        print(f"soak: {routes} routes, 1 tick/min, {minutes:g} min: RSS {rss:.1f} MB at the "
              f"end (peak {peak:.1f} MB), CPU {share * 100:.2f} % of one core "
              f"(minute 1 to end); canaries {dict(outcomes)}")


def final_outcomes(tmp: Path) -> collections.Counter[str]:
    last: dict[str, str] = {}
    with Spool(tmp / "state" / "prober.db") as spool:
        for line in spool.read_lines(measurement="mail_roundtrip"):
            p = Measurement.from_line(line)
            last[str(p.fields["canary"])] = str(p.fields["outcome"])
    return collections.Counter(last.values())


def scale(stack: MailStack, rates: list[int], tick_s: float, ticks: int) -> None:
    for rate in rates:
        routes = max(1, round(rate * tick_s / 60))
        with tempfile.TemporaryDirectory() as tmp:
            path = config(stack, Path(tmp), routes, tick_s, f"scale{rate}")
            proc = start(path, "--ticks", str(ticks))
            c0, t0 = 0.0, time.monotonic()
            peak = 0.0
            while proc.poll() is None:
                peak = max(peak, rss_mb(proc.pid))
                c0 = cpu_s(proc.pid)
                time.sleep(1)
            wall = time.monotonic() - t0
            outcomes = final_outcomes(Path(tmp))
            with Spool(Path(tmp) / "state" / "prober.db") as spool:
                beats = [Measurement.from_line(x)
                         for x in spool.read_lines(measurement="prober_heartbeat")]
            missed = max((int(b.fields["missed_ticks"]) for b in beats), default=-1)
            ok = (missed == 0 and outcomes.get("delivered", 0) == routes * ticks
                  and sum(outcomes.values()) == routes * ticks)
            print(f"scale: {rate:5d} routes/min ({routes} routes x {ticks} ticks of {tick_s:g} s)"
                  f": {'OK  ' if ok else 'FAIL'} missed_ticks={missed} canaries={dict(outcomes)}"
                  f" cpu={c0 / wall * 100:.0f}% of one core, peak RSS {peak:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--routes", type=int, default=10)
    s.add_argument("--minutes", type=float, default=30)
    c = sub.add_parser("scale")
    c.add_argument("--rates", default="500,1000,1500,2000")
    c.add_argument("--tick-s", type=float, default=10)
    c.add_argument("--ticks", type=int, default=4)
    args = parser.parse_args()
    with MailStack() as stack:
        os.environ.update(stack.env())
        if args.mode == "soak":
            soak(stack, args.routes, args.minutes)
        else:
            scale(stack, [int(x) for x in args.rates.split(",")], args.tick_s, args.ticks)


if __name__ == "__main__":
    main()
