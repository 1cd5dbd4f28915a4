"""The analytic model the emulation is checked against: a page load on one shared link.

For a single fetch it is `n_round_trips * RTT + bytes_down*8/down + bytes_up*8/up`. For a
page with sub-resources it is a fluid model of the same line: every response that is on
its way shares the downlink equally (processor sharing, the ideal of TCP flows sharing a
bottleneck), requests queue on the uplink, each request costs one RTT before its response
starts, a new connection costs 1 RTT (TCP) plus its TLS round trips, at most `per_host`
connections exist, idle ones are reused first, and a resource's children are requested
the moment it completes. It does not look at the emulator's code: the tests and the bench
compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prober.config.profiles import Profile

# The line's TCP/IP packets, as a packet-level line charges them: every segment carries 52
# bytes of headers with at most 1448 of payload (a full one is 1500 bytes: a small
# response pays far more than that share of the rate); the handshake is a 60-byte
# SYN up and a 60-byte SYN-ACK down; a receiver acknowledges each of a connection's first
# 16 segments and then every second one with a 52-byte ACK on the other direction.
PAYLOAD_SHARE = 1448 / 1500
MSS = 1448
SYN_BYTES = 60
ACK_BYTES = 52


# A browser's ClientHello, as the reference line's packet trace shows Chromium's (1,931 to
# 1,995 bytes: two segments); the emulated line sends the httpx engine's at this size.
CLIENT_HELLO_BYTES = 1960
# Linux's tail loss probe (RFC 8985): a flight whose ACK is not back within twice the
# smoothed RTT (plus 200 ms for a single segment) has its last segment sent again.
TCP_RTO_MIN_S = 0.200


def client_hello_probe_bytes(profile: Profile) -> int:
    """The uplink bytes of the tail loss probe a ClientHello draws on this line (0 if its
    ACK is back in time). The smoothed RTT is the handshake's: SYN up, SYN-ACK down."""
    down, up = profile.down_kbps * 1000 / 8, profile.up_kbps * 1000 / 8
    srtt = profile.rtt_s + SYN_BYTES / up + SYN_BYTES / down
    n = _segments(CLIENT_HELLO_BYTES)
    ack_back = (CLIENT_HELLO_BYTES + n * (1500 - MSS)) / up + profile.rtt_s
    pto = 2 * srtt + (TCP_RTO_MIN_S if n == 1 else 0.0)
    if ack_back <= pto:
        return 0
    return CLIENT_HELLO_BYTES - MSS * (n - 1) + (1500 - MSS)


def _segments(nbytes: int) -> int:
    return -(-nbytes // MSS)


def _wire(nbytes: int) -> int:
    """`nbytes` of payload in one burst, with its segments' headers."""
    return nbytes + (1500 - MSS) * _segments(nbytes)


def _acks(nbytes: int) -> int:
    n = _segments(nbytes)
    return min(n, 16) + max(0, n - 16 + 1) // 2


@dataclass
class ModelResource:
    name: str
    down_bytes: int  # response on the wire: status line, headers, body
    up_bytes: int  # request on the wire
    children: list[ModelResource] = field(default_factory=list)


def single_fetch_s(profile: Profile, round_trips: int, down_bytes: int, up_bytes: int,
                   payload_share: float = PAYLOAD_SHARE) -> float:
    """`payload_share`: what of the line rate carries payload (the rest is headers); below
    1, the handshake's packets and the server's ACKs of the request are charged too."""
    down, up = profile.down_kbps * 1000 / 8, profile.up_kbps * 1000 / 8
    if payload_share < 1:
        packets = (SYN_BYTES / up + SYN_BYTES / down
                   + ACK_BYTES * _acks(up_bytes) / down)
        return (round_trips * profile.rtt_s + packets
                + _wire(down_bytes) / down + _wire(up_bytes) / up)
    return (round_trips * profile.rtt_s
            + down_bytes / (down * payload_share)
            + up_bytes / (up * payload_share))


def predict_load_s(root: ModelResource, profile: Profile, per_host: int = 6,
                   tls_round_trips: int = 0, dns_round_trips: int = 0,
                   handshake_down_bytes: int = 0, handshake_up_bytes: int = 0,
                   multiplexed: bool = False,
                   trace: dict[str, tuple[float, float]] | None = None,
                   payload_share: float = PAYLOAD_SHARE) -> float:
    """Time until the last resource of the tree is complete, on one origin.

    `handshake_*_bytes` are a new connection's TLS bytes, charged on the links when it opens.
    `multiplexed` is HTTP/2: one connection, every request sent as soon as it is known.
    `trace`, if given, receives (requested, completed) per resource name.
    """
    issued_at: dict[str, float] = {}
    rtt = profile.rtt_s
    packets = payload_share < 1  # the segments' headers, the handshake's and the ACKs' packets
    # with packets charged, sizes below are bytes on the wire at the line's own rate
    down_rate = profile.down_kbps * 1000 / 8 * (1.0 if packets else payload_share)
    up_rate = profile.up_kbps * 1000 / 8 * (1.0 if packets else payload_share)

    def wire(nbytes: int) -> int:
        return _wire(nbytes) if packets else nbytes
    now = 0.0
    up_free = 0.0
    idle_conns = 0
    open_conns = 0
    waiting: list[ModelResource] = []  # requests without a connection yet
    # (time the response starts arriving, resource) and (remaining bytes, resource)
    scheduled: list[tuple[float, ModelResource]] = []
    active: list[list[float | ModelResource]] = []
    first_connection = True
    mux_ready = 0.0  # when the one HTTP/2 connection can carry requests

    def send(res: ModelResource, ready: float) -> None:
        nonlocal up_free
        start = max(ready, up_free)
        up_free = start + wire(res.up_bytes) / up_rate
        scheduled.append((up_free + rtt, res))

    def issue(res: ModelResource) -> None:
        nonlocal idle_conns, open_conns, first_connection, up_free, mux_ready
        issued_at.setdefault(res.name, now)
        if multiplexed and open_conns:
            send(res, max(now, mux_ready))
        elif idle_conns:
            idle_conns -= 1
            send(res, now)
        elif open_conns < per_host:
            open_conns += 1
            setup = (1 + tls_round_trips) * rtt
            if first_connection:
                setup += dns_round_trips * rtt
                first_connection = False
            syn_at = now
            if packets:  # the SYN waits its turn on the uplink, the SYN-ACK is small
                up_free = max(up_free, now) + SYN_BYTES / up_rate
                syn_at = up_free
                setup += SYN_BYTES / down_rate
            # the handshake's own bytes: approximated as serialized before the request
            ready = syn_at + setup + wire(handshake_down_bytes) / down_rate
            up_free = max(up_free, ready) + wire(handshake_up_bytes) / up_rate
            mux_ready = ready
            send(res, ready)
        else:
            waiting.append(res)

    issue(root)
    while scheduled or active:
        next_start = min((t for t, _ in scheduled), default=float("inf"))
        if active:
            share = down_rate / len(active)
            least = min(float(a[0]) for a in active)  # type: ignore[arg-type]
            next_done = now + least / share
        else:
            share, next_done = 0.0, float("inf")
        t = min(next_start, next_done)
        for a in active:
            a[0] = float(a[0]) - (t - now) * share  # type: ignore[arg-type]
        now = t
        if next_start <= next_done:
            entry = min(scheduled, key=lambda e: e[0])
            scheduled.remove(entry)
            down = float(wire(entry[1].down_bytes))
            if packets:  # the server's ACKs of the request come first
                down += ACK_BYTES * _acks(entry[1].up_bytes)
            active.append([down, entry[1]])
            continue
        finished = [a for a in active if float(a[0]) <= 1e-9]  # type: ignore[arg-type]
        for a in finished:
            active.remove(a)
            res = a[1]
            assert isinstance(res, ModelResource)
            if packets:  # the client's ACKs went up during the transfer, when the uplink
                # was free, else they delay what comes next on it
                ack_s = ACK_BYTES * _acks(res.down_bytes) / up_rate
                up_free = max(up_free, now - ack_s) + ack_s
            idle_conns += 1
            if trace is not None:
                trace[res.name] = (issued_at.get(res.name, 0.0), now)
            for child in res.children:
                issued_at[child.name] = now
                waiting.append(child)
        while waiting and (multiplexed or idle_conns or open_conns < per_host):
            issue(waiting.pop(0))
    return now
