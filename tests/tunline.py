"""A packet-level reference line for the webmail engines: a network namespace whose only
link to the host is a pair of TUN devices joined by a relay in user space.

This kernel has no netem, so the line is built as the field notes describe: each
direction a drop-tail FIFO (1000 packets), every IP packet serialized at the line rate
(IP length x 8 / rate) and delayed RTT/2. Whatever runs in the namespace (Chromium, as
the reference) reaches the host's 10.77.x.1 only over this line, paying every DNS-less
SYN, TLS flight, ACK and header as a real access line charges them.

Needs root (`ip netns`, /dev/net/tun); tests only, never the agent.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import heapq
import os
import select
import shlex
import struct
import subprocess
import threading
import time
from pathlib import Path

from prober.config.profiles import Profile

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
QUEUE_PACKETS = 1000


def _tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True)


class _Direction:
    """One direction of the line: drop-tail FIFO, serializer, propagation delay."""

    def __init__(self, kbps: float, delay_s: float) -> None:
        self.bytes_per_s = kbps * 1000 / 8
        self.delay_s = delay_s
        self.free_at = 0.0
        self.queued: collections.deque[float] = collections.deque()  # departure times
        self.dropped = 0
        self.packets = 0
        self.late_s = 0.0

    def schedule(self, now: float, size: int) -> float | None:
        while self.queued and self.queued[0] <= now:
            self.queued.popleft()
        if len(self.queued) >= QUEUE_PACKETS:
            self.dropped += 1
            return None
        depart = max(now, self.free_at) + size / self.bytes_per_s
        self.free_at = depart
        self.queued.append(depart)
        self.packets += 1
        return depart + self.delay_s


class TunLine:
    """`with TunLine(profile) as line:` -> `line.run(cmd)` runs in the namespace; the host
    side is reachable from there at `line.host_ip`."""

    def __init__(self, profile: Profile, tag: str | None = None) -> None:
        self.profile = profile
        tag = tag or f"{os.getpid() % 100000}"
        self.ns = f"prl{tag}"
        self.inner_name, self.outer_name = f"prli{tag}"[:15], f"prlo{tag}"[:15]
        octet = 1 + os.getpid() % 250
        self.host_ip, self.ns_ip = f"10.77.{octet}.1", f"10.77.{octet}.2"
        half = profile.rtt_s / 2
        self.up = _Direction(profile.up_kbps, half)  # namespace (the customer) -> host
        self.down = _Direction(profile.down_kbps, half)
        # with trace=True, every TCP packet offered to the line: (time, "up"|"down", IP
        # length, source port, destination port, flags, seq, payload length, delivered at
        # or None when the queue dropped it), for the per-packet comparison in the bench
        self.trace: list[tuple[float, str, int, int, int, int, int, int, float | None]] | None
        self.trace = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fds: tuple[int, int] | None = None

    def __enter__(self) -> TunLine:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        _ip("netns", "add", self.ns)
        inner = _tun(self.inner_name)
        outer = _tun(self.outer_name)
        self._fds = (inner, outer)
        _ip("link", "set", self.inner_name, "netns", self.ns)
        _ip("link", "set", "lo", "up", ns=self.ns)
        _ip("addr", "add", f"{self.ns_ip}/32", "dev", self.inner_name, ns=self.ns)
        _ip("link", "set", self.inner_name, "up", "mtu", "1500", ns=self.ns)
        _ip("route", "add", "default", "dev", self.inner_name, ns=self.ns)
        _ip("addr", "add", f"{self.host_ip}/32", "dev", self.outer_name)
        _ip("link", "set", self.outer_name, "up", "mtu", "1500")
        _ip("route", "add", f"{self.ns_ip}/32", "dev", self.outer_name)
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._fds is not None:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.outer_name)

    def wrapper(self, directory: Path, program: str) -> Path:
        """An executable that runs `program` in the namespace (for Playwright's launch)."""
        path = directory / f"in-{self.ns}-{Path(program).name}"
        path.write_text(f"#!/bin/sh\nexec ip netns exec {shlex.quote(self.ns)} "
                        f"{shlex.quote(program)} \"$@\"\n")
        path.chmod(0o755)
        return path

    def _relay(self) -> None:
        assert self._fds is not None
        inner, outer = self._fds
        pending: list[tuple[float, int, int, bytes]] = []  # (due, seq, fd, packet)
        seq = 0
        while not self._stop.is_set():
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                due, _, fd, packet = heapq.heappop(pending)
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(fd, packet)
                late = now - due
                if late > 0:
                    (self.up if fd == outer else self.down).late_s += late
            wait = min(0.05, pending[0][0] - now) if pending else 0.05
            readable, _, _ = select.select([inner, outer], [], [], max(0.0, wait))
            now = time.monotonic()
            for fd in readable:
                direction, to = (self.up, outer) if fd == inner else (self.down, inner)
                while True:
                    try:
                        packet = os.read(fd, 65536)
                    except (BlockingIOError, OSError):
                        break
                    if not packet or packet[0] >> 4 != 4:
                        continue  # IPv4 only (the namespace has no IPv6 address)
                    arrives = direction.schedule(now, len(packet))
                    if self.trace is not None and packet[9] == 6:
                        ihl = (packet[0] & 15) * 4
                        sport, dport, tseq = struct.unpack(">HHI", packet[ihl:ihl + 8])
                        doff = (packet[ihl + 12] >> 4) * 4
                        self.trace.append((now, "up" if fd == inner else "down", len(packet),
                                           sport, dport, packet[ihl + 13], tseq,
                                           len(packet) - ihl - doff, arrives))
                    if arrives is not None:
                        seq += 1
                        heapq.heappush(pending, (arrives, seq, to, packet))
