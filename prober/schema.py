"""The measurement schema's vocabulary: the words that cross rooms.

Probes write these names and values, the spool and InfluxDB carry them, the judge reads
them back and the README documents them (a test holds the README's tables to this
module). A word used by more than one room lives here and nowhere else, so a rename
cannot leave a reader behind. This module imports nothing from the project.
"""

from __future__ import annotations

from enum import StrEnum

# -- measurement names ---------------------------------------------------------------------
MAIL_ROUNDTRIP = "mail_roundtrip"
MAIL_ACCESS = "mail_access"
WEBMAIL_LOAD = "webmail_load"
HEARTBEAT = "prober_heartbeat"
MAIL_FILTER = "mail_filter"  # §4/§5: a GTUBE or EICAR canary and what the filter did
MAIL_BLOCKLIST = "mail_blocklist"  # §4: a provider address or domain against a DNSBL zone
MAIL_ABUSE = "mail_abuse"  # §4: does the provider's abuse@ address accept mail

MEASUREMENTS = (MAIL_ROUNDTRIP, MAIL_ACCESS, WEBMAIL_LOAD, HEARTBEAT, MAIL_FILTER,
                MAIL_BLOCKLIST, MAIL_ABUSE)


# -- outcomes --------------------------------------------------------------------------------
# StrEnum members are str: they compare equal to the stored strings and are written as
# their value, so points written before this module existed read back the same.
class RoundtripOutcome(StrEnum):
    """`mail_roundtrip.outcome` (a field: the point is rewritten as the fate becomes known)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    LATE = "late"
    LOST = "lost"
    SEND_FAILED = "send_failed"
    SEND_UNCERTAIN = "send_uncertain"
    # never accepted (no SMTP 250: the agent stopped during the session) and never arrived:
    # our fault, not the provider's; never charged
    ABANDONED = "abandoned"


class DelaySource(StrEnum):
    """`mail_roundtrip.delay_source`: which clock `delivery_s` was read from."""

    DETECT = "detect"  # SMTP 250 -> our detection, both on the agent's monotonic clock
    INTERNALDATE = "internaldate"  # SMTP 250 -> the server's INTERNALDATE (we were not watching)


class AccessOutcome(StrEnum):
    """`mail_access.outcome` (a tag)."""

    OK = "ok"
    FAIL = "fail"


class WebmailOutcome(StrEnum):
    """`webmail_load.outcome` (a tag)."""

    OK = "ok"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    FAIL = "fail"


# Canary outcomes that are final verdicts about the provider, and those still waiting.
ARRIVED = (RoundtripOutcome.DELIVERED, RoundtripOutcome.LATE)
IN_FLIGHT = (RoundtripOutcome.PENDING, RoundtripOutcome.SEND_UNCERTAIN)


# -- error classes ------------------------------------------------------------------------------
class ErrorClass(StrEnum):
    """What kind of failure a probe met (`error_class` field; the first word of `error`)."""

    DNS = "dns"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    AUTH = "auth"
    PROTOCOL = "protocol"
    CLOSED = "closed"
    HTTP = "http"
    # The prober's own failure (Chromium would not start, our proxy could not bind, no file
    # descriptors or memory left, a bug): nothing the target did. Never charged to the
    # provider: the judge counts such a point as a load not measured (coverage), `prober
    # check` as UNKNOWN.
    PROBER = "prober"


# -- tags and fields that more than one room reads or writes --------------------------------------
TAG_VANTAGE = "vantage"
TAG_ROUTE = "route"
TAG_MAILBOX = "mailbox"
TAG_PROTOCOL = "protocol"
TAG_OUTCOME = "outcome"
TAG_TARGET = "target"
TAG_PROFILE = "profile"
TAG_DIRECTION = "direction"
TAG_SENDER = "sender"
TAG_RECIPIENT = "recipient"
TAG_FAMILY = "family"  # mail_access: ipv4 | ipv6, the address family probed

FIELD_OUTCOME = "outcome"
FIELD_CANARY = "canary"
FIELD_SEQ = "seq"
FIELD_ERROR = "error"
FIELD_ERROR_CLASS = "error_class"
FIELD_DELIVERY_S = "delivery_s"
FIELD_DELAY_SOURCE = "delay_source"
FIELD_SEND_DELAY_S = "send_delay_s"
FIELD_RECEIVE_DELAY_S = "receive_delay_s"
FIELD_LOAD_S = "load_s"
FIELD_OPEN_S = "open_s"
FIELD_THRESHOLD_S = "threshold_s"

# the facts of a mail connection (mail_access; on mail_roundtrip prefixed SMTP_PREFIX)
FIELD_TLS_VERSION = "tls_version"
FIELD_TLS_CIPHER = "tls_cipher"
FIELD_CERT_EXPIRY_DAYS = "cert_expiry_days"
FIELD_CERT_SUBJECT = "cert_subject"
FIELD_PEER_IP = "peer_ip"
CONNECTION_FACTS = (FIELD_TLS_VERSION, FIELD_TLS_CIPHER, FIELD_CERT_EXPIRY_DAYS,
                    FIELD_CERT_SUBJECT, FIELD_PEER_IP)
SMTP_PREFIX = "smtp_"
FIELD_ADDRESSES = "addresses"  # mail_access: how many addresses the host name resolved to
# mail_roundtrip: the receiving side's Authentication-Results, and the SMTP enhanced code
FIELD_SPF_RESULT = "spf_result"
FIELD_DKIM_RESULT = "dkim_result"
FIELD_DMARC_RESULT = "dmarc_result"
FIELD_AUTHSERV_ID = "authserv_id"
FIELD_AUTHRES_ERROR = "authres_error"
FIELD_SMTP_ENHANCED_CODE = "smtp_enhanced_code"


class Direction(StrEnum):
    """`mail_roundtrip.direction`: relative to the provider under contract."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"
    INTERNAL = "internal"
