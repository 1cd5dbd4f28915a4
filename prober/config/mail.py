"""The mail side of probes.toml: vantage, mailboxes, routes, timeouts, canary handling."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from prober.config.hosts import is_ip
from prober.config.reader import Secret, Section

TLS_MODES = ("starttls", "tls", "none")
ADDRESS_FAMILIES = ("any", "ipv4", "ipv6")  # which of the host's addresses the probes use
DIRECTIONS = ("outbound", "inbound", "internal")
CLEANUP_MODES = ("delete", "move", "keep")
DAY_S = 86400.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Vantage:
    name: str
    state_dir: str


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: str  # starttls | tls | none
    ca_file: str | None = None
    tls_verify: bool = True
    family: str = "any"  # any | ipv4 | ipv6: the A and/or AAAA addresses of the host


@dataclass(frozen=True)
class ImapSettings:
    endpoint: Endpoint
    folder: str = "INBOX"
    junk_folder: str | None = "Junk"
    trash_folder: str = "Trash"
    idle: bool = True


OAUTH2_MECHANISMS = ("xoauth2", "oauthbearer")


@dataclass(frozen=True)
class OAuth2Settings:
    """Where a mailbox's OAuth2 access tokens come from (exactly one source) and how they
    are presented (SASL XOAUTH2 or OAUTHBEARER)."""

    mechanism: str = "xoauth2"
    # a token endpoint (RFC 6749): client credentials, or a refresh token when one is given
    token_url: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    refresh_token: Secret | None = None
    scope: str | None = None
    ca_file: str | None = None  # trust this CA for the token endpoint too
    # a Google service account's JSON key: a token for the mailbox's user (domain-wide
    # delegation)
    service_account: Secret | None = None
    # an operator's command that prints a token (or {"access_token":..., "expires_in":...})
    token_command: tuple[str, ...] = ()
    refresh_before_s: float = 300.0

    @property
    def source(self) -> str:
        if self.token_url:
            return "refresh_token" if self.refresh_token else "client_credentials"
        return "google" if self.service_account else "command"


@dataclass(frozen=True)
class Mailbox:
    name: str
    address: str
    user: str
    password: Secret | None  # None: the mailbox logs in with OAuth2
    smtp: Endpoint
    imap: ImapSettings
    oauth2: OAuth2Settings | None = None


@dataclass(frozen=True)
class Route:
    name: str
    sender: str  # mailbox name
    recipient: str  # mailbox name
    direction: str
    # host names under these domains are the provider's own MTAs (for the delay split)
    provider_domains: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # added to this route's canaries


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    command_s: float = 30.0


@dataclass(frozen=True)
class CanarySettings:
    late_after_s: float = 3600.0
    lost_after_s: float = 14400.0
    cleanup: str = "delete"
    idle_renew_s: float = 240.0
    poll_s: float = 10.0
    junk_poll_s: float = 60.0
    sweep_after_s: float = 86400.0
    # 0: IDLE alone; > 0: poll at this interval while a canary is awaited (see imap.py)
    fast_poll_s: float = 0.0
    # added to every canary, e.g. to match an allow-list rule at the provider's filter
    headers: tuple[tuple[str, str], ...] = ()
    # signs every canary (HMAC); None: the agent makes one in state_dir on first start
    key: Secret | None = None
    # after a key change: still verifies (never signs) the canaries in flight signed with it
    previous_key: Secret | None = None


@dataclass(frozen=True)
class CheckSettings:
    warning_s: float = 60.0
    critical_s: float = 3600.0
    wait_s: float = 120.0
    fast_poll_s: float = 0.05
    # a mail server's certificate expiring within this many days makes the check WARNING
    cert_warning_days: float = 14.0


def default_state_dir() -> str:
    if os.environ.get("STATE_DIRECTORY"):
        # systemd's StateDirectory= may list several, colon separated
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    if os.geteuid() == 0:
        return "/var/lib/prober"
    return str(Path.home() / ".local" / "state" / "prober")


def _name(section: Section, key: str) -> str:
    value = section.text(key)
    if not _NAME.match(value):
        raise section.error(key, f"{value!r} must be 1-64 letters, digits, '.', '_' or '-'")
    return value


def parse_vantage(root: Section) -> Vantage:
    s = root.table("vantage", required=True)
    assert s is not None
    vantage = Vantage(name=_name(s, "name"), state_dir=s.text("state_dir", default_state_dir()))
    s.check_unknown()
    return vantage


def _endpoint(s: Section, default_port: dict[str, int], allow_plaintext: bool) -> Endpoint:
    tls = s.choice("tls", TLS_MODES)
    if tls == "none" and not allow_plaintext:
        raise s.error("tls", '"none" sends the password in clear text; set '
                      "allow_plaintext = true on the mailbox to accept that")
    ca_file = s.existing_file("ca_file")
    ep = Endpoint(
        host=s.text("host"),
        port=s.integer("port", default_port[tls], minimum=1, maximum=65535),
        tls=tls,
        ca_file=ca_file,
        tls_verify=s.flag("tls_verify", True),
        family=s.choice("family", ADDRESS_FAMILIES, "any"),
    )
    s.check_unknown()
    return ep


def parse_mailbox(s: Section) -> Mailbox:
    name = _name(s, "name")
    address = s.text("address")
    if "@" not in address:
        raise s.error("address", f"{address!r} is not an email address")
    allow_plaintext = s.flag("allow_plaintext", False)
    if s.has("password"):
        s.secret("password")  # refuses it: an inline password is the first thing to say
    smtp_s = s.table("smtp", required=True)
    imap_s = s.table("imap", required=True)
    assert smtp_s is not None and imap_s is not None
    smtp = _endpoint(smtp_s, {"starttls": 587, "tls": 465, "none": 25}, allow_plaintext)
    imap_ep_fields = {k: v for k, v in imap_s.data.items()
                      if k not in ("folder", "junk_folder", "trash_folder", "idle")}
    imap_ep = _endpoint(Section(imap_ep_fields, imap_s.file, imap_s.path),
                        {"starttls": 143, "tls": 993, "none": 143}, allow_plaintext)
    oauth2 = _oauth2(s.table("oauth2"))
    junk = imap_s.data.get("junk_folder", "Junk")
    imap = ImapSettings(
        endpoint=imap_ep,
        folder=imap_s.text("folder", "INBOX"),
        junk_folder=imap_s.text("junk_folder", "Junk") if junk != "" else None,
        trash_folder=imap_s.text("trash_folder", "Trash"),
        idle=imap_s.flag("idle", True),
    )
    mailbox = Mailbox(
        name=name,
        address=address,
        user=s.text("user", address),
        password=s.secret("password", required=oauth2 is None),
        smtp=smtp,
        imap=imap,
        oauth2=oauth2,
    )
    if mailbox.password is not None and oauth2 is not None:
        raise s.error("oauth2", "give a password or [mailbox.oauth2], not both")
    s.check_unknown()
    return mailbox


def _oauth2(s: Section | None) -> OAuth2Settings | None:
    if s is None:
        return None
    token_url = s.text("token_url", None)
    service_account = s.secret("service_account", required=False)
    command = s.text_list("token_command", None)
    given = [k for k, v in (("token_url", token_url), ("service_account", service_account),
                            ("token_command", command)) if v]
    if len(given) != 1:
        raise s.error("token_url", "give exactly one token source: token_url, "
                      "service_account_file (or _env, _credential) or token_command"
                      + (f"; got {', '.join(given)}" if given else ""))
    if token_url is not None and not token_url.startswith("https://"):
        raise s.error("token_url", f"must be https:// (it carries the client secret); "
                      f"got {token_url!r}")
    settings = OAuth2Settings(
        mechanism=s.choice("mechanism", OAUTH2_MECHANISMS, "xoauth2"),
        token_url=token_url,
        client_id=s.text("client_id") if token_url else None,
        client_secret=s.secret("client_secret", required=False) if token_url else None,
        refresh_token=s.secret("refresh_token", required=False) if token_url else None,
        scope=s.text("scope", None),
        ca_file=s.existing_file("ca_file"),
        service_account=service_account,
        token_command=tuple(command or ()),
        refresh_before_s=s.number("refresh_before_s", 300.0, minimum=0, maximum=86400),
    )
    if token_url and settings.client_secret is None and settings.refresh_token is None:
        raise s.error("client_secret_env", "the token endpoint needs client_secret_env "
                      "(_file, _credential), refresh_token_env (...), or both")
    s.check_unknown()
    return settings


def parse_route(s: Section, mailboxes: dict[str, Mailbox]) -> Route:
    route = Route(
        name=_name(s, "name"),
        sender=s.text("from"),
        recipient=s.text("to"),
        direction=s.choice("direction", DIRECTIONS),
    )
    for key, ref in (("from", route.sender), ("to", route.recipient)):
        if ref not in mailboxes:
            known = ", ".join(sorted(mailboxes)) or "none defined"
            raise s.error(key, f"no mailbox named {ref!r} (known: {known})")
    domains = s.text_list("provider_domains", None)
    if domains is None:
        # The provider under contract is the sender's for outbound, the recipient's otherwise.
        mb = mailboxes[route.sender if route.direction == "outbound" else route.recipient]
        domains = [mb.address.rsplit("@", 1)[1].lower()]
        host = mb.smtp.host.lower()
        if not is_ip(host):
            # smtp.provider.example -> provider.example: its MTAs share the parent domain
            domains.append(host.split(".", 1)[1] if host.count(".") >= 2 else host)
        domains = sorted(set(domains))
    headers = _headers(s)
    s.check_unknown()
    return Route(route.name, route.sender, route.recipient, route.direction,
                 tuple(d.lower() for d in domains), headers)


_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable, no colon


def _headers(s: Section) -> tuple[tuple[str, str], ...]:
    headers = s.text_map("headers")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise s.error(f"headers.{name}", "is not a valid header name")
        if "\n" in value or "\r" in value:
            raise s.error(f"headers.{name}", "must be one line")
    return tuple(sorted(headers.items()))


def parse_timeouts(root: Section) -> Timeouts:
    s = root.table("timeouts")
    if s is None:
        return Timeouts()
    t = Timeouts(connect_s=s.number("connect_s", 10.0, minimum=0.1, maximum=600),
                 command_s=s.number("command_s", 30.0, minimum=0.1, maximum=3600))
    s.check_unknown()
    return t


def parse_canary(root: Section) -> CanarySettings:
    s = root.table("canary")
    if s is None:
        return CanarySettings()
    c = CanarySettings(
        late_after_s=s.number("late_after_s", 3600.0, minimum=1, maximum=30 * DAY_S),
        lost_after_s=s.number("lost_after_s", 14400.0, minimum=1, maximum=30 * DAY_S),
        cleanup=s.choice("cleanup", CLEANUP_MODES, "delete"),
        idle_renew_s=s.number("idle_renew_s", 240.0, minimum=5, maximum=1740),
        poll_s=s.number("poll_s", 10.0, minimum=0.05, maximum=3600),
        junk_poll_s=s.number("junk_poll_s", 60.0, minimum=0.05, maximum=DAY_S),
        sweep_after_s=s.number("sweep_after_s", 86400.0, minimum=60, maximum=366 * DAY_S),
        fast_poll_s=_fast_poll(s, "fast_poll_s", 0.0),
        headers=_headers(s),
        key=_canary_key(s, "key"),
        previous_key=_canary_key(s, "previous_key"),
    )
    if c.lost_after_s <= c.late_after_s:
        raise s.error("lost_after_s", f"must be greater than late_after_s ({c.late_after_s})")
    s.check_unknown()
    return c


def _fast_poll(s: Section, key: str, default: float) -> float:
    """0 (off) or an interval of at least 10 ms: a NOOP per interval is the cost."""
    value = s.number(key, default, minimum=0, maximum=60)
    if 0 < value < 0.01:
        raise s.error(key, f"{value:g} is too short: 0 (off) or at least 0.01 s")
    return value


CANARY_KEY_MIN_BYTES = 16


def _canary_key(s: Section, stem: str) -> Secret | None:
    key = s.secret(stem, required=False)
    if key is not None and len(key.reveal().encode()) < CANARY_KEY_MIN_BYTES:
        name = f"{stem}_" + key.source.split(":", 1)[0]
        raise s.error(name, f"the canary key must be at least {CANARY_KEY_MIN_BYTES} bytes "
                      "(e.g. the output of `openssl rand -hex 32`)")
    return key


def parse_check(root: Section) -> CheckSettings:
    s = root.table("check")
    if s is None:
        return CheckSettings()
    c = CheckSettings(
        warning_s=s.number("warning_s", 60.0, minimum=0, maximum=30 * DAY_S),
        critical_s=s.number("critical_s", 3600.0, minimum=0, maximum=30 * DAY_S),
        wait_s=s.number("wait_s", 120.0, minimum=1, maximum=DAY_S),
        fast_poll_s=_fast_poll(s, "fast_poll_s", 0.05),
        cert_warning_days=s.number("cert_warning_days", 14.0, minimum=0, maximum=3650),
    )
    if c.critical_s < c.warning_s:
        raise s.error("critical_s", f"must be >= warning_s ({c.warning_s})")
    s.check_unknown()
    return c
