"""Authenticated canaries: the MAC, what verifies, what is a reply, the key's file."""

from __future__ import annotations

import dataclasses
import logging
import stat
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from prober.config import ConfigError, load
from prober.config.show import render
from prober.probes.canary import (
    CHECK,
    HEADER,
    MAC_HEX,
    REJECTED,
    UNSIGNED,
    VERIFIED,
    CanaryId,
    CanaryKey,
    authenticate,
    build_message,
    claim,
    new_canary_id,
)
from prober.probes.canary_key import KEY_FILE, SIGNED_SINCE_FILE, load_canary_key
from tests.canary_helpers import OTHER_KEY, TEST_KEY, TEST_KEY_TEXT

BOB = "bob@ext.example.org"
SENT_AT = datetime(2026, 11, 24, 21, 28, 0, tzinfo=UTC)


def signed(driver: str = "run", recipient: str = BOB, key: CanaryKey = TEST_KEY) -> CanaryId:
    return new_canary_id("probe-1", "corp-to-ext", 42, key=key, recipient=recipient,
                         driver=driver, stamp=1795555680)


def block(cid: CanaryId, strip_header: bool = False, **changes: str | None) -> bytes:
    """The header block of the canary as sent, optionally altered as a gateway or a person
    would (a header set to None is removed)."""
    raw = build_message(cid, "probe@corp.example", BOB, SENT_AT).as_bytes()
    parsed = BytesHeaderParser().parsebytes(raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    if strip_header:
        del parsed[HEADER]
    for name, value in changes.items():
        name = name.replace("_", "-")
        del parsed[name]
        if value is not None:
            parsed[name] = value
    return parsed.as_bytes()


def judge(raw: bytes, key: CanaryKey = TEST_KEY, recipient: str = BOB):
    c = claim(raw)
    assert c is not None
    return authenticate(c, key, recipient)


def test_signed_token_and_subject_carry_stamp_driver_and_mac() -> None:
    cid = signed()
    assert cid.token == (f"v=probe-1; r=corp-to-ext; s=42; id={cid.id}; t=1795555680; "
                         f"by=run; mac={cid.mac}")
    assert cid.subject == (f"[prober] canary probe-1/corp-to-ext #42 {cid.id} t=1795555680 "
                           f"by=run mac={cid.mac}")
    assert len(cid.mac or "") == MAC_HEX


def test_genuine_canary_verifies_by_header_and_by_subject_alone() -> None:
    cid = signed()
    for raw in (block(cid), block(cid, strip_header=True)):
        v = judge(raw)
        assert (v.status, v.canary, v.original) == (VERIFIED, cid, True)


def test_spam_tagged_subject_still_verifies() -> None:
    cid = signed()
    v = judge(block(cid, strip_header=True, Subject=f"[SPAM] {cid.subject}"))
    assert v.status == VERIFIED


@pytest.mark.parametrize("change", ["seq", "route", "vantage", "stamp", "driver", "mac"])
def test_any_altered_part_fails(change: str) -> None:
    cid = signed()
    altered = {"seq": dataclasses.replace(cid, seq=43),
               "route": dataclasses.replace(cid, route="corp-to-int"),
               "vantage": dataclasses.replace(cid, vantage="probe-2"),
               "stamp": dataclasses.replace(cid, stamp=1795555681),
               "driver": dataclasses.replace(cid, driver=CHECK),
               "mac": dataclasses.replace(cid, mac="0" * MAC_HEX)}[change]
    assert not TEST_KEY.verify(altered, BOB)
    v = judge(block(altered), recipient=BOB)
    assert v.status == REJECTED and not v.original


def test_other_key_or_other_mailbox_fails() -> None:
    cid = signed()
    assert judge(block(cid), key=OTHER_KEY).status == REJECTED
    # the genuine canary's headers copied into another mailbox: not a canary there
    assert judge(block(cid), recipient="carol@ext.example.org").status == REJECTED
    # the address is compared without regard to case or surrounding space
    assert judge(block(cid), recipient=" Bob@Ext.Example.org").status == VERIFIED


def test_mac_of_wrong_length_fails() -> None:
    cid = signed()
    assert cid.mac is not None
    assert not TEST_KEY.verify(dataclasses.replace(cid, mac=cid.mac[:-1]), BOB)
    assert not TEST_KEY.verify(dataclasses.replace(cid, mac=cid.mac + "0"), BOB)


def test_unsigned_canary_is_unsigned_not_verified() -> None:
    legacy = CanaryId("probe-1", "corp-to-ext", 42, "0123456789abcdef")
    v = judge(block(legacy))
    assert (v.status, v.canary, v.original) == (UNSIGNED, legacy, False)
    # a signed canary stripped of its MAC by a forger reads as unsigned too
    stripped = dataclasses.replace(signed(), stamp=None, mac=None)
    assert judge(block(stripped)).status == UNSIGNED


@pytest.mark.parametrize("changes", [
    {"Subject": "Re: {subject}", "In_Reply_To": "{mid}"},
    {"Subject": "Re: {subject}"},  # a client that sets no In-Reply-To
    {"Subject": "AW: {subject}"},
    {"Subject": "Fwd: {subject}"},
    {"Subject": "[SPAM] FW: {subject}"},
    {"References": "{mid}"},
    {"Resent_From": "someone@corp.example", "Resent_Date": "Tue, 24 Nov 2026 22:00 +0000"},
])
def test_reply_forward_or_resend_is_rejected_even_with_a_good_mac(changes: dict) -> None:
    cid = signed()
    mid = f"{cid.message_id_prefix}corp.example>"
    values = {k: v.format(subject=cid.subject, mid=mid) for k, v in changes.items()}
    for strip in (False, True):
        v = judge(block(cid, strip_header=strip, **values))
        assert v.status == REJECTED and not v.original, (values, strip)


def test_a_copy_with_a_new_message_id_verifies_but_is_not_the_original() -> None:
    cid = signed()
    v = judge(block(cid, Message_ID="<new.1@client.example>"))
    assert v.status == VERIFIED and not v.original
    assert judge(block(cid, Message_ID=None)).original is False


def test_other_vantages_tokens_are_not_judged_here() -> None:
    cid = signed()
    c = claim(block(cid))
    assert c is not None
    assert c.of_vantage("probe-1") is not None
    assert c.of_vantage("probe-2") is None


def test_key_never_shows_in_repr_or_str() -> None:
    assert TEST_KEY_TEXT not in repr(TEST_KEY) and TEST_KEY_TEXT not in str(TEST_KEY)
    assert "****" in repr(TEST_KEY)


# --- the key's source ---------------------------------------------------------------------

def _config(tmp_path: Path, canary: str = "") -> Path:
    path = tmp_path / "probes.toml"
    path.write_text(f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path / "state"}"\n{canary}')
    return path


def test_no_key_configured_makes_one_in_the_state_dir_once(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture):
    config = load(_config(tmp_path))
    assert config.canary.key is None
    assert "# key not set" in render(config)
    with caplog.at_level(logging.INFO):
        first = load_canary_key(config)
    path = tmp_path / "state" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text().strip()
    assert len(bytes.fromhex(text)) == 32
    assert any("created a new canary key" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)
    assert not any(text in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        second = load_canary_key(config)
    assert not any("created" in r.getMessage() for r in caplog.records)
    cid = signed(key=first)
    assert second.verify(cid, BOB) and first.source == f"state:{path}"
    assert first.since_ns == second.since_ns > 0
    assert (tmp_path / "state" / SIGNED_SINCE_FILE).exists()


def test_configured_key_is_used_and_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROBER_TEST_CANARY_KEY", TEST_KEY_TEXT)
    config = load(_config(tmp_path, '[canary]\nkey_env = "PROBER_TEST_CANARY_KEY"\n'))
    key = load_canary_key(config)
    assert key.verify(signed(), BOB)
    assert not (tmp_path / "state" / KEY_FILE).exists()
    shown = render(config)
    assert TEST_KEY_TEXT not in shown
    assert 'key = "****" # from env:PROBER_TEST_CANARY_KEY' in shown


def test_key_file_and_credential_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "canary.secret").write_text(TEST_KEY_TEXT + "\n")
    (tmp_path / "canary.secret").chmod(0o600)
    config = load(_config(tmp_path, '[canary]\nkey_file = "canary.secret"\n'))
    assert load_canary_key(config).verify(signed(), BOB)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = load(_config(tmp_path, '[canary]\nkey_credential = "canary.secret"\n'))
    assert load_canary_key(config).verify(signed(), BOB)


def test_short_or_inline_key_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROBER_SHORT", "tooshort")
    with pytest.raises(ConfigError, match=r"canary.key_env: the canary key must be at least "
                                          r"16 bytes") as exc:
        load(_config(tmp_path, '[canary]\nkey_env = "PROBER_SHORT"\n'))
    assert "tooshort" not in str(exc.value)
    with pytest.raises(ConfigError, match="not accepted inline"):
        load(_config(tmp_path, '[canary]\nkey = "0123456789abcdef0123"\n'))


def test_state_dir_unusable_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    with pytest.raises(ConfigError, match=r"canary.key_file: no key configured and cannot "
                                          r"create .*configure key_file"):
        load_canary_key(load(_config(tmp_path)))


def test_unreadable_key_path_is_a_config_error_naming_it(tmp_path: Path) -> None:
    # a directory where the key file should be: neither readable as a key nor replaceable
    (tmp_path / "state" / KEY_FILE).mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"canary.key_file: .*{KEY_FILE}"):
        load_canary_key(load(_config(tmp_path)))


def test_truncated_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / KEY_FILE).write_text("abc\n")
    with pytest.raises(ConfigError, match="no usable key"):
        load_canary_key(load(_config(tmp_path)))


def test_previous_key_verifies_its_canaries_in_flight_but_signs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    old_text, new_text = "the-old-canary-key-0123456789", "the-new-canary-key-9876543210"
    monkeypatch.setenv("PROBER_OLD_KEY", old_text)
    monkeypatch.setenv("PROBER_NEW_KEY", new_text)
    old = load_canary_key(load(_config(tmp_path, '[canary]\nkey_env = "PROBER_OLD_KEY"\n')))
    in_flight = signed(key=old)
    # rotated without keeping the old key: canaries in flight cannot verify; said loudly
    with caplog.at_level(logging.WARNING):
        rotated = load_canary_key(load(_config(
            tmp_path, '[canary]\nkey_env = "PROBER_NEW_KEY"\n')))
    assert not rotated.verify(in_flight, BOB)
    warnings = [r.getMessage() for r in caplog.records if "canary key changed" in r.getMessage()]
    assert len(warnings) == 1 and old.fingerprint in warnings[0]
    assert not any(t in r.getMessage() for r in caplog.records for t in (old_text, new_text))
    # the same change with the old key kept as previous_key: verified, and no warning
    (tmp_path / "state" / "canary-key-fingerprint").write_text(old.fingerprint + "\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        config = load(_config(tmp_path, '[canary]\nkey_env = "PROBER_NEW_KEY"\n'
                                        'previous_key_env = "PROBER_OLD_KEY"\n'))
        both = load_canary_key(config)
    assert not caplog.records
    assert both.verify(in_flight, BOB)
    fresh = signed(key=both)
    assert rotated.verify(fresh, BOB) and not old.verify(fresh, BOB)  # signs with the new
    assert 'previous_key = "****" # from env:PROBER_OLD_KEY' in render(config)
    # unchanged on the next start: nothing to say
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_canary_key(config)
    assert not caplog.records


@pytest.mark.parametrize("length", [20, 64])
def test_longest_names_verify_by_the_folded_subject_alone(length: int) -> None:
    cid = new_canary_id("v" * length, "r" * length, 2**40, key=TEST_KEY, recipient=BOB,
                        driver=CHECK)
    sent = build_message(cid, "probe@corp.example", BOB, SENT_AT).as_bytes()
    subject = sent.split(b"Subject: ", 1)[1].split(b"\r\nDate:", 1)[0]
    assert len(cid.subject) > 78 and b"\r\n " in subject  # folded (and encoded at 64)
    v = judge(block(cid, strip_header=True))
    assert (v.status, v.canary) == (VERIFIED, cid)
