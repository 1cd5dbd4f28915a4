"""The httpx engine (`engine = "httpx"`): a browser's cold first visit over an emulated line.

One call of `load` is one cold load (new connections, no cache, no cookies) of a
target's page under one profile: the HTML, then what it pulls in (see webmail_discover),
followed as discovered, at most `connections_per_host` connections per host over HTTP/1.1,
one multiplexed connection where the server offers HTTP/2; redirects followed; sizes and
counts bounded. With `[webmail.login]`, the login form found on that page is then submitted
(hidden fields included) and the load of the page that follows, the inbox, is timed too.

Every connection of the load crosses one emulated access line (throttle.Link), so the
numbers are what a customer on that line would wait, plus the probe host's own round trip
(measured and reported as host_rtt_s).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import functools
import re
import ssl
import time
import typing
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import certifi
import httpx

from prober.config.webmail import LoginSettings, WebmailTarget
from prober.measurement import Measurement, one_line
from prober.probes.base import ProbeContext
from prober.probes.errors import classify, local_exhaustion
from prober.probes.throttle import EmulatedTransport, Link
from prober.probes.webmail_css import (
    Rule,
    StyleSheet,
    compute,
    parse_declarations,
    parse_stylesheet,
)
from prober.probes.webmail_discover import PageScanner, Resource
from prober.probes.webmail_point import (
    CLOSE_TIMEOUT_S,
    MAX_DETAIL,
    Fields,
    LoadFailed,
    WebmailLoad,
    check_password_destination,
    http_failed,
    load_point,
    no_expect_text,
    no_login_form,
    still_asks_for_password,
    timed_out_text,
    timeout_s,
    too_many_bytes,
    user_agent,
)
from prober.schema import ErrorClass, WebmailOutcome

ENGINE = "httpx"
_ACCEPT = {
    "document": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    "stylesheet": "text/css,*/*;q=0.1",
    "image": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "font": "*/*",
    "script": "*/*",
    "preload": "*/*",
}
# The request headers a desktop Chromium sends, so each request weighs on the uplink what
# the browser's does (on a 30 kbit/s uplink a login page's requests take seconds).
_CLIENT_HINTS = {"sec-ch-ua": '"Chromium";v="124", "Not-A.Brand";v="99"',
                 "sec-ch-ua-mobile": "?0", "sec-ch-ua-platform": '"Linux"'}
_NAVIGATE = {"Upgrade-Insecure-Requests": "1", "Sec-Fetch-Site": "none",
             "Sec-Fetch-Mode": "navigate", "Sec-Fetch-User": "?1", "Sec-Fetch-Dest": "document"}
_FETCH_DEST = {"stylesheet": ("no-cors", "style"), "script": ("no-cors", "script"),
               "image": ("no-cors", "image"), "font": ("cors", "font"),
               "preload": ("no-cors", "empty"), "document": ("navigate", "iframe"),
               "xhr": ("cors", "empty")}


# Count bytes as a browser receives them: compressed. Offered: what _Decoder decodes in
# bounded steps (zlib's max_length), so a compression bomb cannot fill memory.
ACCEPT_ENCODING = "gzip, deflate"
# Decoded output is produced in steps of at most this many bytes.
DECODE_STEP = 65536


class _Decoder:
    """Content-Encoding decoding whose every step is bounded, charged to the load's budget."""

    def __init__(self, coding: str, url: str) -> None:
        coding = coding.strip().lower()
        self.url = url
        self._zlib: typing.Any = None
        self._fallback = False  # "deflate" is zlib-wrapped by the RFC, raw by some servers
        if coding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._zlib = zlib.decompressobj()
            self._fallback = True
        elif coding not in ("", "identity"):
            raise LoadFailed(WebmailOutcome.FAIL, f"{url}: Content-Encoding {coding!r} was not "
                             f"offered and cannot be decoded", error_class=ErrorClass.PROTOCOL)

    def decode(self, data: bytes) -> typing.Iterator[bytes]:
        if self._zlib is None:
            if data:
                yield data
            return
        while data:
            try:
                out = self._zlib.decompress(data, DECODE_STEP)
            except zlib.error as exc:
                if self._fallback:
                    self._fallback = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise LoadFailed(WebmailOutcome.FAIL, f"{self.url}: the compressed body is "
                                 f"corrupt ({exc})", error_class=ErrorClass.PROTOCOL) from None
            self._fallback = False
            data = self._zlib.unconsumed_tail
            if out:
                yield out
            elif data:  # no progress: zlib wants more input than max_length allows out
                break


class _Budget:
    """The one count of what a load holds decoded (HTML and CSS; other bodies are counted
    on the wire and dropped undecoded): over `limit`, the load ends, naming it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.decoded = 0

    def charge(self, nbytes: int, url: str) -> None:
        self.decoded += nbytes
        if self.decoded > self.limit:
            raise LoadFailed(WebmailOutcome.FAIL, f"more than limits.max_total_bytes "
                             f"({self.limit}) decoded (at {url}; a compression bomb?)",
                             error_class=ErrorClass.PROTOCOL)
_REDIRECTS = (301, 302, 303, 307, 308)


# How deep iframes are followed (a frame in a frame in the page).
MAX_FRAME_DEPTH = 3


@dataclass
class _Doc:
    """One document of the load (the page, the inbox, an iframe) and what its style pass
    and its extra requests wait for."""

    scanner: PageScanner
    phase: str  # "page" or "login": which configured extra requests follow it
    depth: int = 0
    complete: bool = False
    styled: bool = False
    scripts: set[str] = field(default_factory=set)  # its scripts still loading
    extras_started: bool = False
    inline_sheets: list[StyleSheet] | None = None
    seen: set[str] = field(default_factory=set)  # asked for by this document


@dataclass
class PageResult:
    url: str
    status: int
    http_version: str
    scanner: PageScanner
    ttfb_s: float
    html_s: float


def ssl_context_for(target: WebmailTarget) -> ssl.SSLContext:
    return _ssl_context(target.tls_verify, target.ca_file, target.http2)


@functools.lru_cache(maxsize=32)
def _ssl_context(tls_verify: bool, ca_file: str | None, http2: bool) -> ssl.SSLContext:
    # Built once: loading a CA bundle takes tens of ms of CPU, which would stall the timers
    # of loads already running in the loop. Sharing it resumes no session (cold loads stay
    # cold): Python resumes TLS sessions only when asked to. Keyed by http2 too, as
    # httpcore sets the ALPN list on the context it is given.
    if not tls_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file or certifi.where())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Loader:
    """One cold load on one link: the page, its sub-resources, then the optional login."""

    def __init__(self, client: httpx.AsyncClient, target: WebmailTarget, link: Link) -> None:
        self.client = client
        self.target = target
        self.limits = target.limits
        self.link = link
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.requests = 0
        self.failed = 0
        self.skipped = 0
        self.failures: list[str] = []
        self.seen: set[str] = set()
        # What later documents of the load may take from the browser's cache: True when
        # the response was fresh (max-age, Expires, or Last-Modified's heuristic), False
        # when a later page must fetch it again (no-cache, no validator).
        self.reusable: dict[str, bool] = {}
        self.inflight: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending: dict[asyncio.Task[None], str] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._h2: set[str] = set()
        self.stage = "starting"
        self.page_bytes = 0
        self._deferred: list[Resource] = []
        self.last_ttfb: float | None = None  # of the document being fetched, even if cut off
        self.last_status: int | None = None
        self.budget = _Budget(self.limits.max_total_bytes)
        self.phase = "page"
        self.docs: list[_Doc] = []
        # stylesheets by the URL that asked for them: parsed, or None when they failed
        self.sheets: dict[str, StyleSheet | None] = {}

    def elapsed(self) -> float:
        return self.loop.time() - self.t0

    def _limiter(self, url: str) -> contextlib.AbstractAsyncContextManager[object]:
        origin = _origin(url)
        if origin in self._h2:
            return contextlib.nullcontext()  # one connection, multiplexed: no browser cap
        sem = self._sems.get(origin)
        if sem is None:
            sem = self._sems[origin] = asyncio.Semaphore(self.target.connections_per_host)
        return sem

    def _note_protocol(self, response: httpx.Response) -> None:
        if response.http_version == "HTTP/2":
            self._h2.add(_origin(str(response.url)))

    def _check_total(self) -> None:
        if self.link.bytes_down > self.limits.max_total_bytes:
            raise too_many_bytes(self.limits.max_total_bytes)

    def _fail(self, url: str, why: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_DETAIL:
            self.failures.append(f"{url}: {why}")

    # -- the page ------------------------------------------------------------------------

    async def page(self, url: str, method: str = "GET",
                   form: list[tuple[str, str]] | None = None,
                   guard: typing.Callable[[str], None] | None = None) -> PageResult:
        """Fetch a document, following redirects, feeding its HTML to the scanner as it comes."""
        chain: list[str] = []
        content: bytes | None = None
        headers = {"Accept": _ACCEPT["document"], **_NAVIGATE}
        if form is not None and method == "POST":
            content = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif form is not None:
            url = str(httpx.URL(url).copy_merge_params(dict(form)))
        while True:
            if content is not None and guard is not None:
                guard(url)
            chain.append(url)
            if len(chain) > self.limits.max_redirects + 1:
                loop = len(set(chain)) < len(chain)
                what = "redirect loop" if loop else "too many redirects"
                raise LoadFailed(WebmailOutcome.FAIL, f"{what} (more than limits.max_redirects = "
                                 f"{self.limits.max_redirects}): {' -> '.join(chain[:6])}"
                                 f"{' ...' if len(chain) > 6 else ''}")
            self.requests += 1
            self.stage = f"waiting for the response headers of {url}"
            async with self._limiter(url), self.client.stream(
                    method, url, headers=headers, content=content) as resp:
                self._note_protocol(resp)
                ttfb = self.elapsed()
                self.last_ttfb, self.last_status = ttfb, resp.status_code
                if resp.status_code in _REDIRECTS and "location" in resp.headers:
                    await self._drain(resp, self.limits.max_page_bytes, "redirect body")
                    url = str(resp.url.join(resp.headers["location"]))
                    if resp.status_code in (301, 302, 303) and method == "POST":
                        method, content = "GET", None
                        headers.pop("Content-Type", None)
                    continue
                scanner = PageScanner(str(resp.url))
                doc = _Doc(scanner, self.phase)
                self.docs.append(doc)
                ctype = resp.headers.get("content-type", "text/html").lower()
                if resp.status_code >= 400 or "html" not in ctype:
                    await self._drain(resp, self.limits.max_page_bytes, "page")
                else:
                    await self._read_html(resp, doc, defer=True)
                result = PageResult(str(resp.url), resp.status_code, resp.http_version,
                                    scanner, ttfb, self.elapsed())
            # Found in the last part of the page: started now that its connection is free
            # again, as a browser that had the whole page in one read would reuse it.
            deferred, self._deferred = self._deferred, []
            for res in deferred:
                self.discover(res, doc)
            doc.complete = True
            self._after(doc)
            return result

    async def _decoded(self, resp: httpx.Response, limit: int, what: str,
                       ) -> typing.AsyncIterator[bytes]:
        """The body decoded, step by step: at most `limit` bytes on the wire and decoded,
        every decoded byte charged to the load's budget."""
        decoder = _Decoder(resp.headers.get("content-encoding", ""), str(resp.url))
        total = 0
        async for raw in resp.aiter_raw():
            self._check_wire(resp, limit, what)
            for out in decoder.decode(raw):
                total += len(out)
                if total > limit:
                    raise LoadFailed(WebmailOutcome.FAIL, f"{what} {resp.url} is larger than "
                                     f"{limit} bytes decoded", resp.status_code)
                self.budget.charge(len(out), str(resp.url))
                yield out

    def _check_wire(self, resp: httpx.Response, limit: int, what: str) -> None:
        if resp.num_bytes_downloaded > limit:
            raise LoadFailed(WebmailOutcome.FAIL, f"{what} {resp.url} is larger than {limit} "
                             f"bytes", resp.status_code)
        self._check_total()

    async def _read_html(self, resp: httpx.Response, doc: _Doc, defer: bool) -> None:
        scanner = doc.scanner
        try:
            decoder = codecs.getincrementaldecoder(resp.charset_encoding or "utf-8")("replace")
        except LookupError:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.page_bytes = 0
        self.stage = f"receiving the page HTML of {resp.url}"
        limit = self.limits.max_page_bytes
        try:
            async for chunk in self._decoded(resp, limit, "page"):
                self.page_bytes = resp.num_bytes_downloaded
                scanner.feed(decoder.decode(chunk))
                if defer and resp.headers.get("content-length") == str(
                        resp.num_bytes_downloaded):
                    self._deferred.extend(scanner.take())  # the page is complete
                for res in scanner.take():
                    self.discover(res, doc)
                self.stage = (f"receiving the page HTML of {resp.url} "
                              f"({self.page_bytes} bytes so far)")
        except LoadFailed as exc:
            if exc.reason.startswith("page ") and "larger than" in exc.reason:
                raise LoadFailed(WebmailOutcome.FAIL, f"page {resp.url} is larger than "
                                 f"limits.max_page_bytes ({limit})", resp.status_code) from None
            raise
        scanner.feed(decoder.decode(b"", final=True))
        scanner.close()
        if defer:
            self._deferred.extend(scanner.take())
        else:
            for res in scanner.take():
                self.discover(res, doc)

    async def _drain(self, resp: httpx.Response, limit: int, what: str) -> None:
        """Read a body to its end without keeping it (counted on the wire, not decoded)."""
        async for _ in resp.aiter_raw():
            self._check_wire(resp, limit, what)

    async def _text(self, resp: httpx.Response, limit: int, what: str) -> str:
        """A body decoded to text (a stylesheet), within `limit` bytes."""
        parts = [part async for part in self._decoded(resp, limit, what)]
        return b"".join(parts).decode(resp.charset_encoding or "utf-8", "replace")

    # -- sub-resources ---------------------------------------------------------------------

    def discover(self, res: Resource, doc: _Doc | None = None) -> None:
        seen = doc.seen if doc is not None else self.seen
        if res.url in seen:
            return  # once per document (a browser's memory cache)
        seen.add(res.url)
        if res.url in self.inflight or self.reusable.get(res.url):
            return  # already coming, or fresh in the cache from an earlier page
        if res.url in self.reusable and res.kind == "stylesheet":
            self.sheets.pop(res.url, None)  # fetched again: the style pass waits for it
        if self.requests >= self.limits.max_requests:
            self.skipped += 1
            if res.kind == "stylesheet":
                self.sheets[res.url] = None  # never coming: the style pass goes on without
            return
        self.requests += 1
        self.inflight.add(res.url)
        if res.kind == "script" and doc is not None:
            doc.scripts.add(res.url)
        task = asyncio.create_task(self._fetch(res, doc))
        self.tasks.add(task)
        self.pending[task] = res.url
        task.add_done_callback(lambda t: self.pending.pop(t, None))

    async def _fetch(self, res: Resource, doc: _Doc | None) -> None:
        mode, dest = _FETCH_DEST.get(res.kind, ("no-cors", "empty"))
        headers = {"Accept": _ACCEPT.get(res.kind, "*/*"), "Sec-Fetch-Site": "same-origin",
                   "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest,
                   "Referer": doc.scanner.base if doc is not None else self.target.url}
        try:
            async with self._limiter(res.url), self.client.stream(
                    "GET", res.url, headers=headers, follow_redirects=True) as resp:
                self._note_protocol(resp)
                # A redirect costs a request too, as in a browser's count.
                self.requests += len(resp.history)
                self.reusable[res.url] = resp.status_code < 400 and _fresh(resp.headers)
                ctype = resp.headers.get("content-type", "")
                is_css = res.kind == "stylesheet" or "text/css" in ctype
                limit = self.limits.max_resource_bytes
                if resp.status_code >= 400:
                    await self._drain(resp, limit, "resource")
                    self._fail(res.url, f"HTTP {resp.status_code}")
                elif is_css:
                    sheet = parse_stylesheet(await self._text(resp, limit, "resource"),
                                             str(resp.url))
                    self.sheets[res.url] = sheet
                    for url in sheet.imports:  # fetched at once, as part of their sheet
                        self.discover(Resource(url, "stylesheet"), doc)
                elif (res.kind == "document" and "html" in ctype.lower()
                      and (doc.depth if doc else 0) < MAX_FRAME_DEPTH):
                    frame = _Doc(PageScanner(str(resp.url)), self.phase,
                                 (doc.depth if doc else 0) + 1)
                    self.docs.append(frame)
                    await self._read_html(resp, frame, defer=False)
                    frame.complete = True
                else:
                    await self._drain(resp, limit, "resource")
        except LoadFailed as exc:
            if exc.reason.startswith("more than limits.max_total_bytes"):
                raise  # the load's own budget: the whole load ends
            self._fail(res.url, exc.reason)
        except httpx.TooManyRedirects:
            self._fail(res.url, "too many redirects")
        except httpx.HTTPError as exc:
            self._fail(res.url, f"{type(exc).__name__}: {exc}")
        finally:
            self.inflight.discard(res.url)
            self.reusable.setdefault(res.url, False)
            if res.kind == "stylesheet":
                self.sheets.setdefault(res.url, None)
            for d in self.docs:
                d.scripts.discard(res.url)
        for d in list(self.docs):
            self._after(d)

    # -- what style and scripts add ---------------------------------------------------------

    def _after(self, doc: _Doc) -> None:
        """Once the document is in: its style pass when its stylesheets are all in too,
        and the configured extra requests when its scripts have run."""
        if doc.scanner.frames and not doc.scripts & doc.scanner.blocking:
            frames, doc.scanner.frames = doc.scanner.frames, []
            for url in frames:
                self.discover(Resource(url, "document"), doc)
        if not doc.complete:
            return
        # Chromium styles the body, and so asks for its matched rules' images and fonts,
        # only once the parser is past the blocking scripts: one more request turnaround
        # after the last of them, with the downlink idle meanwhile (the reference line
        # showed the images asked for when the scripts were in, not the stylesheets).
        if not doc.styled and not doc.scripts & doc.scanner.blocking:
            order = self._cascade_order(doc)
            if order is not None:
                doc.styled = True
                base = doc.scanner.base
                inline: dict[int, Rule] = {}
                for el, css in doc.scanner.inline:
                    inline[id(el)] = parse_declarations(css, base)
                wanted = compute(doc.scanner.root, order, inline)
                for url in [*wanted.images, *doc.scanner.lazy]:
                    self.discover(Resource(url, "image"), doc)
                for url in wanted.fonts:
                    self.discover(Resource(url, "font"), doc)
        if not doc.extras_started and doc.depth == 0 and not doc.scripts:
            doc.extras_started = True
            for extra in self.target.extra_requests:
                if extra.after == doc.phase:
                    self.discover(Resource(str(httpx.URL(self.target.url).join(extra.url)),
                                           "xhr"), doc)

    def _cascade_order(self, doc: _Doc) -> list[StyleSheet] | None:
        """The document's stylesheets in cascade order (each import before the sheet that
        imports it), or None while one of them is still loading."""
        if doc.inline_sheets is None:
            doc.inline_sheets = [parse_stylesheet(css, doc.scanner.base)
                                 for kind, css in doc.scanner.styles if kind == "style"]
            for sheet in doc.inline_sheets:
                for url in sheet.imports:
                    self.discover(Resource(url, "stylesheet"), doc)
        order: list[StyleSheet] = []
        visited: set[str] = set()

        def add(sheet: StyleSheet) -> bool:
            for url in sheet.imports:
                if url in visited:
                    continue
                visited.add(url)
                if url not in self.sheets:
                    return False
                imported = self.sheets[url]
                if imported is not None and not add(imported):
                    return False
            order.append(sheet)
            return True

        inline = iter(doc.inline_sheets)
        for kind, ref in doc.scanner.styles:
            if kind == "style":
                if not add(next(inline)):
                    return None
                continue
            if ref in visited:
                continue
            visited.add(ref)
            if ref not in self.sheets:
                return None
            linked = self.sheets[ref]
            if linked is not None and not add(linked):
                return None
        return order

    async def settle(self) -> None:
        """Wait until every sub-resource, including those discovered meanwhile, is done."""
        while self.tasks:
            done, _ = await asyncio.wait(self.tasks)
            self.tasks -= done
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise exc
            if self.pending:
                urls = list(self.pending.values())
                self.stage = (f"loading sub-resources ({len(urls)} still pending: "
                              f"{', '.join(urls[:3])}{' ...' if len(urls) > 3 else ''})")

    async def cancel_all(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=5)

    def pending_stage(self) -> str:
        if self.stage.startswith("loading sub-resources") or not self.pending:
            return self.stage
        urls = list(self.pending.values())
        return (f"loading sub-resources ({len(urls)} still pending: "
                f"{', '.join(urls[:3])}{' ...' if len(urls) > 3 else ''})")

    # -- login ----------------------------------------------------------------------------

    async def login(self, page: PageResult, login: LoginSettings) -> PageResult:
        form = page.scanner.login_form()
        if form is None:
            raise no_login_form(page.url)
        pw_name = login.password_field or next(
            (n for n, t, _ in form.fields if t == "password"), None)
        user_name = login.user_field or next(
            (n for n, t, _ in form.fields if t in ("text", "email")), None)
        names = {n for n, _, _ in form.fields}
        for key, name in (("user_field", user_name), ("password_field", pw_name)):
            if name is None or name not in names:
                raise LoadFailed(WebmailOutcome.FAIL, f"login: the form on {page.url} has no field "
                                 f"{name or '(text or email input)'} (set login.{key})")
        data: list[tuple[str, str]] = []
        for name, _, value in form.fields:
            if name == user_name:
                value = login.user
            elif name == pw_name:
                value = login.password.reveal()
            data.append((name, value))
        self.phase = "login"
        action = form.action or page.url
        method = form.method if form.method in ("GET", "POST") else "POST"
        check_password_destination(self.target, action, method)
        self.stage = f"submitting the login form to {action}"

        def guard(url: str) -> None:  # a 307/308 would carry the password on
            check_password_destination(self.target, url, "POST")

        result = await self.page(action, method, data, guard)
        if result.status >= 400:
            raise http_failed(result.status, result.url, "login: ")
        await self.settle()
        if login.expect_text is not None:
            if login.expect_text not in result.scanner.text:
                raise no_expect_text(result.url)
        elif result.scanner.login_form() is not None:
            raise still_asks_for_password(result.url)
        return result


def _phase_fields(link: Link) -> Fields:
    if not link.connections:
        return {}
    first = link.connections[0]
    return {"dns_s": first.dns_s, "connect_s": first.connect_s, "tls_s": first.tls_s,
            "tls_version": first.tls_version}


def _fresh(headers: httpx.Headers) -> bool:
    """May a browser take this response from its cache for a later page of the visit
    without asking again? Fresh by max-age or Expires, or by the heuristic freshness a
    Last-Modified gives (RFC 9111 4.2.2: a tenth of its age, minutes to days for static
    files); not with no-store, no-cache or nothing to go by."""
    cc = headers.get("cache-control", "").lower()
    if "no-store" in cc or "no-cache" in cc:
        return False
    m = re.search(r"max-age\s*=\s*(\d+)", cc)
    if m:
        return int(m.group(1)) > 0
    if "expires" in headers:
        try:
            return email.utils.parsedate_to_datetime(headers["expires"]).timestamp() > time.time()
        except (TypeError, ValueError):
            return False
    return "last-modified" in headers


def _error_class(exc: httpx.HTTPError) -> ErrorClass:
    """What kind of failure an httpx error is: the OS or TLS error under it when there is
    one (DNS, refused, TLS), else what httpx says (a timeout, a closed or broken stream)."""
    if local_exhaustion(exc):  # no descriptor, memory or local port left: ours
        return ErrorClass.PROBER
    if isinstance(exc, httpx.TimeoutException):
        return ErrorClass.TIMEOUT
    # httpcore re-raises its errors without their cause, but keeps them as the context.
    cause: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, OSError):  # ssl.SSLError and socket.gaierror are OSErrors
            return ErrorClass(classify(cause, "load").kind)
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return ErrorClass.REFUSED
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return ErrorClass.CLOSED
    return ErrorClass.PROTOCOL


async def load(ctx: ProbeContext, job: WebmailLoad) -> list[Measurement]:
    """One cold load of `job.target` over `job.profile`'s line: one `webmail_load` point.

    Never raises for what the target does (refusal, hang, errors, loops): each ends as an
    outcome with its reason in `error` and its kind in `error_class`.
    """
    target, profile = job.target, job.profile
    timeout = timeout_s(job, ctx.contract)
    started_ns = time.time_ns()
    link = Link(profile)
    transport = EmulatedTransport(link, ssl_context_for(target), http2=target.http2)
    client = httpx.AsyncClient(transport=transport, follow_redirects=False,
                               max_redirects=target.limits.max_redirects,
                               timeout=httpx.Timeout(timeout),
                               headers={**_CLIENT_HINTS, "User-Agent": user_agent(),
                                        "Accept-Encoding": ACCEPT_ENCODING,
                                        "Accept-Language": "en-US,en;q=0.9"})
    loader = _Loader(client, target, link)
    cpu0 = time.thread_time()
    outcome, error, status = WebmailOutcome.OK, None, None
    error_class: ErrorClass | None = None
    page: PageResult | None = None
    load_s = login_s = None
    login_status = None
    phase = "load"
    try:
        async with asyncio.timeout(timeout):
            page = await loader.page(target.url)
            status = page.status
            if page.status >= 400:
                raise http_failed(page.status, page.url)
            await loader.settle()
            load_s = loader.elapsed()
        if target.login is not None:
            phase = "login"
            login_t0 = loader.elapsed()
            async with asyncio.timeout(timeout):
                inbox = await loader.login(page, target.login)
            login_s = loader.elapsed() - login_t0
            login_status = inbox.status
    except TimeoutError:
        outcome, error_class = WebmailOutcome.TIMEOUT, ErrorClass.TIMEOUT
        if phase == "load":
            status = loader.last_status
        error = timed_out_text(phase, timeout, loader.pending_stage())
    except LoadFailed as exc:
        outcome, error, error_class = exc.outcome, exc.reason, exc.error_class
        if phase == "load" and exc.status is not None:
            status = exc.status
    except httpx.HTTPError as exc:
        outcome, error_class = WebmailOutcome.FAIL, _error_class(exc)
        if phase == "load":
            status = loader.last_status
        error = f"{type(exc).__name__} while {loader.stage}: {exc}"
    except Exception as exc:  # a probe reports, it does not crash its driver
        # What the target does ends above (LoadFailed, httpx's errors, the timeout); what
        # gets here is the prober's own (a bug, MemoryError, no descriptor left): charged
        # to nobody, counted by the judge as a load not measured
        outcome, error_class = WebmailOutcome.FAIL, ErrorClass.PROBER
        error = f"{type(exc).__name__} while {loader.stage}: {exc}"
    finally:
        await loader.cancel_all()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await client.aclose()
    elapsed = loader.elapsed()
    cpu_s = time.thread_time() - cpu0
    fields: Fields = {
        "status": status,
        **_phase_fields(link),
        "ttfb_s": page.ttfb_s if page else loader.last_ttfb,
        "html_s": page.html_s if page else None,
        "load_s": load_s,
        "login_s": login_s,
        "login_status": login_status,
        "bytes": link.bytes_down,
        "bytes_up": link.bytes_up,
        "requests": loader.requests,
        "failed_requests": loader.failed,
        "skipped_requests": loader.skipped,
        "connections": len(link.connections),
        "http_version": page.http_version if page else None,
        "url": page.url if page else target.url,
        "error": one_line(error) if error else None,
        "failed_detail": one_line("; ".join(loader.failures)) if loader.failures else None,
        "elapsed_s": elapsed,
        "host_rtt_s": link.host_rtt_s,
        "cpu_s": cpu_s,
    }
    return [load_point(job, ctx.vantage, ctx.contract, outcome, error_class, fields, timeout,
                       ENGINE, started_ns)]
