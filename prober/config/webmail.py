"""The webmail probe's settings: `[[webmail]]` targets and `[profiles.NAME]`.

Profiles are folded into the targets: each target carries the resolved `Profile` objects
it is measured under (named as the config names them), so the probe needs nothing else.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prober.config.hosts import is_loopback
from prober.config.profiles import (
    ALIASES,
    BROADBAND,
    CONTRACT_CLASSES,
    NARROWBAND,
    PRESETS,
    Profile,
    resolve_profile,
)
from prober.config.reader import Secret, Section
from prober.contract import Clause, Contract

ENGINES = ("httpx", "browser")
OVER_THRESHOLD_STATES = ("warning", "critical")
DEFAULT_PROFILES = (NARROWBAND, BROADBAND)
DEFAULT_INTERVAL_S = 300.0
# A load is given twice the contract's limit before it is called a timeout, so a slow
# load still yields its real duration (the mean needs it) while a hung one is bounded.
TIMEOUT_FACTOR = 2.0


@dataclass(frozen=True)
class LoginSettings:
    user: str
    password: Secret
    user_field: str | None = None  # default: the form's first text or email input
    password_field: str | None = None  # default: the form's password input
    expect_text: str | None = None  # proof of the inbox; default: no password field left


@dataclass(frozen=True)
class ExtraRequest:
    """A request the page's scripts make (e.g. the message list's XHR), which the httpx
    engine cannot see: fetched once the page (or, `after = "login"`, the inbox) and its
    scripts are in, and counted in that page's time like any sub-resource."""

    url: str  # absolute, or relative to the target's url
    after: str = "page"  # page | login


EXTRA_AFTER = ("page", "login")


@dataclass(frozen=True)
class WebmailLimits:
    max_requests: int = 200
    max_page_bytes: int = 5_000_000
    max_resource_bytes: int = 10_000_000
    max_total_bytes: int = 50_000_000
    max_redirects: int = 10


@dataclass(frozen=True)
class WebmailTarget:
    name: str
    url: str
    profiles: tuple[Profile, ...] = field(
        default_factory=lambda: tuple(resolve_profile(p) for p in DEFAULT_PROFILES))
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float | None = None  # None: TIMEOUT_FACTOR x the profile's contract limit
    http2: bool = True
    connections_per_host: int = 6
    tls_verify: bool = True
    ca_file: str | None = None
    login: LoginSettings | None = None
    limits: WebmailLimits = field(default_factory=WebmailLimits)
    engine: str = "httpx"
    over_threshold: str = "warning"
    # the login's password may cross plain http:// (the configured URL or a form's action)
    allow_plaintext: bool = False
    extra_requests: tuple[ExtraRequest, ...] = ()

    def timeout_for(self, profile: Profile, contract: Contract) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        return TIMEOUT_FACTOR * page_open_limit_s(contract, profile)


def page_open_clause(contract: Contract, profile: Profile) -> Clause:
    """The clause that judges loads on `profile`: named in its `profiles`, else the one of
    the profile's contract class (every profile has one, so there always is a clause)."""
    clause = contract.page_open_clause(profile.name, profile.contract_class)
    assert clause is not None, profile  # contract_class is narrowband or broadband
    return clause


def page_open_limit_s(contract: Contract, profile: Profile) -> float:
    """The contract's mean page-open limit for `profile`, overrides applied."""
    return page_open_clause(contract, profile).num("mean_max_s")


def parse_profiles(root: Section) -> dict[str, Profile]:
    """User-defined `[profiles.NAME]` tables: down_kbps, up_kbps, rtt_ms, contract_class."""
    s = root.table("profiles")
    if s is None:
        return {}
    profiles: dict[str, Profile] = {}
    for name in list(s.data):
        p = s.table(name)
        assert p is not None
        if name in ALIASES:
            raise s.error(name, f"{name!r} is the contract's own word (= preset "
                          f"{ALIASES[name]!r}); name your profile differently")
        down = p.number("down_kbps", minimum=1, maximum=100_000_000)
        up = p.number("up_kbps", minimum=1, maximum=100_000_000)
        rtt = p.number("rtt_ms", minimum=0, maximum=10000)
        cls = p.choice("contract_class", CONTRACT_CLASSES, "")
        p.check_unknown()
        profiles[name] = Profile(name, down, up, rtt, cls, preset="",
                                 source=f"{root.file}: profiles.{name}")
    return profiles


def _login(s: Section) -> LoginSettings:
    login = LoginSettings(
        user=s.text("user"),
        password=s.secret("password"),
        user_field=s.text("user_field", None),
        password_field=s.text("password_field", None),
        expect_text=s.text("expect_text", None),
    )
    s.check_unknown()
    return login


def _limits(s: Section | None) -> WebmailLimits:
    if s is None:
        return WebmailLimits()
    d = WebmailLimits()
    limits = WebmailLimits(
        max_requests=s.integer("max_requests", d.max_requests, minimum=1, maximum=10000),
        max_page_bytes=s.integer("max_page_bytes", d.max_page_bytes, minimum=1000,
                                 maximum=1 << 30),
        max_resource_bytes=s.integer("max_resource_bytes", d.max_resource_bytes,
                                     minimum=1000, maximum=1 << 30),
        max_total_bytes=s.integer("max_total_bytes", d.max_total_bytes, minimum=1000,
                                  maximum=1 << 30),
        max_redirects=s.integer("max_redirects", d.max_redirects, minimum=0, maximum=50),
    )
    s.check_unknown()
    return limits


def _extras(sections: list[Section], has_login: bool) -> tuple[ExtraRequest, ...]:
    extras = []
    for e in sections:
        url = e.text("url")
        parts = urlsplit(url)
        if parts.scheme not in ("", "http", "https") or any(c in url for c in "\r\n "):
            raise e.error("url", f"{url!r} must be an http(s) URL or a path")
        after = e.choice("after", EXTRA_AFTER, "page")
        if after == "login" and not has_login:
            raise e.error("after", '"login" needs a [webmail.login] table')
        e.check_unknown()
        extras.append(ExtraRequest(url, after))
    return tuple(extras)


def parse_target(s: Section, custom: dict[str, Profile]) -> WebmailTarget:
    name = s.text("name")
    url = s.text("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise s.error("url", f"{url!r} must be an http:// or https:// URL with a host")
    names = s.text_list("profiles", list(DEFAULT_PROFILES))
    if not names:
        raise s.error("profiles", "must name at least one profile")
    profiles = []
    for i, pname in enumerate(names):
        try:
            profiles.append(resolve_profile(pname, custom))
        except KeyError as exc:
            raise s.error(f"profiles[{i}]", str(exc.args[0])) from None
    if len(set(names)) != len(names):
        raise s.error("profiles", "lists a profile twice")
    ca_file = s.existing_file("ca_file")
    login_s = s.table("login")
    # A login over http:// hands the password to every hop on the way: an explicit opt-in,
    # as for the mail endpoints and InfluxDB (loopback excepted: nothing leaves the host).
    allow_plaintext = s.flag("allow_plaintext", False)
    if (login_s is not None and parts.scheme == "http" and not allow_plaintext
            and not is_loopback(parts.hostname or "")):
        raise s.error("url", "the login would send the password unencrypted over http://; "
                      "use https://, or set allow_plaintext = true to accept that")
    engine = s.choice("engine", ENGINES, "httpx")
    if engine == "browser":
        if importlib.util.find_spec("playwright") is None:
            raise s.error("engine", "engine = \"browser\" needs the browser extra: "
                          "pip install 'prober[browser]' (and apt-get install chromium)")
        if ca_file is not None:
            raise s.error("ca_file", "engine = \"browser\" cannot use a CA file (Chromium "
                          "takes its CAs from the system's NSS database); add the CA there "
                          "or use engine = \"httpx\"")
    target = WebmailTarget(
        name=name,
        url=url,
        profiles=tuple(profiles),
        interval_s=s.number("interval_s", DEFAULT_INTERVAL_S, minimum=10, maximum=86400),
        timeout_s=s.number("timeout_s", None, minimum=1, maximum=3600),
        http2=s.flag("http2", True),
        connections_per_host=s.integer("connections_per_host", 6, minimum=1, maximum=64),
        tls_verify=s.flag("tls_verify", True),
        ca_file=ca_file,
        login=_login(login_s) if login_s is not None else None,
        limits=_limits(s.table("limits")),
        engine=engine,
        over_threshold=s.choice("over_threshold", OVER_THRESHOLD_STATES, "warning"),
        allow_plaintext=allow_plaintext,
        extra_requests=_extras(s.tables("extra"), login_s is not None),
    )
    s.check_unknown()
    return target


def parse_webmail(root: Section) -> tuple[WebmailTarget, ...]:
    custom = parse_profiles(root)
    targets: list[WebmailTarget] = []
    for s in root.tables("webmail"):
        target = parse_target(s, custom)
        if any(t.name == target.name for t in targets):
            raise s.error("name", f"webmail target {target.name!r} is defined twice")
        targets.append(target)
    return tuple(targets)


__all__ = ["PRESETS", "LoginSettings", "WebmailLimits", "WebmailTarget", "parse_profiles",
           "parse_webmail"]
