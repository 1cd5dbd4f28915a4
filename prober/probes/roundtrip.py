"""The canary round trip: send a canary, learn its fate, turn both into `mail_roundtrip`.

`send_canary` is the one entry point both drivers (`prober run`, `prober check`) call: it
makes the id (with the caller's `seq`), adds the configured headers (`[canary] headers`
then the route's own) and submits, so the two drivers cannot send different canaries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prober.config import Config
from prober.config.mail import Mailbox, Route
from prober.measurement import Measurement
from prober.probes.authresults import verdicts
from prober.probes.base import ProbeContext
from prober.probes.canary import (
    RUN,
    CanaryId,
    CanaryKey,
    build_message,
    new_canary_id,
    received_hops,
    split_delay,
)
from prober.probes.imap import Arrival
from prober.probes.smtp import Submission, submit
from prober.schema import (
    FIELD_CANARY,
    FIELD_DELAY_SOURCE,
    FIELD_DELIVERY_S,
    FIELD_ERROR,
    FIELD_ERROR_CLASS,
    FIELD_OUTCOME,
    FIELD_RECEIVE_DELAY_S,
    FIELD_SEND_DELAY_S,
    FIELD_SEQ,
    FIELD_SMTP_ENHANCED_CODE,
    MAIL_ROUNDTRIP,
    SMTP_PREFIX,
    TAG_DIRECTION,
    TAG_RECIPIENT,
    TAG_ROUTE,
    TAG_SENDER,
    TAG_VANTAGE,
    DelaySource,
    RoundtripOutcome,
)

Fields = dict[str, float | int | str | bool | None]


@dataclass(frozen=True)
class CanaryTarget:
    """One route's canary: who sends it to whom, with which extra headers."""

    route: Route
    sender: Mailbox
    recipient: Mailbox
    headers: tuple[tuple[str, str], ...] = ()  # [canary] headers, then the route's own

    @classmethod
    def of(cls, config: Config, route: Route) -> CanaryTarget:
        return cls(route, config.mailboxes[route.sender], config.mailboxes[route.recipient],
                   config.canary.headers + route.headers)

    def tags(self, vantage: str) -> dict[str, str]:
        return {TAG_VANTAGE: vantage, TAG_ROUTE: self.route.name,
                TAG_SENDER: self.sender.address, TAG_RECIPIENT: self.recipient.address,
                TAG_DIRECTION: self.route.direction}


@dataclass(frozen=True)
class Sent:
    """A canary handed to the provider (or refused): everything its point needs later."""

    target: CanaryTarget
    canary: CanaryId
    submission: Submission

    @property
    def route(self) -> Route:
        return self.target.route

    @property
    def sender(self) -> Mailbox:
        return self.target.sender

    @property
    def recipient(self) -> Mailbox:
        return self.target.recipient

    @property
    def time_ns(self) -> int:
        # the schema: timestamp = when the provider accepted it, or the attempt if refused
        return self.submission.accepted_ns or self.submission.started_ns

    @property
    def initial_outcome(self) -> RoundtripOutcome:
        if self.submission.ok:
            return RoundtripOutcome.PENDING
        return (RoundtripOutcome.SEND_UNCERTAIN if self.submission.uncertain
                else RoundtripOutcome.SEND_FAILED)


async def send_canary(ctx: ProbeContext, target: CanaryTarget, seq: int,
                      register: Callable[[CanaryId], None] | None = None, *,
                      key: CanaryKey, driver: str = RUN) -> Sent:
    """Make canary number `seq` of this vantage and route, signed with `key` for its
    recipient and marked with the driver that sent it (`run`, `check`), and submit it.

    `register` is called with the new id before the first byte is sent (the ledger entry,
    a watcher's expect), so a fast arrival cannot go unclaimed.
    """
    cid = new_canary_id(ctx.vantage, target.route.name, seq, key=key,
                        recipient=target.recipient.address, driver=driver)
    if register is not None:
        register(cid)
    msg = build_message(cid, target.sender.address, target.recipient.address,
                        datetime.now(UTC), dict(target.headers))
    submission = await submit(target.sender, ctx.timeouts, msg.as_bytes(),
                              [target.recipient.address])
    return Sent(target, cid, submission)


def roundtrip_point(vantage: str, sent: Sent, outcome: str,
                    arrival: Arrival | None = None) -> Measurement:
    """The `mail_roundtrip` point; written again with the same tags and time when the fate
    is known, so InfluxDB keeps the last word (README: schema)."""
    sub = sent.submission
    fields: Fields = {
        FIELD_OUTCOME: outcome,
        FIELD_CANARY: sent.canary.id,
        FIELD_SEQ: sent.canary.seq,
        "smtp_connect_s": sub.phases.get("connect_s"),
        "smtp_tls_s": sub.phases.get("tls_s"),
        "smtp_auth_s": sub.phases.get("auth_s"),
        "smtp_data_s": sub.phases.get("data_s"),
        "smtp_total_s": sub.phases.get("total_s"),
        "smtp_code": sub.code,
        "queue_id": sub.queue_id,
        FIELD_ERROR: str(sub.error) if sub.error else None,
        FIELD_ERROR_CLASS: sub.error.kind if sub.error else None,
        FIELD_SMTP_ENHANCED_CODE: sub.enhanced_code,
        **{SMTP_PREFIX + name: value for name, value in sub.facts.items()},
    }
    if arrival is not None:
        fields.update(arrival_fields(sent, arrival))
    return Measurement(MAIL_ROUNDTRIP, sent.target.tags(vantage), fields, sent.time_ns)


def arrival_fields(sent: Sent, arrival: Arrival) -> Fields:
    # the attempt's start stands in when the 250 never came (send_uncertain)
    return fields_at_arrival(arrival, sent.time_ns, sent.route.direction,
                             sent.route.provider_domains)


def fields_at_arrival(arrival: Arrival, accepted_ns: int, direction: str,
                      provider_domains: tuple[str, ...], delivery_s: float | None = None,
                      delay_source: DelaySource = DelaySource.DETECT) -> Fields:
    """The fields an arrival adds. `delivery_s` is the caller's figure when it has a better
    one than our detection on the wall clock (the daemon: monotonic, or INTERNALDATE when
    it was not watching), with `delay_source` saying which."""
    hops = received_hops(arrival.headers)
    split = split_delay(hops, accepted_ns, arrival.internaldate_ns, direction, provider_domains)
    skew = split.clock_skew or (
        # INTERNALDATE is truncated to the second: earlier than that is another clock
        arrival.internaldate_ns is not None and arrival.internaldate_ns < accepted_ns - 2e9)
    return {
        # acceptance (SMTP 250) -> visible in the mailbox, by `delay_source`
        FIELD_DELIVERY_S: (delivery_s if delivery_s is not None
                           else (arrival.detected_ns - accepted_ns) / 1e9),
        FIELD_DELAY_SOURCE: delay_source,
        # the server's INTERNALDATE (1 s resolution, its clock) -> acceptance on ours
        "visible_s": ((arrival.internaldate_ns - accepted_ns) / 1e9
                      if arrival.internaldate_ns is not None else None),
        FIELD_SEND_DELAY_S: split.send_delay_s,
        FIELD_RECEIVE_DELAY_S: split.receive_delay_s,
        "clock_skew": skew,
        "hops": len(hops),
        "detect": arrival.detect,
        "folder": arrival.folder,
        # true: the canary's MAC verified; false: an unsigned canary sent before the
        # upgrade to signed canaries, matched by its id alone
        "authenticated": arrival.authenticated,
        **verdicts(arrival.headers),
    }


def fate(sent: Sent, arrival: Arrival | None, late_after_s: float) -> RoundtripOutcome:
    if not sent.submission.ok and arrival is None:
        return sent.initial_outcome
    if arrival is None:
        return RoundtripOutcome.PENDING
    delay = (arrival.detected_ns - sent.time_ns) / 1e9
    return RoundtripOutcome.LATE if delay > late_after_s else RoundtripOutcome.DELIVERED
