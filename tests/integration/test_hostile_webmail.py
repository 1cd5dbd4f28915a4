"""Hostile webmail servers on loopback: every load ends within its timeout with a named
outcome, in bounded memory, and the login's password goes nowhere but the configured origin.

The memory cases load in a child process (the prober's own, as the agent would be) whose
peak RSS is read from /proc (VmHWM) when it ends; the child's address space is capped (with
`resource`) so a regression fails the test instead of the machine.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from prober.config.profiles import resolve_profile
from prober.config.reader import Secret
from prober.config.webmail import LoginSettings, WebmailTarget
from tests.webmail_helpers import load
from tests.webserver import Reply, Request, WebServer, make_cert, page, server_tls_context

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PEAK_RSS_LIMIT_MB = 200
PASSWORD = "hostile-Pa55"


@functools.cache
def gzip_bomb() -> bytes:
    """About 200 KB of gzip that decodes to 200 MB of zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    return b"".join([*(c.compress(zeros) for _ in range(200)), c.flush()])


async def endless() -> AsyncIterator[bytes]:
    chunk = b"<p>" + b"x" * 65530 + b"</p>"
    yield b"<html><body>"
    while True:
        yield chunk  # as fast as loopback takes it


def bomb(ctype: str) -> Reply:
    return Reply(200, gzip_bomb(), {"Content-Type": ctype, "Content-Encoding": "gzip"})


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    srv = WebServer({
        "/endless": Reply(200, headers={"Content-Type": "text/html"}, stream=endless),
        "/bombs": page('<html><head><link rel=stylesheet href="/bomb.css"></head><body>'
                       '<img src="/bomb.png"><p>Inbox</p></body></html>'),
        "/bomb.css": bomb("text/css"),
        "/bomb.png": bomb("image/png"),
        "/bomb.html": bomb("text/html"),
    }).start()
    yield srv
    srv.stop()


CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path.insert(0, {root!r})
from prober.config.profiles import resolve_profile
from prober.config.webmail import WebmailTarget
from tests.webmail_helpers import load
args = json.loads(sys.argv[1])
m = load(WebmailTarget("hostile", args["url"], timeout_s=args["timeout_s"]),
         resolve_profile(args["profile"]))
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"outcome": m.tags["outcome"], "fields": dict(m.fields),
                  "peak_rss_mb": int(hwm.split()[1]) / 1024}}))
"""


def load_in_child(url: str, profile: str, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)),
         json.dumps({"url": url, "profile": profile, "timeout_s": timeout_s})],
        capture_output=True, text=True, timeout=timeout_s + 60, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["took_s"] = time.monotonic() - started
    print(url, profile, result["outcome"], f"peak RSS {result['peak_rss_mb']:.0f} MB",
          f"{result['took_s']:.1f} s", result["fields"].get("error"))
    return result


def test_endless_page_on_narrowband_times_out_in_bounded_memory(server: WebServer) -> None:
    r = load_in_child(server.base + "/endless", "narrowband", timeout_s=8)
    assert r["outcome"] == "timeout"
    assert "timed out after 8 s while receiving the page HTML" in r["fields"]["error"]
    assert r["fields"]["error_class"] == "timeout"
    assert r["fields"]["elapsed_s"] < 8 + 1
    assert r["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_endless_page_on_a_fast_line_is_cut_at_the_page_limit(server: WebServer) -> None:
    r = load_in_child(server.base + "/endless", "fios", timeout_s=20)
    assert r["outcome"] == "fail"
    assert "is larger than limits.max_page_bytes (5000000)" in r["fields"]["error"]
    assert r["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_gzip_bombs_among_sub_resources_are_bounded_and_named(server: WebServer) -> None:
    r = load_in_child(server.base + "/bombs", "fios", timeout_s=20)
    f = r["fields"]
    # The page loads; the stylesheet that would decode to 200 MB is a named failure, the
    # image is counted on the wire and never decoded.
    assert r["outcome"] == "ok", f["error"]
    assert f["failed_requests"] == 1
    assert "bomb.css" in f["failed_detail"]
    assert "larger than 10000000 bytes decoded" in f["failed_detail"]
    assert f["bytes"] > len(gzip_bomb())  # the image, whole, on the wire
    assert r["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_gzip_bomb_page_fails_at_the_page_limit(server: WebServer) -> None:
    r = load_in_child(server.base + "/bomb.html", "fios", timeout_s=20)
    assert r["outcome"] == "fail"
    assert "is larger than limits.max_page_bytes (5000000)" in r["fields"]["error"]
    assert r["fields"]["error_class"] == "protocol"
    assert r["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


# -- where the password goes ---------------------------------------------------------------


class Catcher:
    """A server that records every request it gets (the place a password must not reach)."""

    def __init__(self, tls: Any = None) -> None:
        self.requests: list[Request] = []

        async def record(req: Request) -> Reply:
            self.requests.append(req)
            return page("<html><body><h1>Inbox</h1></body></html>")

        self.server = WebServer({"/login": record, "/": record}, tls=tls).start()

    def got_password(self) -> bool:
        return any(PASSWORD.encode() in r.body or PASSWORD in r.query for r in self.requests)


def login_page(action: str, method: str = "post") -> Reply:
    return page(f'<html><body><form method="{method}" action="{action}">'
                '<input type=text name=user><input type=password name=pass>'
                "</form></body></html>")


def login_target(url: str, **kw: Any) -> WebmailTarget:
    login = LoginSettings(user="alice", password=Secret("test", PASSWORD))
    return WebmailTarget("mail", url, timeout_s=10, login=login, **kw)


FAST = resolve_profile("fios")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("certs"))


def test_cross_origin_form_does_not_get_the_password() -> None:
    catcher = Catcher()
    # the same loopback address by another name, and another port: another origin
    other = f"http://localhost:{catcher.server.port}/login"
    srv = WebServer({"/": login_page(other)}).start()
    try:
        m = load(login_target(srv.base + "/"), FAST)
        assert m.tags["outcome"] == "fail"
        assert m.fields["error"] == (
            f"login: the form would send the password to http://localhost:"
            f"{catcher.server.port}, not to the configured origin "
            f"http://127.0.0.1:{srv.port}; not submitted")
        assert m.fields["error_class"] == "protocol"
        assert m.fields["load_s"] is not None and m.fields["login_s"] is None
        assert catcher.requests == []
        assert PASSWORD not in m.to_line()
    finally:
        srv.stop()
        catcher.server.stop()


def test_plain_http_form_on_an_https_webmail_needs_allow_plaintext(
        certs: tuple[Path, Path]) -> None:
    cert, key = certs
    catcher = Catcher()
    srv = WebServer({"/": login_page(f"http://127.0.0.1:{catcher.server.port}/login")},
                    tls=server_tls_context(cert, key)).start()
    try:
        m = load(login_target(srv.base + "/", ca_file=str(cert)), FAST)
        assert m.tags["outcome"] == "fail"
        assert "would send the password unencrypted to http://127.0.0.1:" in str(
            m.fields["error"])
        assert "(allow_plaintext is false); not submitted" in str(m.fields["error"])
        assert m.fields["error_class"] == "tls"
        assert catcher.requests == []
        # With the operator's opt-in the downgrade is accepted, but still only to this
        # host: the catcher is 127.0.0.1 on another port, so it is another origin.
        m = load(login_target(srv.base + "/", ca_file=str(cert), allow_plaintext=True), FAST)
        assert "not to the configured origin" in str(m.fields["error"])
        assert catcher.requests == []
    finally:
        srv.stop()
        catcher.server.stop()


def test_get_form_would_put_the_password_in_a_url() -> None:
    srv = WebServer({"/": login_page("/login", method="get")}).start()
    try:
        m = load(login_target(srv.base + "/"), FAST)
        assert m.tags["outcome"] == "fail"
        assert "would send the password in the URL (method GET)" in str(m.fields["error"])
        assert all(e.path != "/login" for e in srv.entries())
    finally:
        srv.stop()


def test_redirect_that_would_carry_the_password_away_is_not_followed() -> None:
    catcher = Catcher()
    away = f"http://localhost:{catcher.server.port}/login"

    async def bounce(req: Request) -> Reply:
        return Reply(307, b"", {"Location": away})  # 307: the POST and its body go on

    srv = WebServer({"/": login_page("/login"), "/login": bounce}).start()
    try:
        m = load(login_target(srv.base + "/"), FAST)
        assert m.tags["outcome"] == "fail"
        assert "would send the password to http://localhost:" in str(m.fields["error"])
        assert catcher.requests == []
    finally:
        srv.stop()
        catcher.server.stop()


def test_same_origin_form_still_logs_in() -> None:
    async def inbox(req: Request) -> Reply:
        ok = req.form().get("pass") == PASSWORD
        return page("<html><body><h1>Inbox</h1></body></html>" if ok else "<p>no</p>")

    srv = WebServer({"/": login_page("/login"), "/login": inbox}).start()
    try:
        m = load(login_target(srv.base + "/"), FAST)
        assert m.tags["outcome"] == "ok", m.fields["error"]
        assert m.fields["login_status"] == 200
    finally:
        srv.stop()


def test_browser_engine_refuses_a_cross_origin_form_too() -> None:
    from tests.localstack.packages import ensure_packages

    ensure_packages({"chromium": "chromium"})
    catcher = Catcher()
    other = f"http://localhost:{catcher.server.port}/login"
    srv = WebServer({"/": login_page(other)}).start()
    try:
        m = load(login_target(srv.base + "/", engine="browser"), FAST)
        assert m.tags["outcome"] == "fail"
        assert "not to the configured origin" in str(m.fields["error"])
        assert catcher.requests == []
    finally:
        srv.stop()
        catcher.server.stop()
