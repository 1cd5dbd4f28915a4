"""Webmail page load per network profile: a browser's cold first visit over an emulated line.

One call of `probe_webmail` is one cold load (new connections, no cache, no cookies) of a
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
import functools
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import certifi
import httpx

from prober.config.profiles import Profile
from prober.config.webmail import LoginSettings, WebmailTarget, page_open_clause
from prober.contract import Contract
from prober.measurement import Measurement, one_line
from prober.probes.throttle import EmulatedTransport, Link
from prober.probes.webmail_discover import PageScanner, Resource, css_resources

MEASUREMENT = "webmail_load"
ENGINE = "httpx"
OUTCOMES = ("ok", "http_error", "timeout", "fail")

USER_AGENT = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36 prober/0.1")
_ACCEPT = {
    "document": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "stylesheet": "text/css,*/*;q=0.1",
    "image": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
    "icon": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
    "font": "*/*",
    "script": "*/*",
    "preload": "*/*",
}


def _accept_encoding() -> str:
    # Count bytes as a browser receives them: compressed. Offer only what httpx can decode.
    codings = ["gzip", "deflate"]
    for module, name in (("brotli", "br"), ("brotlicffi", "br"), ("zstandard", "zstd")):
        try:
            __import__(module)
        except ImportError:
            continue
        if name not in codings:
            codings.append(name)
    return ", ".join(codings)


ACCEPT_ENCODING = _accept_encoding()
_REDIRECTS = (301, 302, 303, 307, 308)
DEFAULT_CONTRACT = Contract()  # the clauses without `[sla.clauses.*]` overrides
_MAX_DETAIL = 5


class LoadFailed(Exception):
    """The load ended early with an outcome other than ok; `reason` says why."""

    def __init__(self, outcome: str, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.status = status


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
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending: dict[asyncio.Task[None], str] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._h2: set[str] = set()
        self.stage = "starting"
        self.page_bytes = 0
        self._deferred: list[Resource] = []
        self.last_ttfb: float | None = None  # of the document being fetched, even if cut off
        self.last_status: int | None = None

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
            raise LoadFailed("fail", f"more than limits.max_total_bytes "
                             f"({self.limits.max_total_bytes}) received")

    def _fail(self, url: str, why: str) -> None:
        self.failed += 1
        if len(self.failures) < _MAX_DETAIL:
            self.failures.append(f"{url}: {why}")

    # -- the page ------------------------------------------------------------------------

    async def page(self, url: str, method: str = "GET",
                   form: list[tuple[str, str]] | None = None) -> PageResult:
        """Fetch a document, following redirects, feeding its HTML to the scanner as it comes."""
        chain: list[str] = []
        content: bytes | None = None
        headers = {"Accept": _ACCEPT["document"]}
        if form is not None and method == "POST":
            content = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif form is not None:
            url = str(httpx.URL(url).copy_merge_params(dict(form)))
        while True:
            chain.append(url)
            if len(chain) > self.limits.max_redirects + 1:
                loop = len(set(chain)) < len(chain)
                what = "redirect loop" if loop else "too many redirects"
                raise LoadFailed("fail", f"{what} (more than limits.max_redirects = "
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
                ctype = resp.headers.get("content-type", "text/html").lower()
                if resp.status_code >= 400 or "html" not in ctype:
                    await self._drain(resp, self.limits.max_page_bytes, "page")
                else:
                    await self._read_html(resp, scanner)
                result = PageResult(str(resp.url), resp.status_code, resp.http_version,
                                    scanner, ttfb, self.elapsed())
            # Found in the last part of the page: started now that its connection is free
            # again, as a browser that had the whole page in one read would reuse it.
            deferred, self._deferred = self._deferred, []
            for res in deferred:
                self.discover(res)
            return result

    async def _read_html(self, resp: httpx.Response, scanner: PageScanner) -> None:
        try:
            decoder = codecs.getincrementaldecoder(resp.charset_encoding or "utf-8")("replace")
        except LookupError:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.page_bytes = 0
        self.stage = f"receiving the page HTML of {resp.url}"
        async for chunk in resp.aiter_bytes():
            self.page_bytes = resp.num_bytes_downloaded
            if self.page_bytes > self.limits.max_page_bytes:
                raise LoadFailed("fail", f"page {resp.url} is larger than limits.max_page_bytes "
                                 f"({self.limits.max_page_bytes})", resp.status_code)
            self._check_total()
            scanner.feed(decoder.decode(chunk))
            if resp.headers.get("content-length") == str(resp.num_bytes_downloaded):
                self._deferred.extend(scanner.take())  # the page is complete
            for res in scanner.take():
                self.discover(res)
            self.stage = (f"receiving the page HTML of {resp.url} "
                          f"({self.page_bytes} bytes so far)")
        scanner.feed(decoder.decode(b"", final=True))
        scanner.close()
        self._deferred.extend(scanner.take())

    async def _drain(self, resp: httpx.Response, limit: int, what: str) -> bytes:
        """Read a body fully (decoded), within `limit` bytes on the wire."""
        parts: list[bytes] = []
        async for chunk in resp.aiter_bytes():
            if resp.num_bytes_downloaded > limit:
                raise LoadFailed("fail", f"{what} {resp.url} is larger than {limit} bytes",
                                 resp.status_code)
            self._check_total()
            parts.append(chunk)
        return b"".join(parts)

    # -- sub-resources ---------------------------------------------------------------------

    def discover(self, res: Resource) -> None:
        if res.url in self.seen:
            return
        self.seen.add(res.url)
        if self.requests >= self.limits.max_requests:
            self.skipped += 1
            return
        self.requests += 1
        task = asyncio.create_task(self._fetch(res))
        self.tasks.add(task)
        self.pending[task] = res.url
        task.add_done_callback(lambda t: self.pending.pop(t, None))

    async def _fetch(self, res: Resource) -> None:
        headers = {"Accept": _ACCEPT.get(res.kind, "*/*")}
        try:
            async with self._limiter(res.url), self.client.stream(
                    "GET", res.url, headers=headers, follow_redirects=True) as resp:
                self._note_protocol(resp)
                # A redirect costs a request too, as in a browser's count.
                self.requests += len(resp.history)
                is_css = (res.kind == "stylesheet"
                          or "text/css" in resp.headers.get("content-type", ""))
                body = await self._drain(resp, self.limits.max_resource_bytes, "resource")
                if resp.status_code >= 400:
                    self._fail(res.url, f"HTTP {resp.status_code}")
                elif is_css:
                    css = body.decode(resp.charset_encoding or "utf-8", "replace")
                    for sub in css_resources(css, str(resp.url)):
                        self.discover(sub)
        except LoadFailed as exc:
            if exc.reason.startswith("more than limits.max_total_bytes"):
                raise
            self._fail(res.url, exc.reason)
        except httpx.TooManyRedirects:
            self._fail(res.url, "too many redirects")
        except httpx.HTTPError as exc:
            self._fail(res.url, f"{type(exc).__name__}: {exc}")

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
            raise LoadFailed("fail", f"login: no form with a password field on {page.url}")
        pw_name = login.password_field or next(
            (n for n, t, _ in form.fields if t == "password"), None)
        user_name = login.user_field or next(
            (n for n, t, _ in form.fields if t in ("text", "email")), None)
        names = {n for n, _, _ in form.fields}
        for key, name in (("user_field", user_name), ("password_field", pw_name)):
            if name is None or name not in names:
                raise LoadFailed("fail", f"login: the form on {page.url} has no field "
                                 f"{name or '(text or email input)'} (set login.{key})")
        data: list[tuple[str, str]] = []
        for name, _, value in form.fields:
            if name == user_name:
                value = login.user
            elif name == pw_name:
                value = login.password.reveal()
            data.append((name, value))
        action = form.action or page.url
        self.stage = f"submitting the login form to {action}"
        result = await self.page(action, form.method if form.method in ("GET", "POST")
                                 else "POST", data)
        if result.status >= 400:
            raise LoadFailed("http_error", f"login: HTTP {result.status} "
                             f"{httpx.codes.get_reason_phrase(result.status)} from {result.url}",
                             result.status)
        await self.settle()
        if login.expect_text is not None:
            if login.expect_text not in result.scanner.text:
                raise LoadFailed("fail", f"login: the page after the login ({result.url}) does "
                                 f"not contain expect_text")
        elif result.scanner.login_form() is not None:
            raise LoadFailed("fail", f"login: the page after the login ({result.url}) still "
                             f"asks for a password (wrong credentials?)")
        return result


def _phase_fields(link: Link) -> dict[str, float | str | None]:
    if not link.connections:
        return {}
    first = link.connections[0]
    return {"dns_s": first.dns_s, "connect_s": first.connect_s, "tls_s": first.tls_s,
            "tls_version": first.tls_version}


async def probe_webmail(target: WebmailTarget, profile: Profile, vantage: str,
                        timeout_s: float | None = None,
                        contract: Contract = DEFAULT_CONTRACT) -> list[Measurement]:
    """One cold load of `target` over `profile`'s line: one `webmail_load` point.

    Never raises for what the target does (refusal, hang, errors, loops): each ends as an
    outcome with its reason in `error`.
    """
    if target.engine == "browser":  # optional extra: imported only when configured
        from prober.probes.webmail_browser import probe_webmail_browser
        return await probe_webmail_browser(target, profile, vantage, timeout_s, contract)
    timeout = timeout_s if timeout_s is not None else target.timeout_for(profile, contract)
    started_ns = time.time_ns()
    link = Link(profile)
    transport = EmulatedTransport(link, ssl_context_for(target), http2=target.http2)
    client = httpx.AsyncClient(transport=transport, follow_redirects=False,
                               max_redirects=target.limits.max_redirects,
                               timeout=httpx.Timeout(timeout),
                               headers={"User-Agent": USER_AGENT,
                                        "Accept-Encoding": ACCEPT_ENCODING,
                                        "Accept-Language": "en,*;q=0.5"})
    loader = _Loader(client, target, link)
    cpu0 = time.thread_time()
    outcome, error, status = "ok", None, None
    page: PageResult | None = None
    load_s = login_s = None
    login_status = None
    phase = "load"
    try:
        async with asyncio.timeout(timeout):
            page = await loader.page(target.url)
            status = page.status
            if page.status >= 400:
                raise LoadFailed("http_error", f"HTTP {page.status} "
                                 f"{httpx.codes.get_reason_phrase(page.status)} from {page.url}",
                                 page.status)
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
        outcome = "timeout"
        if phase == "load":
            status = loader.last_status
        what = "the login" if phase == "login" else "the load"
        error = f"{what} timed out after {timeout:g} s while {loader.pending_stage()}"
    except LoadFailed as exc:
        outcome, error = exc.outcome, exc.reason
        if phase == "load" and exc.status is not None:
            status = exc.status
    except httpx.HTTPError as exc:
        outcome = "fail"
        if phase == "load":
            status = loader.last_status
        error = f"{type(exc).__name__} while {loader.stage}: {exc}"
    except Exception as exc:  # a probe reports, it does not crash its driver
        outcome = "fail"
        error = f"{type(exc).__name__} while {loader.stage}: {exc}"
    finally:
        await loader.cancel_all()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await client.aclose()
    elapsed = loader.elapsed()
    cpu_s = time.thread_time() - cpu0
    fields: dict[str, float | int | str | bool | None] = {
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
    return [load_point(target, profile, vantage, outcome, fields, timeout, ENGINE, started_ns,
                       contract)]


def load_point(target: WebmailTarget, profile: Profile, vantage: str, outcome: str,
               fields: dict[str, float | int | str | bool | None], timeout_s: float,
               engine: str, started_ns: int, contract: Contract) -> Measurement:
    """The `webmail_load` point of either engine: the load's own fields plus what the
    schema requires of every load (the profile's line, the contract's limit, the timeout
    a failed load counts at), under the same tags."""
    load_s, login_s = fields.get("load_s"), fields.get("login_s")
    times = [float(v) for v in (load_s, login_s) if isinstance(v, int | float)]
    clause = page_open_clause(contract, profile)
    fields = {**fields,
              # the figure held against the contract: the page, or the inbox after the
              # login when that took longer (both are pages the customer waits for)
              "open_s": max(times) if outcome == "ok" and load_s is not None else None,
              "timeout_s": timeout_s,
              # the contract's limit as resolved with the overrides, and the clause's class
              "threshold_s": clause.num("mean_max_s"),
              "contract_class": clause.id.removeprefix("webmail_"),
              "link_down_kbps": profile.down_kbps,
              "link_up_kbps": profile.up_kbps,
              "link_rtt_s": profile.rtt_s,
              "engine": engine}
    tags = {"vantage": vantage, "target": target.name, "profile": profile.name,
            "outcome": outcome}
    return Measurement(MEASUREMENT, tags, fields, started_ns)


def judged_seconds(m: Measurement) -> float:
    """The page-open time judged against the contract: the page's load, or the inbox's
    after the login when that took longer (both are pages the customer waits for); a failed
    or timed-out load counts at its timeout (DESIGN.md's scoring rule)."""
    f = m.fields
    if m.tags.get("outcome") != "ok":
        return float(f.get("timeout_s") or 0.0)
    if isinstance(f.get("open_s"), int | float):
        return float(f["open_s"])  # type: ignore[arg-type]
    times = [float(v) for v in (f.get("load_s"), f.get("login_s")) if isinstance(v, int | float)]
    return max(times, default=0.0)
