"""`[[webmail]]` and `[profiles.NAME]`: defaults, profiles folded into targets, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prober.config.reader import ConfigError, Section
from prober.config.webmail import (
    WebmailTarget,
    page_open_limit_s,
    parse_profiles,
    parse_webmail,
)
from prober.contract import Contract, resolve


def parse(data: dict[str, Any]) -> tuple[WebmailTarget, ...]:
    root = Section(data, "probes.toml")
    targets = parse_webmail(root)
    root.check_unknown()
    return targets


def test_defaults_measure_both_contract_profiles_every_five_minutes() -> None:
    (t,) = parse({"webmail": [{"name": "mail", "url": "https://mail.example.com/"}]})
    assert [p.name for p in t.profiles] == ["narrowband", "broadband"]
    assert [p.preset for p in t.profiles] == ["dial", "dsl"]
    assert t.interval_s == 300.0
    # longer than the contract's limit: 60 s narrowband, 20 s broadband
    assert [t.timeout_for(p, Contract()) for p in t.profiles] == [60.0, 20.0]
    assert (t.engine, t.http2, t.connections_per_host, t.login) == ("httpx", True, 6, None)


def test_user_profiles_and_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WM_PW", "hunter2")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    data = {
        "profiles": {"office": {"down_kbps": 2000, "up_kbps": 512, "rtt_ms": 35},
                     "modem": {"down_kbps": 33.6, "up_kbps": 33.6, "rtt_ms": 150,
                               "contract_class": "narrowband"}},
        "webmail": [{"name": "mail", "url": "https://mail.example.com/",
                     "profiles": ["office", "modem", "cable"], "interval_s": 60,
                     "timeout_s": 45, "ca_file": str(ca), "over_threshold": "critical",
                     "limits": {"max_requests": 50},
                     "login": {"user": "alice", "password_env": "WM_PW",
                               "expect_text": "Inbox"}}],
    }
    (t,) = parse(data)
    office, modem, cable = t.profiles
    assert (office.down_kbps, office.up_kbps, office.rtt_ms) == (2000, 512, 35)
    assert office.contract_class == "broadband" and page_open_limit_s(Contract(), modem) == 30.0
    assert cable.preset == "cable"
    assert t.timeout_for(cable, Contract()) == 45 and t.interval_s == 60
    assert t.limits.max_requests == 50 and t.over_threshold == "critical"
    assert t.login is not None and t.login.password.reveal() == "hunter2"
    assert "hunter2" not in repr(t)
    assert set(parse_profiles(Section(data, "probes.toml"))) == {"office", "modem"}


def test_the_default_timeout_follows_the_contracts_overridden_limit() -> None:
    (t,) = parse({"webmail": [{"name": "mail", "url": "https://mail.example.com/",
                               "profiles": ["narrowband", "broadband", "cable", "dial"]}]})
    contract = resolve({"webmail_broadband": {"mean_max_s": 5}})
    # broadband and cable by their class, narrowband and dial untouched
    assert [t.timeout_for(p, contract) for p in t.profiles] == [60.0, 10.0, 10.0, 60.0]
    # a clause naming a profile judges it whatever its bandwidth says
    moved = resolve({"webmail_narrowband": {"profiles": ("narrowband", "cable")}})
    assert [page_open_limit_s(moved, p) for p in t.profiles] == [30.0, 10.0, 30.0, 30.0]


@pytest.mark.parametrize(("entry", "message"), [
    ({"url": "https://x/"}, "probes.toml: webmail[0].name: is required"),
    ({"name": "m", "url": "ftp://x/"}, "webmail[0].url: 'ftp://x/' must be an http"),
    ({"name": "m", "url": "https://x/", "profiles": ["modem"]},
     "webmail[0].profiles[0]: unknown profile 'modem'"),
    ({"name": "m", "url": "https://x/", "profiles": []},
     "webmail[0].profiles: must name at least one profile"),
    ({"name": "m", "url": "https://x/", "engine": "selenium"},
     "webmail[0].engine: must be one of httpx"),
    ({"name": "m", "url": "https://x/", "timout_s": 5}, "webmail[0].timout_s: unknown key"),
    ({"name": "m", "url": "https://x/", "login": {"user": "a", "password": "p"}},
     "webmail[0].login.password: secrets are not accepted inline"),
    ({"name": "m", "url": "https://x/", "ca_file": "/nonexistent.pem"},
     "webmail[0].ca_file: no such file"),
    ({"name": "m", "url": "https://x/", "limits": {"max_pages": 3}},
     "webmail[0].limits.max_pages: unknown key"),
])
def test_bad_target_names_file_and_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"webmail": [entry]})
    assert message in str(err.value)


def test_bad_profiles_name_file_and_key() -> None:
    with pytest.raises(ConfigError, match=r"profiles.office.rtt_ms: is required"):
        parse({"profiles": {"office": {"down_kbps": 1, "up_kbps": 1}}})
    with pytest.raises(ConfigError, match=r"profiles.narrowband: 'narrowband' is the contract"):
        parse({"profiles": {"narrowband": {"down_kbps": 1, "up_kbps": 1, "rtt_ms": 1}}})
    with pytest.raises(ConfigError, match=r"profiles.x.down_kbps: must be >= 1"):
        parse({"profiles": {"x": {"down_kbps": 0, "up_kbps": 1, "rtt_ms": 1}}})
    with pytest.raises(ConfigError, match=r"webmail\[1\].name: webmail target 'm' is defined"):
        parse({"webmail": [{"name": "m", "url": "https://x/"},
                           {"name": "m", "url": "https://y/"}]})


def test_login_over_plain_http_needs_an_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WM_PW", "secret")
    login = {"user": "u", "password_env": "WM_PW"}
    with pytest.raises(ConfigError, match=r"webmail\[0\]\.url: the login would send the "
                                          r"password unencrypted"):
        parse({"webmail": [{"name": "w", "url": "http://mail.example/", "login": login}]})
    (ok,) = parse({"webmail": [{"name": "w", "url": "http://mail.example/", "login": login,
                                "allow_plaintext": True}]})
    assert ok.login is not None
    (local,) = parse({"webmail": [{"name": "w", "url": "http://127.0.0.1:8080/",
                                   "login": login}]})
    assert local.login is not None
    # without a login there is no secret to protect: a plain page load needs no opt-in
    (page,) = parse({"webmail": [{"name": "w", "url": "http://mail.example/"}]})
    assert page.login is None


def test_loading_the_config_imports_no_probe_and_no_http_stack(tmp_path: Path) -> None:
    # config/ is a leaf: profiles are data there, the line that applies them is a probe's.
    path = tmp_path / "probes.toml"
    path.write_text(f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path}"\n'
                    '[profiles.office]\ndown_kbps = 2000\nup_kbps = 500\nrtt_ms = 30\n'
                    '[[webmail]]\nname = "mail"\nurl = "https://mail.example.com/"\n'
                    'profiles = ["office", "narrowband"]\n')
    code = ("import sys, prober.config\n"
            f"cfg = prober.config.load({str(path)!r})\n"
            "assert [p.name for p in cfg.webmail[0].profiles] == ['office', 'narrowband']\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore', "
            "'h2') or m.startswith(('prober.probes', 'prober.agent', 'prober.sla')))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_extra_requests_stand_for_what_scripts_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WM_PW", "x")
    (t,) = parse({"webmail": [{"name": "mail", "url": "https://m.example/",
                               "login": {"user": "a", "password_env": "WM_PW"},
                               "extra": [{"url": "/api/unread"},
                                         {"url": "?_task=mail&_action=list", "after": "login"}]}]})
    assert [(e.url, e.after) for e in t.extra_requests] == [
        ("/api/unread", "page"), ("?_task=mail&_action=list", "login")]
    with pytest.raises(ConfigError, match=r"webmail\[0\]\.extra\[0\]\.after: \"login\" needs"):
        parse({"webmail": [{"name": "m", "url": "https://m/",
                            "extra": [{"url": "/x", "after": "login"}]}]})
    with pytest.raises(ConfigError, match=r"extra\[0\]\.url: 'ftp://x/' must be"):
        parse({"webmail": [{"name": "m", "url": "https://m/", "extra": [{"url": "ftp://x/"}]}]})
    with pytest.raises(ConfigError, match=r"extra\[0\]\.method"):
        parse({"webmail": [{"name": "m", "url": "https://m/",
                            "extra": [{"url": "/x", "method": "POST"}]}]})
