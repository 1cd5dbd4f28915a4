"""Profiles, their contract limits and the link's bookkeeping, without a network."""

from __future__ import annotations

import asyncio

import pytest

from prober.config.profiles import PRESETS, Profile, resolve_profile
from prober.config.webmail import page_open_limit_s
from prober.contract import Contract
from prober.probes.throttle import Link, _Acks, _Serializer, segments, wire_bytes
from tests.webmail_model import ModelResource, predict_load_s, single_fetch_s


def test_contract_words_map_to_the_presets_and_keep_their_name() -> None:
    nb = resolve_profile("narrowband")
    bb = resolve_profile("broadband")
    assert (nb.name, nb.preset, nb.down_kbps, nb.up_kbps, nb.rtt_ms) == (
        "narrowband", "dial", 49, 30, 120)
    assert (bb.name, bb.preset, bb.down_kbps, bb.up_kbps, bb.rtt_ms) == (
        "broadband", "dsl", 1500, 384, 50)
    assert page_open_limit_s(Contract(), nb) == 30.0
    assert page_open_limit_s(Contract(), bb) == 10.0


@pytest.mark.parametrize(("name", "limit"), [("dial", 30.0), ("3gslow", 30.0), ("dsl", 10.0),
                                             ("3g", 10.0), ("cable", 10.0), ("fios", 10.0)])
def test_each_preset_is_judged_by_one_of_the_two_limits(name: str, limit: float) -> None:
    assert page_open_limit_s(Contract(), PRESETS[name]) == limit
    assert PRESETS[name].source


def test_user_profiles_take_their_class_from_bandwidth_unless_told() -> None:
    assert Profile("slow", 256, 64, 200).contract_class == "narrowband"
    assert Profile("fast", 50_000, 10_000, 10).contract_class == "broadband"
    assert page_open_limit_s(Contract(), Profile("odd", 256, 64, 200, "broadband")) == 10.0
    custom = {"office": Profile("office", 2000, 500, 30)}
    assert resolve_profile("office", custom) is custom["office"]
    with pytest.raises(KeyError, match=r"unknown profile .modem.*known: 3g, 3gslow"):
        resolve_profile("modem", custom)
    with pytest.raises(ValueError, match="bandwidths must be > 0"):
        Profile("zero", 0, 1, 1)


def test_serializer_is_work_conserving_and_does_not_reserve_ahead() -> None:
    link = _Serializer(80)  # 10,000 bytes/s
    assert link.reserve(1000, ready_at=1.0) == pytest.approx(1.1)
    # ready while busy: queued right behind
    assert link.reserve(500, ready_at=1.05) == pytest.approx(1.15)
    # ready after an idle gap: the gap stays idle, nothing is booked retroactively
    assert link.reserve(100, ready_at=2.0) == pytest.approx(2.01)
    assert link.busy_s == pytest.approx(0.16)
    assert link.slice_bytes == 100  # 10 ms of link time


def test_dns_is_charged_once_per_name_and_not_for_literals() -> None:
    async def main() -> tuple[float, float, float, list[str]]:
        link = Link(Profile("p", 1000, 1000, 40))
        (addrs, first), (_, again) = await asyncio.gather(link.resolve("localhost", 80),
                                                          link.resolve("localhost", 80))
        _, literal = await link.resolve("127.0.0.1", 80)
        return first, again, literal, addrs

    first, again, literal, addrs = asyncio.run(main())
    assert first >= 0.04 and again == 0.0 and literal == 0.0
    assert "127.0.0.1" in addrs


def test_single_fetch_formula() -> None:
    dsl = PRESETS["dsl"]
    # 2 RTT + 150,000 bytes at 1.5 Mbit/s + 384 bytes at 384 kbit/s
    whole = single_fetch_s(dsl, 2, 150_000, 384, payload_share=1.0)
    assert whole == pytest.approx(0.1 + 0.8 + 0.008)
    # with 52 bytes of headers on each segment (104 down, 1 up), the SYN and SYN-ACK and
    # the server's ACK
    packets = 60 * 8 / 384_000 + 60 * 8 / 1_500_000 + 52 * 8 / 1_500_000
    headers = 104 * 52 * 8 / 1_500_000 + 52 * 8 / 384_000
    assert single_fetch_s(dsl, 2, 150_000, 384) == pytest.approx(
        0.1 + 0.808 + headers + packets)


def test_model_shares_the_link_and_charges_new_connections() -> None:
    p = Profile("p", 800, 800, 100)  # 100 KB/s, 100 ms
    leaf = [ModelResource(f"r{i}", 10_000, 0) for i in range(2)]
    root = ModelResource("/", 10_000, 0, leaf)
    # html: TCP + request + 0.1 s; then r0 on the idle connection (1 RTT) and r1 on a new
    # one (2 RTT): r0 alone for 0.1 s (all 10 KB), then r1 alone.
    assert predict_load_s(root, p, payload_share=1.0) == pytest.approx(0.3 + 0.2 + 0.1)
    assert predict_load_s(root, p, per_host=1, payload_share=1.0) == pytest.approx(0.3 + 0.2 + 0.2)
    # HTTP/2: both requests on the one connection at once, sharing the line
    h2 = predict_load_s(root, p, multiplexed=True, payload_share=1.0)
    assert h2 == pytest.approx(0.3 + 0.1 + 0.2)


def test_segments_carry_headers_each_short_or_full() -> None:
    # a 1,960-byte ClientHello is two packets on the line: 1448 + 512 bytes of payload
    assert segments(0, 1960) == 2 and wire_bytes(1960) == 1960 + 2 * 52
    assert wire_bytes(80) == 132  # a TLS Finished alone: a whole packet's headers
    # a burst delivered in slices: each segment's headers counted once, where it starts
    assert sum(segments(o, 100) for o in range(0, 3000, 100)) == segments(0, 3000) == 3
    assert segments(1448, 1) == 1 and segments(1449, 1447) == 0


def test_receiver_acknowledges_16_segments_then_every_second() -> None:
    acks = _Acks()
    assert acks.acks(16, burst_done=False) == 16
    assert acks.acks(5, burst_done=False) == 2  # 18 and 20
    assert acks.acks(0, burst_done=True) == 0
    assert acks.acks(1, burst_done=True) == 1  # 22: every second one
    assert acks.acks(1, burst_done=True) == 1  # 23, odd: the delayed-ACK timer
