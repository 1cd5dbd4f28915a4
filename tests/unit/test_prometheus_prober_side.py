"""Prometheus: a probe the prober itself failed to make (error_class "prober") never
reads as the provider's failure: no `_success` 0, no `send_failed` 1, `_not_measured` 1."""

from __future__ import annotations

from prober.agent.prometheus import Exposition
from prober.measurement import Measurement
from tests.unit.test_prometheus import T0, V, access, samples

EMFILE = "connect: prober: no file descriptor left in the prober's process (EMFILE)"
AL = (("address", "192.0.2.7"), ("family", "ipv4"), ("mailbox", "a@example.test"),
      ("protocol", "imap"), ("vantage", "fra1"))


def _canary(**fields: object) -> Measurement:
    return Measurement("mail_roundtrip", {**V, "route": "a-b", "sender": "a@example.test",
                                          "recipient": "b@example.test",
                                          "direction": "internal"},
                       {"outcome": "send_failed", "canary": "0123456789abcdef", **fields},
                       T0)  # type: ignore[arg-type]


def test_access_not_measured_has_no_success_sample() -> None:
    exp = Exposition()
    exp.observe([access("192.0.2.7", "fail", error=EMFILE, error_class="prober")])
    got = samples(exp.render())
    assert ("prober_mail_access_success", AL) not in got
    assert got[("prober_mail_access_not_measured", AL)] == 1
    # the provider's failure: success 0, measured
    exp.observe([access("192.0.2.7", "fail", T0 + 1, error="connect: refused",
                        error_class="refused")])
    got = samples(exp.render())
    assert got[("prober_mail_access_success", AL)] == 0
    assert got[("prober_mail_access_not_measured", AL)] == 0


def test_a_send_we_failed_to_make_is_no_outcome() -> None:
    exp = Exposition()
    exp.observe([_canary(error=EMFILE, error_class="prober")])
    got = samples(exp.render())
    outcomes = {dict(k[1])["outcome"]: v for k, v in got.items()
                if k[0] == "prober_mail_roundtrip_outcome"}
    assert outcomes and set(outcomes.values()) == {0}
    assert [v for k, v in got.items() if k[0] == "prober_mail_roundtrip_not_measured"] == [1]
    exp = Exposition()
    exp.observe([_canary(error="data: protocol: 554 rejected", error_class="protocol")])
    got = samples(exp.render())
    sent = {dict(k[1])["outcome"]: v for k, v in got.items()
            if k[0] == "prober_mail_roundtrip_outcome"}
    assert sent["send_failed"] == 1
