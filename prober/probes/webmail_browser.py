"""The browser engine (`engine = "browser"`): Playwright driving the system Chromium, for
webmails that only render with JavaScript.

One call of `load` starts the emulated line (throttle_socks: a SOCKS5 proxy on loopback,
in this process, over the same `Link` model as the httpx engine), launches Chromium with
every connection through it, opens a new browser context (cold: no cache, no cookies),
loads the target's page until the browser's load event, and, with `[webmail.login]`,
fills in and submits the first form with a password field and waits for the load event of
the page that follows (the inbox).

So Chromium pays what the httpx engine pays: 1 RTT per new name, the TCP handshake, each
TLS flight and request turnaround, every byte through the shared up- and downlink.
(DevTools' `Network.emulateNetworkConditions`, used before, is per request and charges
no DNS, TCP or TLS round trips: issue 15 measured it 3-8 % fast.)

Needs the `browser` extra (`pip install 'prober[browser]'`: the playwright package, whose
own browser download is never used) and Debian's chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import time
from typing import Any

from prober.config.webmail import WebmailTarget
from prober.measurement import Measurement, one_line
from prober.probes.base import ProbeContext
from prober.probes.errors import classify, local_exhaustion
from prober.probes.throttle import Link
from prober.probes.throttle_socks import SocksLine
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
    prober_failed,
    still_asks_for_password,
    timed_out_text,
    timeout_s,
    too_many_bytes,
    user_agent,
)
from prober.schema import ErrorClass, WebmailOutcome

ENGINE = "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")
LAUNCH_TIMEOUT_S = 30.0
# Chromium's net::ERR_* names, by the class of failure they are.
_NET_ERRORS = (("ERR_NAME_NOT_RESOLVED", ErrorClass.DNS),
               ("ERR_NAME_RESOLUTION", ErrorClass.DNS),
               ("ERR_CONNECTION_REFUSED", ErrorClass.REFUSED),
               ("ERR_ADDRESS_UNREACHABLE", ErrorClass.REFUSED),
               ("ERR_CERT_", ErrorClass.TLS), ("ERR_SSL_", ErrorClass.TLS),
               ("ERR_TIMED_OUT", ErrorClass.TIMEOUT),
               ("ERR_CONNECTION_TIMED_OUT", ErrorClass.TIMEOUT),
               ("ERR_CONNECTION_RESET", ErrorClass.CLOSED),
               ("ERR_CONNECTION_CLOSED", ErrorClass.CLOSED),
               ("ERR_EMPTY_RESPONSE", ErrorClass.CLOSED),
               # the probe host's own network: its interfaces or addresses changed under
               # the load (Chromium then aborts every request) or it has none at all
               ("ERR_NETWORK_CHANGED", ErrorClass.PROBER),
               ("ERR_INTERNET_DISCONNECTED", ErrorClass.PROBER))


# Playwright's words when Chromium itself died or went away under the load (a crash, the
# OOM killer): the browser's failure, not the page's.
_BROWSER_GONE = ("Target crashed", "Page crashed", "Browser closed", "browser has disconnected",
                 "Target page, context or browser has been closed", "Browser has been closed")


def _browser_gone(text: str) -> bool:
    return any(words in text for words in _BROWSER_GONE)


def _net_error_class(text: str) -> ErrorClass:
    for name, cls in _NET_ERRORS:
        if name in text:
            return cls
    return ErrorClass.PROTOCOL


def _first_line(exc: BaseException) -> str:
    """Playwright's messages: "Page.goto: net::ERR_... at URL" and a call log below."""
    text = str(exc).strip().splitlines()
    return re.sub(r"^\w+\.\w+: ", "", text[0]) if text else type(exc).__name__


class _Network:
    """What the DevTools protocol reports about the page's requests."""

    def __init__(self, max_total_bytes: int) -> None:
        self.max_total_bytes = max_total_bytes
        self.requests = 0
        self.bytes = 0  # encodedDataLength of the finished requests
        self.streamed = 0  # running count from dataReceived, for the limit
        self.failed = 0
        self.failures: list[str] = []
        self.pending: dict[str, str] = {}
        self.navigations: set[str] = set()  # requestIds of documents (requestId == loaderId)
        # The page's own frame: its documents are the page; an iframe's document is one of
        # its sub-resources and must not set the page's ttfb_s or status.
        self.main_frame: str | None = None
        self.main_docs: set[str] = set()
        self.statuses: dict[str, int] = {}
        self.connections: set[Any] = set()
        self.doc: dict[str, Any] | None = None  # the main frame's last document response
        self.over = asyncio.Event()
        # Browser timestamps (s, the protocol's monotonic clock) of the current phase: its
        # first request, the document's response headers, DOMContentLoaded, the load event.
        self.start_ts: float | None = None
        self.ttfb_ts: float | None = None
        self.dcl_ts: float | None = None
        self.load_ts: float | None = None
        self.loaded = asyncio.Event()

    def new_phase(self) -> None:
        self.start_ts = self.ttfb_ts = self.dcl_ts = self.load_ts = None
        self.doc = None
        self.loaded.clear()

    def since_start(self, ts: float | None) -> float | None:
        if ts is None or self.start_ts is None:
            return None
        return max(0.0, ts - self.start_ts)

    def on_dcl(self, p: dict[str, Any]) -> None:
        self.dcl_ts = p.get("timestamp")

    def on_load(self, p: dict[str, Any]) -> None:
        self.load_ts = p.get("timestamp")
        self.loaded.set()

    def _fail(self, url: str, why: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_DETAIL:
            self.failures.append(f"{url}: {why}")

    def on_request(self, p: dict[str, Any]) -> None:
        url = p.get("request", {}).get("url", "")
        if not url.startswith(("http:", "https:")):
            return
        ts = p.get("timestamp")
        if self.load_ts is not None and ts is not None and ts > self.load_ts:
            return  # after the load event (the favicon, late beacons): not the page's load
        if self.start_ts is None:
            self.start_ts = ts
        self.requests += 1  # a redirect hop comes again under the same requestId: counted
        self.pending[p["requestId"]] = url
        if p.get("requestId") == p.get("loaderId") and p.get("type") == "Document":
            self.navigations.add(p["requestId"])
            if self.main_frame is not None and p.get("frameId") == self.main_frame:
                self.main_docs.add(p["requestId"])

    def on_response(self, p: dict[str, Any]) -> None:
        resp = p.get("response", {})
        rid = p.get("requestId", "")
        self.statuses[rid] = int(resp.get("status", 0))
        if resp.get("connectionId") is not None:
            self.connections.add(resp.get("connectionId"))
        if rid in self.main_docs:
            self.doc = resp
            self.ttfb_ts = p.get("timestamp")

    def on_data(self, p: dict[str, Any]) -> None:
        self.streamed += int(p.get("encodedDataLength") or 0)
        if self.streamed > self.max_total_bytes:
            self.over.set()

    def on_finished(self, p: dict[str, Any]) -> None:
        rid = p.get("requestId", "")
        url = self.pending.pop(rid, None)
        self.bytes += int(p.get("encodedDataLength") or 0)
        status = self.statuses.get(rid, 0)
        if url is not None and rid not in self.navigations and status >= 400:
            self._fail(url, f"HTTP {status}")

    def on_cached(self, p: dict[str, Any]) -> None:
        # From the memory cache (a stylesheet of the login page reused by the inbox):
        # no request on the line, as the httpx engine counts.
        if p.get("requestId") in self.pending:
            self.requests -= 1

    def on_failed(self, p: dict[str, Any]) -> None:
        rid = p.get("requestId", "")
        url = self.pending.pop(rid, None)
        if url is not None and rid not in self.navigations and not p.get("canceled"):
            self._fail(url, str(p.get("errorText") or "failed"))

    def pending_text(self) -> str:
        urls = [u for r, u in self.pending.items() if r not in self.navigations]
        return (f"{len(urls)} still pending: {', '.join(urls[:3])}"
                f"{' ...' if len(urls) > 3 else ''}")


class _State:
    def __init__(self) -> None:
        self.stage = "starting"
        self.url = ""


async def _guarded(coro: Any, net: _Network, limit: int) -> Any:
    """Await a Playwright call, unless the load goes over max_total_bytes first."""
    task = asyncio.ensure_future(coro)
    over = asyncio.ensure_future(net.over.wait())
    try:
        done, _ = await asyncio.wait({task, over}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        over.cancel()
    if task in done:
        return task.result()
    # Left running: the browser is closed next, which ends it; its error is not wanted.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    raise too_many_bytes(limit)


async def _load_event(net: _Network) -> float | None:
    """The load event's time from the phase's first request (the protocol's event may
    come a little after Playwright's own notice of it)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            await net.loaded.wait()
    return net.since_start(net.load_ts)


async def _login(page: Any, target: WebmailTarget, timeout_ms: float, net: _Network,
                 limit: int, state: _State) -> Any:
    login = target.login
    assert login is not None
    form = page.locator("form:has(input[type=password])").first
    if await form.count() == 0:
        raise no_login_form(page.url)
    if login.password_field:
        pw = form.locator(f'[name="{login.password_field}"]')
    else:
        pw = form.locator("input[type=password]")
    if login.user_field:
        user = form.locator(f'[name="{login.user_field}"]')
    else:
        user = form.locator("input[type=text], input[type=email], input:not([type])")
    for key, loc in (("user_field", user), ("password_field", pw)):
        if await loc.count() == 0:
            raise LoadFailed(WebmailOutcome.FAIL, f"login: the form on {page.url} has no "
                             f"field for login.{key}")
    action, method = await form.evaluate("f => [f.action, f.method]")
    check_password_destination(target, str(action), str(method))
    await user.first.fill(login.user, timeout=timeout_ms)
    await pw.first.fill(login.password.reveal(), timeout=timeout_ms)
    state.stage = f"submitting the login form on {page.url}"
    net.new_phase()
    async with page.expect_navigation(wait_until="load", timeout=timeout_ms) as nav:
        await form.evaluate("f => f.requestSubmit ? f.requestSubmit() : f.submit()")
        state.stage = "loading the page after the login"
    response = await _guarded(nav.value, net, limit)
    status = response.status if response is not None else 0
    if status >= 400:
        raise http_failed(status, page.url, "login: ")
    if login.expect_text is not None:
        text = await page.content()
        if login.expect_text not in text:
            raise no_expect_text(page.url)
    elif await page.locator("input[type=password]").count() > 0:
        raise still_asks_for_password(page.url)
    return response


def _stage(state: _State, net: _Network) -> str:
    if state.stage.startswith("loading the page") or state.stage.startswith("submitting"):
        if net.doc is None:
            return f"waiting for the response headers of {state.url}"
        if net.dcl_ts is None:
            return f"receiving the page HTML of {state.url}"
        return f"loading sub-resources ({net.pending_text()})"
    return state.stage


async def load(ctx: ProbeContext, job: WebmailLoad) -> list[Measurement]:
    """One cold load of `job.target` in Chromium over `job.profile`'s emulated line: one
    `webmail_load` point (engine "browser"). Never raises: each failure is an outcome."""
    return await load_with(ctx, job, CHROMIUM, emulate_line=True)


async def load_with(ctx: ProbeContext, job: WebmailLoad, executable: str,
                    emulate_line: bool, extra_args: tuple[str, ...] = ()) -> list[Measurement]:
    """`load`, with another Chromium executable and, with `emulate_line=False`, no line
    of its own: the tests' reference, Chromium in a namespace behind a packet-level
    line (tests/tunline.py), measured the same way; `extra_args` for Chromium (the
    tests trust their certificate with --ignore-certificate-errors-spki-list)."""
    target, profile = job.target, job.profile
    timeout = timeout_s(job, ctx.contract)
    timeout_ms = timeout * 1000.0
    started_ns = time.time_ns()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    cpu0 = time.thread_time()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    net = _Network(target.limits.max_total_bytes)
    state = _State()
    outcome, error, status = WebmailOutcome.OK, None, None
    error_class: ErrorClass | None = None
    ttfb_s = html_s = None
    first_url = target.url
    load_s = login_s = None
    login_status = None
    load_t0: float | None = None
    phase = "launch"
    pw = browser = None
    link = Link(profile)
    line: SocksLine | None = None
    try:
        if target.ca_file:
            raise LoadFailed(WebmailOutcome.FAIL, "engine \"browser\" cannot use ca_file "
                             "(Chromium takes its CAs from the system's NSS database)",
                             prober_side=True)
        try:
            from playwright.async_api import Error as PlaywrightError
            from playwright.async_api import async_playwright
        except ImportError:
            raise LoadFailed(WebmailOutcome.FAIL, "engine \"browser\" needs the browser "
                             "extra: pip install 'prober[browser]'", prober_side=True) from None
        try:
            state.stage = f"launching {CHROMIUM}"
            async with asyncio.timeout(LAUNCH_TIMEOUT_S):
                proxy: list[str] = []
                if emulate_line:
                    line = await SocksLine(link).start()
                    # every connection through the line, loopback too (Chromium's default
                    # bypasses it for loopback, where the tests' servers are)
                    proxy = [f"--proxy-server={line.url}", "--proxy-bypass-list=<-loopback>"]
                pw = await async_playwright().start()
                browser = await pw.chromium.launch(
                    executable_path=executable, args=[*CHROMIUM_ARGS, *proxy, *extra_args],
                    timeout=LAUNCH_TIMEOUT_S * 1000)
                context = await browser.new_context(
                    ignore_https_errors=not target.tls_verify,
                    user_agent=user_agent(browser.version))
                page = await context.new_page()
                cdp = await context.new_cdp_session(page)
                cdp.on("Network.requestWillBeSent", net.on_request)
                cdp.on("Network.responseReceived", net.on_response)
                cdp.on("Network.dataReceived", net.on_data)
                cdp.on("Network.loadingFinished", net.on_finished)
                cdp.on("Network.loadingFailed", net.on_failed)
                cdp.on("Network.requestServedFromCache", net.on_cached)
                cdp.on("Page.domContentEventFired", net.on_dcl)
                cdp.on("Page.loadEventFired", net.on_load)
                await cdp.send("Network.enable")
                await cdp.send("Page.enable")
                tree = await cdp.send("Page.getFrameTree")
                net.main_frame = tree["frameTree"]["frame"]["id"]
        # Nothing has gone to the target yet: whatever fails here is the prober's own.
        except TimeoutError:
            raise prober_failed(f"Chromium did not start within {LAUNCH_TIMEOUT_S:g} s") \
                from None
        except PlaywrightError as exc:
            raise prober_failed(f"Chromium ({executable}) could not be started: "
                                f"{_first_line(exc)}") from None
        except Exception as exc:
            what = ("the emulated line's proxy could not start" if line is None and emulate_line
                    else "Chromium could not be started")
            raise prober_failed(f"{what}: {type(exc).__name__}: {exc}") from None

        phase = "load"
        state.url = target.url
        state.stage = "loading the page"
        net.new_phase()
        load_t0 = loop.time()
        try:
            async with asyncio.timeout(timeout + CLOSE_TIMEOUT_S):  # backstop
                response = await _guarded(
                    page.goto(target.url, wait_until="load", timeout=timeout_ms),
                    net, target.limits.max_total_bytes)
        except PlaywrightError as exc:
            if "Timeout" in type(exc).__name__ or "Timeout " in str(exc):
                raise TimeoutError from None
            raise
        status = response.status if response is not None else None
        ttfb_s = net.since_start(net.ttfb_ts)
        html_s = net.since_start(net.dcl_ts)
        first_url = page.url
        if status is not None and status >= 400:
            raise http_failed(status, page.url)
        load_s = await _load_event(net)
        if load_s is None:
            load_s = loop.time() - load_t0
        if target.login is not None:
            phase = "login"
            state.url = page.url
            login_t0 = loop.time()
            try:
                async with asyncio.timeout(timeout + CLOSE_TIMEOUT_S):
                    inbox = await _login(page, target, timeout_ms, net,
                                         target.limits.max_total_bytes, state)
            except PlaywrightError as exc:
                if "Timeout" in type(exc).__name__ or "Timeout " in str(exc):
                    raise TimeoutError from None
                raise
            login_s = await _load_event(net)
            if login_s is None:
                login_s = loop.time() - login_t0
            login_status = inbox.status if inbox is not None else None
    except TimeoutError:
        outcome, error_class = WebmailOutcome.TIMEOUT, ErrorClass.TIMEOUT
        error = timed_out_text(phase, timeout, _stage(state, net))
        if phase == "load" and net.doc is not None:
            status = int(net.doc.get("status", 0)) or None
            ttfb_s = net.since_start(net.ttfb_ts)
    except LoadFailed as exc:
        outcome, error, error_class = exc.outcome, exc.reason, exc.error_class
        if phase == "load" and exc.status is not None:
            status = exc.status
    except Exception as exc:  # a probe reports, it does not crash its driver
        playwright = type(exc).__module__.startswith("playwright")
        outcome, error_class = WebmailOutcome.FAIL, _net_error_class(str(exc))
        # Our code's error, the host out of memory or descriptors, Chromium gone: none of
        # them is the target's doing (charged to nobody; the judge counts it as coverage)
        if not playwright or local_exhaustion(exc) or _browser_gone(str(exc)):
            error_class = ErrorClass.PROBER
        name = "" if playwright else f"{type(exc).__name__}: "
        error = f"{name}{_first_line(exc)} (while {_stage(state, net)})"
        if "ERR_SOCKS_CONNECTION_FAILED" in str(exc) and line is not None and line.failures:
            # Chromium names only the proxy: the line knows what the target did
            where, why = line.failures[-1]
            failure = classify(why, "connect")
            error_class = (ErrorClass.PROBER if local_exhaustion(why)
                           else ErrorClass(failure.kind))
            error = f"connect to {where} failed: {failure.detail} (while {_stage(state, net)})"
    finally:
        end = loop.time()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if browser is not None:
                    await browser.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if pw is not None:
                    await pw.stop()
        if line is not None:
            await line.close()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (time.thread_time() - cpu0 + (ru1.ru_utime - ru0.ru_utime)
             + (ru1.ru_stime - ru0.ru_stime))
    doc = (net.doc or {}) if phase == "load" else {}
    security = doc.get("securityDetails") or {}
    fields: Fields = {
        "status": status,
        "ttfb_s": ttfb_s,
        "html_s": html_s,
        "load_s": load_s if outcome == WebmailOutcome.OK or phase == "login" else None,
        "login_s": login_s,
        "login_status": login_status,
        # on the line, as the httpx engine counts: headers, TLS and all connections
        "bytes": link.bytes_down if emulate_line else net.bytes,
        "bytes_up": link.bytes_up if emulate_line else None,
        "requests": net.requests,
        "failed_requests": net.failed,
        "failed_detail": one_line("; ".join(net.failures)) if net.failures else None,
        "connections": len(link.connections) if emulate_line else len(net.connections),
        "host_rtt_s": link.host_rtt_s,
        "http_version": doc.get("protocol"),
        "tls_version": security.get("protocol"),
        "url": doc.get("url") or first_url,
        "error": one_line(error) if error else None,
        "elapsed_s": end - (load_t0 if load_t0 is not None else t0),
        "launch_s": (load_t0 - t0) if load_t0 is not None else None,
        "cpu_s": cpu_s,
    }
    return [load_point(job, ctx.vantage, ctx.contract, outcome, error_class, fields, timeout,
                       ENGINE, started_ns)]
