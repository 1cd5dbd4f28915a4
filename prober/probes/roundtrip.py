"""The canary round trip: send a canary, learn its fate, turn both into `mail_roundtrip`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from prober.config.mail import Mailbox, Route, Timeouts
from prober.measurement import Measurement
from prober.probes.canary import CanaryId, build_message, received_hops, split_delay
from prober.probes.imap import Arrival
from prober.probes.smtp import Submission, submit
from prober.schema import SMTP_PREFIX

Fields = dict[str, float | int | str | bool | None]
OUTCOMES = ("pending", "delivered", "late", "lost", "send_failed", "send_uncertain")


@dataclass(frozen=True)
class Sent:
    """A canary handed to the provider (or refused): everything its point needs later."""

    route: Route
    sender: Mailbox
    recipient: Mailbox
    canary: CanaryId
    submission: Submission

    @property
    def time_ns(self) -> int:
        # DESIGN: timestamp = when the provider accepted it, or the attempt if refused
        return self.submission.accepted_ns or self.submission.started_ns

    @property
    def initial_outcome(self) -> str:
        if self.submission.ok:
            return "pending"
        return "send_uncertain" if self.submission.uncertain else "send_failed"


async def send_canary(route: Route, sender: Mailbox, recipient: Mailbox, cid: CanaryId,
                      timeouts: Timeouts, extra_headers: dict[str, str] | None = None) -> Sent:
    """Submit the canary `cid`. The caller makes the id first (`new_canary_id`) and registers
    it (watcher.expect, the ledger) before sending, so a fast arrival cannot go unclaimed."""
    msg = build_message(cid, sender.address, recipient.address, datetime.now(UTC),
                        extra_headers)
    submission = await submit(sender, timeouts, msg.as_bytes(), [recipient.address])
    return Sent(route, sender, recipient, cid, submission)


def roundtrip_point(vantage: str, sent: Sent, outcome: str,
                    arrival: Arrival | None = None) -> Measurement:
    """The `mail_roundtrip` point; written again with the same tags and time when the fate
    is known, so InfluxDB keeps the last word (DESIGN: schema)."""
    sub = sent.submission
    fields: Fields = {
        "outcome": outcome,
        "canary": sent.canary.id,
        "seq": sent.canary.seq,
        "smtp_connect_s": sub.phases.get("connect_s"),
        "smtp_tls_s": sub.phases.get("tls_s"),
        "smtp_auth_s": sub.phases.get("auth_s"),
        "smtp_data_s": sub.phases.get("data_s"),
        "smtp_total_s": sub.phases.get("total_s"),
        "smtp_code": sub.code,
        "queue_id": sub.queue_id,
        "error": str(sub.error) if sub.error else None,
        "error_class": sub.error.kind if sub.error else None,
        **{SMTP_PREFIX + name: value for name, value in sub.facts.items()},
    }
    if arrival is not None:
        fields.update(arrival_fields(sent, arrival))
    return Measurement("mail_roundtrip", {
        "vantage": vantage,
        "route": sent.route.name,
        "sender": sent.sender.address,
        "recipient": sent.recipient.address,
        "direction": sent.route.direction,
    }, fields, sent.time_ns)


def arrival_fields(sent: Sent, arrival: Arrival) -> Fields:
    # the attempt's start stands in when the 250 never came (send_uncertain)
    return fields_at_arrival(arrival, sent.time_ns, sent.route.direction,
                             sent.route.provider_domains)


def fields_at_arrival(arrival: Arrival, accepted_ns: int, direction: str,
                      provider_domains: tuple[str, ...]) -> Fields:
    hops = received_hops(arrival.headers)
    split = split_delay(hops, accepted_ns, arrival.internaldate_ns, direction, provider_domains)
    return {
        # both ends on our clock: acceptance (SMTP 250) -> our detection
        "delivery_s": (arrival.detected_ns - accepted_ns) / 1e9,
        # the server's INTERNALDATE (1 s resolution, its clock) -> acceptance on ours
        "visible_s": ((arrival.internaldate_ns - accepted_ns) / 1e9
                      if arrival.internaldate_ns is not None else None),
        "send_delay_s": split.send_delay_s,
        "receive_delay_s": split.receive_delay_s,
        "clock_skew": split.clock_skew,
        "hops": len(hops),
        "detect": arrival.detect,
        "folder": arrival.folder,
        # true: the canary's MAC verified; false: an unsigned canary sent before the
        # upgrade to signed canaries, matched by its id alone
        "authenticated": arrival.authenticated,
    }


def fate(sent: Sent, arrival: Arrival | None, late_after_s: float) -> str:
    if not sent.submission.ok and arrival is None:
        return sent.initial_outcome
    if arrival is None:
        return "pending"
    delay = (arrival.detected_ns - sent.time_ns) / 1e9
    return "late" if delay > late_after_s else "delivered"
