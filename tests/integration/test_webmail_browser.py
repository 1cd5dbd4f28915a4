"""The browser engine: Chromium (Debian's, driven by Playwright) loads a page that builds
itself with JavaScript, throttled by the profile; errors and hangs end as outcomes."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import time
import zlib
from collections.abc import Iterator

import pytest

from prober.config.profiles import Profile
from prober.config.reader import Secret, Section
from prober.config.webmail import LoginSettings, WebmailTarget, parse_webmail
from prober.measurement import Measurement
from prober.probes import throttle_socks, webmail_browser
from prober.probes.webmail import WebmailLoad
from tests.localstack.packages import ensure_packages
from tests.localstack.ports import free_port
from tests.webmail_helpers import context, load
from tests.webserver import Reply, Request, WebServer, page

pytestmark = pytest.mark.integration

# The image exists only once the script has run: the httpx engine cannot see it.
JS_PAGE = """<html><head><title>webmail</title></head><body><div id=app></div>
<script>
const img = document.createElement('img');
img.src = '/js.png';
document.getElementById('app').appendChild(img);
</script></body></html>"""



def png(width: int = 40, height: int = 40) -> bytes:
    """A valid PNG of noise (Chromium stops fetching an image it cannot decode)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    rows = b"".join(b"\0" + os.urandom(width * 3) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


IMAGE = png()
PROFILE = Profile("test", down_kbps=2000, up_kbps=1000, rtt_ms=150)

# The login form is written by a script too.
LOGIN_PAGE = """<html><body><div id=app></div><script>
document.getElementById('app').innerHTML = '<form method=post action=/login>' +
  '<input type=hidden name=csrf value=tok-1><input type=text name=user>' +
  '<input type=password name=pass><button type=submit>Sign in</button></form>';
</script></body></html>"""


async def login_post(req: Request) -> Reply:
    form = req.form()
    if form != {"csrf": "tok-1", "user": "alice", "pass": "s3cret"}:
        return page(LOGIN_PAGE)
    return Reply(303, b"", {"Location": "/inbox", "Set-Cookie": "session=ok; Path=/"})


async def inbox(req: Request) -> Reply:
    if "session=ok" not in req.headers.get("cookie", ""):
        return Reply(302, b"", {"Location": "/login-page"})
    return page('<html><body><h1>Inbox</h1><img src="/js.png"></body></html>')


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    ensure_packages({"chromium": "chromium"})
    srv = WebServer({
        "/": page(JS_PAGE),
        "/js.png": page(IMAGE, "image/png"),
        "/login-page": page(LOGIN_PAGE),
        "/login": login_post,
        "/inbox": inbox,
        "/error": page("<h1>down for maintenance</h1>", status=503),
        "/hang": Reply(200, b"late", {"Content-Type": "text/html"}, delay_s=3600),
        "/line": page('<html><head><link rel=stylesheet href="/line.css"></head>'
                      '<body class=x><img src="/line1.png"><p>Inbox</p></body></html>'),
        "/line.css": page(".x{background:url(/line2.png)}" + "/*pad*/" * 1000, "text/css"),
        "/line1.png": page(png(100, 100), "image/png"),
        "/line2.png": page(png(100, 100), "image/png"),
        "/tiny": page("<html><body>hi</body></html>"),
        "/framed": page('<html><body><p>Mail</p><iframe src="/slow-frame"></iframe>'
                        "</body></html>"),
        "/slow-frame": Reply(200, b"<p>watermark</p>", {"Content-Type": "text/html"},
                             delay_s=1.5),
    }).start()
    yield srv
    srv.stop()


def target(url: str, engine: str = "browser", timeout_s: float | None = None) -> WebmailTarget:
    return WebmailTarget(name="mail", url=url, profiles=(PROFILE,), engine=engine,
                         timeout_s=timeout_s)


def test_javascript_page_loads_with_throttling(server: WebServer) -> None:
    server.clear_log()
    m = load(target(server.base + "/"), PROFILE)
    f = m.fields
    assert m.name == "webmail_load"
    assert m.tags == {"vantage": "test", "target": "mail", "profile": "test", "outcome": "ok"}
    assert f["engine"] == "browser"
    assert f["status"] == 200
    assert "/js.png" in [e.path for e in server.entries()]
    assert f["requests"] >= 2  # the page and the image the script inserted
    assert f["failed_requests"] == 0
    # Two requests in sequence, each delayed by the emulated latency.
    assert f["load_s"] > 2 * PROFILE.rtt_s
    assert 0 < f["ttfb_s"] <= f["html_s"] <= f["load_s"] == f["open_s"]
    assert f["bytes"] > len(IMAGE)
    assert f["threshold_s"] == 10.0 and f["contract_class"] == "broadband"
    assert f["link_rtt_s"] == PROFILE.rtt_s
    assert f["error"] is None

    # The httpx engine, on the same page, cannot see what the script adds.
    h = load(target(server.base + "/", "httpx"), PROFILE)
    assert h.tags["outcome"] == "ok" and h.fields["engine"] == "httpx"
    assert h.fields["requests"] == 1


SLOW = Profile("slow", down_kbps=400, up_kbps=400, rtt_ms=200)


def test_chromium_pays_the_same_line_as_the_httpx_engine(server: WebServer) -> None:
    # Through the in-process SOCKS5 line: the TCP handshake is a round trip before the
    # request's (DevTools throttling charged the request's only).
    tiny = load(target(server.base + "/tiny"), SLOW)
    assert tiny.tags["outcome"] == "ok", tiny.fields["error"]
    assert tiny.fields["load_s"] >= 2 * SLOW.rtt_s
    assert tiny.fields["connections"] == 1
    # The same bytes over the same line model: the two engines' times come close.
    b = load(target(server.base + "/line"), SLOW)
    h = load(target(server.base + "/line", "httpx"), SLOW)
    assert b.tags["outcome"] == h.tags["outcome"] == "ok", (b.fields["error"], h.fields["error"])
    assert b.fields["requests"] == h.fields["requests"] == 4
    assert abs(b.fields["bytes"] - h.fields["bytes"]) <= 0.02 * h.fields["bytes"]
    assert b.fields["connections"] == h.fields["connections"]
    print("browser", b.fields["load_s"], "httpx", h.fields["load_s"])
    assert 0.9 * h.fields["load_s"] <= b.fields["load_s"] <= 1.3 * h.fields["load_s"]


def test_ttfb_is_the_pages_not_an_iframes(server: WebServer) -> None:
    # The iframe's document answers 1.5 s late: the load waits for it, the page's own
    # response headers do not (issue 15: ttfb_s came from the last document response).
    m = load(target(server.base + "/framed"), PROFILE)
    f = m.fields
    assert m.tags["outcome"] == "ok", f["error"]
    assert f["load_s"] > 1.5
    assert 0 < f["ttfb_s"] < 1.0
    assert f["url"] == server.base + "/framed"


def test_login_reaches_the_inbox(server: WebServer) -> None:
    good = LoginSettings(user="alice", password=Secret("test", "s3cret"), expect_text="Inbox")
    t = WebmailTarget(name="mail", url=server.base + "/login-page", profiles=(PROFILE,),
                      engine="browser", login=good)
    m = load(t, PROFILE)
    assert m.tags["outcome"] == "ok", m.fields["error"]
    assert m.fields["login_status"] == 200
    assert m.fields["login_s"] > 2 * PROFILE.rtt_s  # the POST, the inbox, its image
    assert m.fields["open_s"] == max(m.fields["load_s"], m.fields["login_s"])

    bad = LoginSettings(user="alice", password=Secret("test", "wrong"))
    t = WebmailTarget(name="mail", url=server.base + "/login-page", profiles=(PROFILE,),
                      engine="browser", login=bad)
    m = load(t, PROFILE)
    assert m.tags["outcome"] == "fail"
    assert "still asks for a password" in str(m.fields["error"])
    assert m.fields["error_class"] == "auth"


def test_http_error(server: WebServer) -> None:
    m = load(target(server.base + "/error"), PROFILE)
    assert m.tags["outcome"] == "http_error"
    assert m.fields["status"] == 503
    assert "HTTP 503 Service Unavailable from" in str(m.fields["error"])
    assert m.fields["error_class"] == "http"
    assert m.fields["open_s"] is None


def test_hung_server_times_out(server: WebServer) -> None:
    t0 = time.monotonic()
    m = load(target(server.base + "/hang", timeout_s=2), PROFILE)
    took = time.monotonic() - t0
    assert m.tags["outcome"] == "timeout"
    assert "timed out after 2 s" in str(m.fields["error"])
    assert "waiting for the response headers" in str(m.fields["error"])
    assert m.fields["error_class"] == "timeout"
    assert m.fields["elapsed_s"] < 2 + 1.5
    assert took < 2 + 15  # launch and close included


def test_refused_connection_fails() -> None:
    m = load(target(f"http://127.0.0.1:{free_port()}/"), PROFILE)
    assert m.tags["outcome"] == "fail"
    # Chromium says only ERR_SOCKS_CONNECTION_FAILED: the line says what the target did
    assert str(m.fields["error"]).startswith("connect to 127.0.0.1:")
    assert "failed: connection refused" in str(m.fields["error"])
    assert m.fields["error_class"] == "refused"


def test_config_accepts_browser_engine(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    root = Section({"webmail": [{"name": "m", "url": "https://127.0.0.1/",
                                 "engine": "browser"}]}, str(tmp_path / "prober.toml"))
    [t] = parse_webmail(root)
    assert t.engine == "browser"
    root = Section({"webmail": [{"name": "m", "url": "https://127.0.0.1/", "engine": "browser",
                                 "ca_file": str(ca)}]}, str(tmp_path / "prober.toml"))
    with pytest.raises(Exception, match="ca_file"):
        parse_webmail(root)


def test_config_names_the_extra_when_playwright_is_missing(tmp_path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "playwright" else real(name, *a))
    root = Section({"webmail": [{"name": "m", "url": "https://127.0.0.1/",
                                 "engine": "browser"}]}, str(tmp_path / "prober.toml"))
    with pytest.raises(Exception, match=r"webmail\[0\]\.engine.*pip install 'prober\[browser\]'"):
        parse_webmail(root)


def _load_with(executable: str, url: str) -> Measurement:
    job = WebmailLoad(target(url, timeout_s=5), PROFILE)
    (m,) = asyncio.run(webmail_browser.load_with(context(), job, executable, emulate_line=True))
    return m


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_chromium_that_cannot_start_is_the_probers_failure(server: WebServer,
                                                           tmp_path) -> None:
    """No Chromium, one that dies at start, one without memory, one whose DevTools pipe is
    closed: the prober's failures (error_class "prober"), never the provider's."""
    url = server.base + "/tiny"
    cases = {
        "missing": str(tmp_path / "no-such-chromium"),
        "crash": _script(tmp_path, "crash", "echo 'segfault' >&2; exit 139"),
        # 300 MB of address space: Chromium cannot map its heap
        "oom": _script(tmp_path, "oom", 'ulimit -v 300000; exec /usr/bin/chromium "$@"'),
        "no-devtools": _script(tmp_path, "nodevtools", 'exec /usr/bin/chromium "$@" 3>&- 4>&-'),
    }
    server.clear_log()
    for case, exe in cases.items():
        t0 = time.monotonic()
        m = _load_with(exe, url)
        print(case, f"{time.monotonic() - t0:.1f}s", m.tags["outcome"], m.fields["error_class"],
              m.fields["error"])
        assert m.tags["outcome"] == "fail", case
        assert m.fields["error_class"] == "prober", case
        assert m.fields["open_s"] is None and m.fields["load_s"] is None, case
        assert "could not be started" in str(m.fields["error"]) or "did not start" in str(
            m.fields["error"]), case
    assert [e.path for e in server.entries()] == []  # nothing reached the target


def test_our_line_that_cannot_bind_is_the_probers_failure(server: WebServer,
                                                          monkeypatch) -> None:
    async def no_fd(self: object) -> object:  # the bind on loopback, out of descriptors
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(throttle_socks.SocksLine, "start", no_fd)
    m = _load_with(webmail_browser.CHROMIUM, server.base + "/tiny")
    print(m.fields["error_class"], m.fields["error"])
    assert m.tags["outcome"] == "fail" and m.fields["error_class"] == "prober"
    assert str(m.fields["error"]).startswith("the emulated line's proxy could not start: "
                                             "OSError: [Errno 24] Too many open files")


def test_check_without_chromium_is_unknown_not_critical(server: WebServer, tmp_path,
                                                        monkeypatch) -> None:
    """Nagios' UNKNOWN (exit 3) when the prober could not make the load: the provider's
    page was never asked for, so CRITICAL would be a false alarm against it."""
    from click.testing import CliRunner

    from prober.cli import main

    cfg = tmp_path / "probes.toml"
    cfg.write_text(f'[vantage]\nname = "v1"\nstate_dir = "{tmp_path / "state"}"\n\n'
                   f'[[webmail]]\nname = "mail"\nurl = "{server.base}/tiny"\n'
                   f'engine = "browser"\nprofiles = ["broadband"]\n')
    monkeypatch.setattr(webmail_browser, "CHROMIUM", str(tmp_path / "no-such-chromium"))
    r = CliRunner().invoke(main, ["check", "-c", str(cfg), "--no-write"])
    print(r.exit_code, r.output)
    assert r.exit_code == 3, r.output
    first = next(line for line in r.output.splitlines() if line.startswith("PROBER"))
    assert first.startswith("PROBER UNKNOWN - webmail mail/broadband: not measured (the "
                            "prober's own failure): Chromium")
    assert "webmail_mail/broadband=U;10;" in first
