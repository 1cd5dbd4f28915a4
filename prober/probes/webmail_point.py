"""The `webmail_load` point and the words both engines speak.

Each engine (webmail_httpx, webmail_browser) measures a load its own way; what a load *is*
— the job (WebmailLoad), how it may end (LoadFailed with a WebmailOutcome and an
ErrorClass), the user agent, the timeout it is given, the sentences its errors are made
of, and the point it becomes — is defined here once, so the two engines cannot drift.
"""

from __future__ import annotations

import http
from dataclasses import dataclass
from urllib.parse import urlsplit

from prober.config.profiles import Profile
from prober.config.webmail import WebmailTarget, page_open_clause
from prober.contract import Contract
from prober.lineproto import FieldValue
from prober.measurement import Measurement
from prober.schema import (
    FIELD_ERROR_CLASS,
    FIELD_LOAD_S,
    FIELD_OPEN_S,
    FIELD_THRESHOLD_S,
    TAG_OUTCOME,
    TAG_PROFILE,
    TAG_TARGET,
    TAG_VANTAGE,
    WEBMAIL_LOAD,
    ErrorClass,
    WebmailOutcome,
)

# How long closing a load's connections (or its browser) may take once it has ended.
CLOSE_TIMEOUT_S = 10.0
# At most this many failed sub-resources are named in `failed_detail`.
MAX_DETAIL = 5

CHROME_VERSION = "124.0"  # the httpx engine's claim; the browser engine says its own


def user_agent(chrome_version: str = CHROME_VERSION) -> str:
    """A desktop Chrome's user agent (webmails serve it their full page), marked as ours."""
    return (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{chrome_version} Safari/537.36 prober/0.1")


@dataclass(frozen=True)
class WebmailLoad:
    """One probe job: a cold load of `target` over `profile`'s line."""

    target: WebmailTarget
    profile: Profile


class LoadFailed(Exception):
    """The load ended early with an outcome other than ok; `reason` says why."""

    def __init__(self, outcome: WebmailOutcome, reason: str, status: int | None = None,
                 error_class: ErrorClass | None = None, prober_side: bool = False) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.status = status
        # A failure on the prober's own side (no Chromium) is none of the target's doing:
        # its class says so, and the judge and `prober check` never charge it.
        self.error_class: ErrorClass = ErrorClass.PROBER if prober_side else (
            error_class or _CLASS_OF.get(outcome, ErrorClass.PROTOCOL))


_CLASS_OF = {WebmailOutcome.TIMEOUT: ErrorClass.TIMEOUT, WebmailOutcome.HTTP_ERROR: ErrorClass.HTTP}


def timeout_s(load: WebmailLoad, contract: Contract) -> float:
    """The time a load is given: the target's `timeout_s`, else twice the contract's limit."""
    return load.target.timeout_for(load.profile, contract)


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def http_status_text(status: int, url: str) -> str:
    """"HTTP 503 Service Unavailable from URL"."""
    phrase = reason_phrase(status)
    return f"HTTP {status}{' ' + phrase if phrase else ''} from {url}"


def http_failed(status: int, url: str, what: str = "") -> LoadFailed:
    return LoadFailed(WebmailOutcome.HTTP_ERROR, f"{what}{http_status_text(status, url)}", status)


def timed_out_text(phase: str, timeout: float, stage: str) -> str:
    what = "the login" if phase == "login" else "the load"
    return f"{what} timed out after {timeout:g} s while {stage}"


def prober_failed(reason: str) -> LoadFailed:
    """The load could not be made for a reason of the prober's own (ErrorClass.PROBER)."""
    return LoadFailed(WebmailOutcome.FAIL, reason, prober_side=True)


def too_many_bytes(limit: int) -> LoadFailed:
    return LoadFailed(WebmailOutcome.FAIL, f"more than limits.max_total_bytes ({limit}) received")


# The login's own failures, in both engines' words.
def no_login_form(url: str) -> LoadFailed:
    return LoadFailed(WebmailOutcome.FAIL, f"login: no form with a password field on {url}")


def still_asks_for_password(url: str) -> LoadFailed:
    return LoadFailed(WebmailOutcome.FAIL, f"login: the page after the login ({url}) still asks "
                      f"for a password (wrong credentials?)", error_class=ErrorClass.AUTH)


def no_expect_text(url: str) -> LoadFailed:
    return LoadFailed(WebmailOutcome.FAIL, f"login: the page after the login ({url}) does not "
                      f"contain expect_text", error_class=ErrorClass.AUTH)


def _origin(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host.lower(), port or (443 if scheme == "https" else 80)


def check_password_destination(target: WebmailTarget, url: str, method: str) -> None:
    """The login's password goes only to the configured origin (or the same host upgraded
    to https), over TLS unless the configured URL is http:// itself or `allow_plaintext`
    says so, and never in a URL: else a named failure, and nothing is sent."""
    conf, dest = urlsplit(target.url), urlsplit(url)
    shown = f"{dest.scheme}://{dest.netloc}"
    if method.upper() != "POST":
        raise LoadFailed(WebmailOutcome.FAIL, f"login: the form would send the password in "
                         f"the URL (method {method.upper()}) to {shown}; not submitted",
                         error_class=ErrorClass.PROTOCOL)
    try:
        here = _origin(conf.scheme, conf.hostname or "", conf.port)
        there = _origin(dest.scheme, dest.hostname or "", dest.port)
    except ValueError:  # a port out of range
        there, here = ("", "", 0), ("-", "", 0)
    allowed = {here, _origin("https", here[1], None)}
    if there[0] == "http" and here[0] != "http":
        if not target.allow_plaintext:
            raise LoadFailed(WebmailOutcome.FAIL, f"login: the form would send the password "
                             f"unencrypted to {shown} (allow_plaintext is false); not "
                             f"submitted", error_class=ErrorClass.TLS)
        allowed.add(_origin("http", here[1], None))
    if there not in allowed:
        raise LoadFailed(WebmailOutcome.FAIL, f"login: the form would send the password to "
                         f"{shown}, not to the configured origin {conf.scheme}://"
                         f"{conf.netloc}; not submitted", error_class=ErrorClass.PROTOCOL)


Fields = dict[str, FieldValue | None]


def load_point(load: WebmailLoad, vantage: str, contract: Contract, outcome: WebmailOutcome,
               error_class: ErrorClass | None, fields: Fields, timeout: float, engine: str,
               started_ns: int) -> Measurement:
    """The `webmail_load` point of either engine: the load's own fields plus what the
    schema requires of every load (the profile's line, the contract's limit, the timeout
    a failed load counts at, the class of its failure), under the same tags."""
    profile = load.profile
    load_s, login_s = fields.get(FIELD_LOAD_S), fields.get("login_s")
    times = [float(v) for v in (load_s, login_s) if isinstance(v, int | float)]
    clause = page_open_clause(contract, profile)
    fields = {**fields,
              # the figure held against the contract: the page, or the inbox after the
              # login when that took longer (both are pages the customer waits for)
              FIELD_OPEN_S: (max(times) if outcome == WebmailOutcome.OK and load_s is not None
                             else None),
              FIELD_ERROR_CLASS: (str(error_class) if outcome != WebmailOutcome.OK
                                  and error_class is not None else None),
              "timeout_s": timeout,
              # the contract's limit as resolved with the overrides, and the clause's class
              FIELD_THRESHOLD_S: clause.num("mean_max_s"),
              "contract_class": clause.id.removeprefix("webmail_"),
              "link_down_kbps": profile.down_kbps,
              "link_up_kbps": profile.up_kbps,
              "link_rtt_s": profile.rtt_s,
              "engine": engine}
    tags = {TAG_VANTAGE: vantage, TAG_TARGET: load.target.name, TAG_PROFILE: profile.name,
            TAG_OUTCOME: str(outcome)}
    return Measurement(WEBMAIL_LOAD, tags, fields, started_ns)


def judged_seconds(m: Measurement) -> float:
    """The page-open time judged against the contract: the page's load, or the inbox's
    after the login when that took longer (both are pages the customer waits for); a failed
    or timed-out load counts at its timeout (the scoring rule in docs/judge.md)."""
    f = m.fields
    if m.tags.get(TAG_OUTCOME) != WebmailOutcome.OK:
        return float(f.get("timeout_s") or 0.0)
    open_s = f.get(FIELD_OPEN_S)
    if isinstance(open_s, int | float):
        return float(open_s)
    times = [float(v) for v in (f.get(FIELD_LOAD_S), f.get("login_s"))
             if isinstance(v, int | float)]
    return max(times, default=0.0)
