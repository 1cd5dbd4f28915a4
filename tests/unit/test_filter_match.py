"""Which arrived messages the §4/§5 probe takes for its own: only a test message of this
run, for this mailbox, whose MAC verifies with this vantage's key; never a reply."""

from __future__ import annotations

from prober.config.filters import FilterProbe
from prober.config.mail import Endpoint, ImapSettings, Mailbox
from prober.config.reader import Secret
from prober.probes import mailfilter as fp
from prober.probes.canary import CanaryKey

KEY = CanaryKey(b"a" * 32, "test")
OTHER = CanaryKey(b"b" * 32, "test")


def _mailbox(name: str) -> Mailbox:
    ep = Endpoint("127.0.0.1", 1, "none")
    return Mailbox(name, f"{name}@example.test", name, Secret("env:X", "x"), ep,
                   ImapSettings(ep))


def _setup(key: CanaryKey) -> tuple[fp.FilterTarget, dict[str, fp.TestMessage], bytes]:
    target = fp.FilterTarget(FilterProbe("f1", "spam", "alice", "bob", "junk", ("gtube",)),
                             _mailbox("alice"), _mailbox("bob"), KEY)
    msg = fp.TestMessage("gtube", False, fp._signed(key, "v1", "f1", "gtube", False,
                                                     "bob@example.test"))
    raw = fp.build(msg, "spam", "alice@example.test", "bob@example.test").as_bytes()
    return target, {msg.cid.id: msg}, raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def test_a_verified_message_of_this_run_matches() -> None:
    target, waiting, headers = _setup(KEY)
    assert fp._match(headers, "v1", target, waiting) == next(iter(waiting))


def test_another_key_another_vantage_or_a_reply_never_match() -> None:
    target, waiting, headers = _setup(OTHER)
    assert fp._match(headers, "v1", target, waiting) is None
    target, waiting, headers = _setup(KEY)
    assert fp._match(headers, "v2", target, waiting) is None
    reply = b"In-Reply-To: <prober.filter.x@example.test>\r\n" + headers
    assert fp._match(reply, "v1", target, waiting) is None
    # the same headers for another mailbox: the MAC covers the recipient
    other_box = fp.FilterTarget(target.probe, target.sender, _mailbox("carol"), KEY)
    assert fp._match(headers, "v1", other_box, waiting) is None


def test_the_attachment_state() -> None:
    msg = fp.TestMessage("zip", False, fp._signed(KEY, "v1", "f1", "zip", False, "b@x"))
    raw = fp.build(msg, "virus", "a@x", "b@x").as_bytes()
    assert fp._attachment_state(raw, "zip") == "intact"
    clean = fp.TestMessage("zip", True, fp._signed(KEY, "v1", "f1", "zip", True, "b@x"))
    assert fp._attachment_state(fp.build(clean, "virus", "a@x", "b@x").as_bytes(),
                                "zip") == "stripped"
