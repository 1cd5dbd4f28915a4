"""Each webmail engine against the physical truth: Chromium in a network namespace behind a
packet-level line (tests/tunline.py), on a test site shaped like a webmail's login page,
login flow and inbox, and on a real Roundcube from Debian's packages
(tests/localstack/roundcube.py). Used by tests/integration/test_webmail_reference.py
(broadband) and bench/webmail_bench.py --reference (both profiles).

The site: a login page (HTML, two stylesheets, one imported, two scripts, a logo, web fonts
of which the text uses two and an icon font, images of matching and non-matching rules, a
favicon and a lazy image that a browser does not fetch before the load event), the login
POST redirecting to the inbox, and the inbox (its own stylesheet, the shared one again).
Served over TLS 1.3, compressed as a webmail's server would.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import hashlib
import random
import statistics
import struct
import subprocess
import tomllib
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prober.config.profiles import Profile
from prober.config.reader import Secret, Section
from prober.config.webmail import (
    ExtraRequest,
    LoginSettings,
    WebmailTarget,
    parse_webmail,
)
from prober.measurement import Measurement
from prober.probes import webmail_browser
from prober.probes.webmail_point import WebmailLoad
from tests.localstack.mail import MailStack
from tests.localstack.roundcube import Roundcube
from tests.tunline import TunLine
from tests.webmail_helpers import context, load_async
from tests.webserver import Reply, Request, WebServer, make_cert, server_tls_context

PASSWORD = "reference-pw"


def png(width: int, height: int, seed: int) -> bytes:
    """A valid PNG of noise (Chromium stops fetching an image it cannot decode)."""
    rnd = random.Random(seed)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\0" + rnd.randbytes(width * 3) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _text(n: int, seed: int, line: str) -> str:
    """About `n` bytes of source that compresses as real CSS or JavaScript does (~4:1)."""
    rnd = random.Random(seed)
    out, size = [], 0
    while size < n:
        s = line.format(a=rnd.randrange(10**6), b=rnd.choice("abcdefghij") * rnd.randrange(1, 6))
        out.append(s)
        size += len(s)
    return "".join(out)


def _gz(body: str | bytes, ctype: str) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    return Reply(200, gzip.compress(data, mtime=0),
                 {"Content-Type": ctype, "Content-Encoding": "gzip", **STATIC})


def _raw(body: bytes, ctype: str) -> Reply:
    return Reply(200, body, {"Content-Type": ctype, **STATIC})


def _page(html: str) -> Reply:
    return Reply(200, gzip.compress(html.encode(), mtime=0),
                 {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip",
                  "Cache-Control": "no-store"})


# As Apache serves static files: a validator, no explicit lifetime (heuristic freshness).
STATIC = {"Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT"}


LOGIN = """<!DOCTYPE html><html><head><meta charset=utf-8><title>Webmail :: Welcome</title>
<link rel="shortcut icon" href="/skin/favicon.ico">
<link rel=stylesheet href="/skin/styles.css"><link rel=stylesheet href="/skin/extra.css">
<script src="/js/jquery.js"></script><script src="/js/app.js"></script></head>
<body class="task-login"><div id=layout><h1 class=voice>Webmail Login</h1>
<div id=logo><img src="/skin/logo.png" alt=Logo></div>
<form id=login-form method=post action="/login"><input type=hidden name=_token value=t0k>
<table><tr><td class=title><label for=user>Username</label></td><td class=input>
<input name=_user id=user type=text></td></tr><tr><td class=title><label
for=pass>Password</label></td><td class=input><input name=_pass id=pass type=password>
</td></tr></table><p class=formbuttons><button type=submit class="button mainaction
submit"><span class=icon-login></span>Login</button></p></form>
<div id=dialog class=popup hidden><span class=icon-warn></span>Session expired</div>
<img src="/skin/promo.png" loading=lazy alt="">
<p class=footer>Webmail Free and Open Source Webmail</p>""" + "".join(
    f"<!-- {i:04d} -->" for i in range(150)) + "</div></body></html>"

INBOX = """<!DOCTYPE html><html><head><meta charset=utf-8><title>Inbox</title>
<link rel=stylesheet href="/skin/styles.css"><link rel=stylesheet href="/skin/mail.css">
<script src="/js/jquery.js"></script><script src="/js/app.js"></script></head>
<body class="task-mail"><div id=layout><div id=logo><img src="/skin/logo.png"></div>
<ul id=folders><li class=inbox>Inbox</li><li class=sent>Sent</li><li class=trash>Trash</li>
</ul><table class=messagelist>""" + "".join(
    f"<tr class=message><td class=subject>Message {i}</td><td class=flag></td></tr>"
    for i in range(40)) + "</table></div></body></html>"


def _faces() -> str:
    faces = []
    for weight in (400, 700):
        for subset, rng in (("latin", "U+0000-00FF"), ("cyrillic", "U+0400-045F")):
            faces.append(f"@font-face{{font-family:Roboto;font-weight:{weight};"
                         f"src:url(/fonts/roboto-{weight}-{subset}.woff2) format('woff2');"
                         f"unicode-range:{rng}}}")
    faces.append("@font-face{font-family:Icons;src:url(/fonts/icons.woff2) format('woff2')}")
    faces.append("@font-face{font-family:Mono;src:url(/fonts/mono.woff2) format('woff2')}")
    return "".join(faces)


STYLES = _faces() + """
body{font-family:Roboto,Helvetica,sans-serif} #logo{background:url(/skin/bg-logo.png)}
.voice{position:absolute;left:-9999px} .button.mainaction{font-weight:700}
[class^=icon-]::before{font-family:Icons;content:"\\e001"}
.popup{background:url(/skin/popup.png)} .unused-rule{background:url(/skin/unused.png)}
pre{font-family:Mono}
""" + _text(30000, 1, ".r{a}{{color:#{a:06d};margin:{a}px}} .x-{b}{{padding:0}}\n")
EXTRA = "@import url(/skin/import.css);" + _text(8000, 2, ".e{a}{{border:{a}px}}\n")
IMPORTED = "#layout{background:url(/skin/layout.png)}" + _text(6000, 3, ".i{a}{{top:0}}\n")
MAIL = (".messagelist .message{background:url(/skin/row.png)} .folders .unused"
        "{background:url(/skin/nothing.png)}" + _text(20000, 4, ".m{a}{{left:{a}px}}\n"))


async def _login(req: Request) -> Reply:
    ok = req.form().get("_pass") == PASSWORD
    return Reply(302, b"", {"Location": "/inbox" if ok else "/",
                            **({"Set-Cookie": "sess=1; Path=/"} if ok else {})})


def routes() -> dict[str, object]:
    r: dict[str, object] = {
        "/": _page(LOGIN),
        "/inbox": _page(INBOX),
        "/login": _login,
        "/skin/styles.css": _gz(STYLES, "text/css"),
        "/skin/extra.css": _gz(EXTRA, "text/css"),
        "/skin/import.css": _gz(IMPORTED, "text/css"),
        "/skin/mail.css": _gz(MAIL, "text/css"),
        "/js/jquery.js": _gz(_text(90000, 5, "var v{a}=function(x){{return x+{a}}};//{b}\n"),
                             "text/javascript"),
        "/js/app.js": _gz(_text(40000, 6, "function f{a}(y){{return '{b}'+y}}\n"),
                          "text/javascript"),
        "/skin/favicon.ico": _raw(png(16, 16, 7), "image/png"),
    }
    for i, name in enumerate(("logo", "bg-logo", "popup", "unused", "layout", "row",
                              "nothing", "promo")):
        r[f"/skin/{name}.png"] = _raw(png(48, 48, 10 + i), "image/png")
    for i, name in enumerate(("roboto-400-latin", "roboto-400-cyrillic", "roboto-700-latin",
                              "roboto-700-cyrillic", "icons", "mono")):
        # not a font a renderer could use, but fetched whole either way: what counts here
        r[f"/fonts/{name}.woff2"] = _raw(random.Random(20 + i).randbytes(18000), "font/woff2")
    return r


@dataclass
class Row:
    profile: str
    page: str
    reference_s: float
    httpx_s: float
    browser_s: float
    # the httpx engine's CPU time over its whole load (page, and login when there is
    # one) as a share of that load's time, median: issue 15 holds it to <= 5 %
    httpx_cpu: float | None = None

    @property
    def httpx_err(self) -> float:
        return self.httpx_s / self.reference_s - 1

    @property
    def browser_err(self) -> float:
        return self.browser_s / self.reference_s - 1

    def line(self) -> str:
        return (f"| {self.profile} | {self.page} | {self.reference_s:.2f} s | "
                f"{self.httpx_s:.2f} s ({self.httpx_err:+.0%}) | "
                f"{self.browser_s:.2f} s ({self.browser_err:+.0%}) |")


HEADER = ("| line | page | Chromium, packet-level line | httpx engine | browser engine |\n"
          "|---|---|---|---|---|")

ENGINES = ("reference", "httpx", "browser")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "webmail.md"


def roundcube_extras() -> tuple[ExtraRequest, ...]:
    """What Roundcube 1.6's scripts (elastic skin) make Chromium fetch before the load
    event, which the httpx engine cannot see: the `[[webmail.extra]]` requests of
    docs/webmail.md's Roundcube example, parsed as the prober parses a config, so the
    test holds the example a user copies."""
    text = DOCS.read_text()
    block = text[text.index("### Example: Roundcube"):]
    block = block[block.index("```toml\n") + 8:]
    data = tomllib.loads(block[:block.index("```")])
    data["webmail"][0]["login"]["password_env"] = "PATH"  # any variable that is set
    (target,) = parse_webmail(Section(data, str(DOCS)))
    assert target.extra_requests, "docs/webmail.md's Roundcube example names no extra"
    return target.extra_requests


ROUNDCUBE_USER = "alice"
ROUNDCUBE_MESSAGES = 30
# One login flow gives all three rows: the login page (load_s), the inbox after the
# form is submitted (login_s) and the whole visit (their sum).
ROUNDCUBE_PAGES = ("login page", "inbox after login", "login page + inbox")


@dataclass
class Site:
    line: TunLine
    base: str
    cert: Path
    tmp: Path
    server: WebServer | None = None  # the test pages
    roundcube: Roundcube | None = None
    # per engine, what the server was asked for in the first repetition (`measure_site`)
    fetched: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def chromium_args(self) -> tuple[str, ...]:
        """Chromium trusts the test certificate as a valid one (no error path: with
        certificate errors ignored, it would pool no connection and open one per request)."""
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-pubkey", "-noout"],
                             check=True, capture_output=True).stdout
        spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=der,
                              check=True, capture_output=True).stdout
        digest = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        return (f"--ignore-certificate-errors-spki-list={digest}",)

    def targets(self) -> dict[str, WebmailTarget]:
        base, ca = self.base, str(self.cert)
        if self.roundcube is not None:
            user = self.roundcube.stack.user(ROUNDCUBE_USER)
            login = LoginSettings(user=user.address, password=Secret("test", user.password))
            return {"login flow": WebmailTarget("roundcube", base + "/", ca_file=ca,
                                                timeout_s=600, login=login,
                                                extra_requests=roundcube_extras())}
        login = LoginSettings(user="alice", password=Secret("test", PASSWORD),
                              expect_text="Message 1")
        return {"login page": WebmailTarget("ref", base + "/", ca_file=ca, timeout_s=600),
                "inbox": WebmailTarget("ref", base + "/inbox", ca_file=ca, timeout_s=600),
                "login flow": WebmailTarget("ref", base + "/", ca_file=ca, timeout_s=600,
                                            login=login)}

    def clear_requests(self) -> None:
        if self.server is not None:
            self.server.clear_log()
        if self.roundcube is not None:
            self.roundcube.clear_requests()

    def requests(self) -> list[str]:
        """What the server was asked for since `clear_requests`: "GET /path?query"."""
        if self.server is not None:
            return [f"{e.method} {e.path}" for e in self.server.entries()]
        assert self.roundcube is not None
        return [" ".join(line.split()[:2]) for line in self.roundcube.requests()]

    async def reference(self, target: WebmailTarget, profile: Profile) -> Measurement:
        """Chromium in the namespace, over the packet-level line, nothing emulated."""
        chromium = self.line.wrapper(self.tmp, webmail_browser.CHROMIUM)
        (m,) = await webmail_browser.load_with(context(), WebmailLoad(_no_ca(target), profile),
                                               str(chromium), emulate_line=False,
                                               extra_args=self.chromium_args)
        return m

    async def browser(self, target: WebmailTarget, profile: Profile) -> Measurement:
        """The browser engine, on the host, over its own emulated line."""
        (m,) = await webmail_browser.load_with(context(), WebmailLoad(_no_ca(target), profile),
                                               webmail_browser.CHROMIUM, emulate_line=True,
                                               extra_args=self.chromium_args)
        return m

    async def httpx(self, target: WebmailTarget, profile: Profile) -> Measurement:
        return await load_async(target, profile)

    def run(self, engine: str, target: WebmailTarget, profile: Profile) -> Measurement:
        """One load; again (at most twice) when Chromium on the host aborted it because a
        network interface came or went (another test's line being set up or torn down),
        which says nothing of the engine."""
        for _ in range(3):
            m: Measurement = asyncio.run(getattr(self, engine)(target, profile))
            if "ERR_NETWORK_CHANGED" not in str(m.fields.get("error") or ""):
                break
            self.clear_requests()
        return m


def _no_ca(target: WebmailTarget) -> WebmailTarget:
    return dataclasses.replace(target, ca_file=None, engine="browser")


@contextmanager
def site(profile: Profile, tmp: Path) -> Iterator[Site]:
    with TunLine(profile) as line:
        cert, key = make_cert(tmp, ips=("127.0.0.1", line.host_ip))
        srv = WebServer(routes(), tls=server_tls_context(cert, key), host=line.host_ip)  # type: ignore[arg-type]
        srv.start()
        try:
            yield Site(line, srv.base, cert, tmp, server=srv)
        finally:
            srv.stop()


@contextmanager
def roundcube_site(profile: Profile, tmp: Path) -> Iterator[Site]:
    """Roundcube (Apache, mod_php, TLS) on the line's host end, its IMAP and SMTP the test
    Dovecot and Postfix, the inbox holding ROUNDCUBE_MESSAGES messages."""
    with (MailStack() as stack, TunLine(profile) as line,
          Roundcube(stack, host=line.host_ip) as rc):
        rc.fill_inbox(ROUNDCUBE_USER, ROUNDCUBE_MESSAGES)
        assert rc.cert is not None
        yield Site(line, rc.base, rc.cert, tmp, roundcube=rc)


SITES = {"test": site, "roundcube": roundcube_site}


def _figure(m: Measurement, page: str) -> float:
    assert m.tags["outcome"] == "ok", (m.fields.get("engine"), page, m.fields.get("error"))
    value = m.fields["login_s" if page == "login flow" else "load_s"]
    assert isinstance(value, float)
    return value


def _cpu_share(m: Measurement) -> float:
    cpu_s, load_s, login_s = m.fields["cpu_s"], m.fields["load_s"], m.fields["login_s"]
    assert isinstance(cpu_s, float) and isinstance(load_s, float)
    return cpu_s / (load_s + (login_s if isinstance(login_s, float) else 0.0))


def _figures(m: Measurement) -> tuple[float, float, float]:
    """A Roundcube login flow's rows: login page, inbox after login, both."""
    assert m.tags["outcome"] == "ok", (m.fields.get("engine"), m.fields.get("error"))
    load_s, login_s = m.fields["load_s"], m.fields["login_s"]
    assert isinstance(load_s, float) and isinstance(login_s, float)
    return load_s, login_s, load_s + login_s


def measure_site(s: Site, profile: Profile, repeat: int = 3,
                 pages: tuple[str, ...] = ("login page", "inbox", "login flow")) -> list[Row]:
    """Medians of `repeat` cold loads, interleaved: reference, httpx, browser, again. What
    each engine asked the server for in the first round is kept in `s.fetched`."""
    targets = s.targets()
    if s.roundcube is not None:
        (target,) = targets.values()
        runs: dict[str, list[tuple[float, float, float]]] = {e: [] for e in ENGINES}
        flow_cpu: list[float] = []
        for i in range(repeat):
            for engine in ENGINES:
                s.clear_requests()
                m = s.run(engine, target, profile)
                runs[engine].append(_figures(m))
                if engine == "httpx":
                    flow_cpu.append(_cpu_share(m))
                if i == 0:
                    s.fetched[engine] = s.requests()
        # one figure for the three rows: the CPU of the whole visit over its time
        rows = []
        for k, page in enumerate(ROUNDCUBE_PAGES):
            ref, hx, br = (statistics.median(r[k] for r in runs[e]) for e in ENGINES)
            rows.append(Row(profile.name, page, ref, hx, br,
                            httpx_cpu=statistics.median(flow_cpu)))
        return rows
    rows = []
    for page in pages:
        target = targets[page]
        values: dict[str, list[float]] = {e: [] for e in ENGINES}
        cpu: list[float] = []
        for i in range(repeat):
            for engine in ENGINES:
                s.clear_requests()
                m = s.run(engine, target, profile)
                values[engine].append(_figure(m, page))
                if engine == "httpx":
                    cpu.append(_cpu_share(m))
                if i == 0:
                    s.fetched[f"{engine} {page}"] = s.requests()
        ref, hx, br = (statistics.median(values[e]) for e in ENGINES)
        rows.append(Row(profile.name, page, ref, hx, br, httpx_cpu=statistics.median(cpu)))
    return rows


def measure(profile: Profile, tmp: Path, repeat: int = 3,
            pages: tuple[str, ...] = ("login page", "inbox", "login flow"),
            site_name: str = "test") -> list[Row]:
    """`measure_site` on a site of its own: "test" (the test pages) or "roundcube"."""
    with SITES[site_name](profile, tmp) as s:
        return measure_site(s, profile, repeat, pages)
