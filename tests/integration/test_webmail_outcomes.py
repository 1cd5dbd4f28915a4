"""Each way a webmail can misbehave ends as a clear outcome with its reason, within the
configured timeout; the login flow reaches the inbox and times it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from prober.commands.webmail_check import CRITICAL, OK, check_webmail
from prober.config.profiles import resolve_profile
from prober.config.reader import Section
from prober.config.webmail import WebmailLimits, WebmailTarget, parse_webmail
from prober.contract import Contract
from prober.measurement import Measurement
from prober.probes.webmail import judged_seconds
from tests.localstack.ports import free_port
from tests.webmail_helpers import load
from tests.webserver import Reply, Request, WebServer, make_cert, page, server_tls_context

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55!"
LOGIN_FORM = """<html><head><link rel=stylesheet href="/style.css"></head><body>
<form method="post" action="/login">
  <input type="hidden" name="csrf" value="tok-123">
  <input type="text" name="login_user">
  <input type="password" name="login_pass">
  <input type="checkbox" name="remember" value="1">
  <input type="submit" value="Sign in">
</form></body></html>"""
INBOX = """<html><head><link rel=stylesheet href="/style.css"><link rel=stylesheet
href="/inbox.css"></head><body><h1>Inbox</h1><div class=m>a message</div>
<img src="/avatar.png"></body></html>"""


async def login_post(req: Request) -> Reply:
    form = req.form()
    good = (form.get("login_user") == "alice" and form.get("login_pass") == PASSWORD
            and form.get("csrf") == "tok-123" and "remember" not in form)
    if not good:
        return page(LOGIN_FORM.replace("<form", "<p>Wrong password</p><form"))
    return Reply(303, b"", {"Location": "/inbox", "Set-Cookie": "session=ok; Path=/"})


async def inbox(req: Request) -> Reply:
    if "session=ok" not in req.headers.get("cookie", ""):
        return Reply(302, b"", {"Location": "/"})
    return page(INBOX)


async def endless() -> AsyncIterator[bytes]:
    yield b"<html><body>"
    while True:
        yield b"<p>still coming</p>" * 10
        await asyncio.sleep(0.01)


def routes() -> dict[str, object]:
    return {
        "/": page(LOGIN_FORM),
        "/login": login_post,
        "/inbox": inbox,
        "/style.css": Reply(200, b"body{background:url(/bg.png)}",
                            {"Content-Type": "text/css", "Cache-Control": "max-age=600"}),
        "/inbox.css": page(".m{background:url(/row.png)}", "text/css"),
        "/bg.png": page(b"b" * 3000, "image/png"),
        "/row.png": page(b"r" * 3000, "image/png"),
        "/avatar.png": page(b"a" * 2000, "image/png"),
        "/hang": Reply(200, b"late", {"Content-Type": "text/html"}, delay_s=3600),
        "/loop1": Reply(302, b"", {"Location": "/loop2"}),
        "/loop2": Reply(302, b"", {"Location": "/loop1"}),
        "/error": page("<h1>down for maintenance</h1>", status=503),
        "/endless": Reply(200, headers={"Content-Type": "text/html"}, stream=endless),
        "/broken": page('<html><link rel=stylesheet href="/missing.css"><img src="/ok.png">'
                        "</html>"),
        "/ok.png": page(b"o" * 500, "image/png"),
        "/big": page("<html>" + "x" * 50_000 + "</html>"),
        "/gz": page("<html><body>" + "compressible " * 5000 + "</body></html>",
                    compress=True),
    }


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    srv = WebServer(routes()).start()
    yield srv
    srv.stop()


FAST = resolve_profile("fios")


def run(url: str, timeout_s: float = 3.0, **kw: object) -> Measurement:
    target = WebmailTarget("t", url, timeout_s=timeout_s, **kw)  # type: ignore[arg-type]
    return load(target, FAST)


def test_hung_server_times_out_waiting_for_headers(server: WebServer) -> None:
    started = time.monotonic()
    m = run(server.base + "/hang", timeout_s=1.0)
    assert time.monotonic() - started < 2.0
    assert m.tags["outcome"] == "timeout"
    assert "timed out after 1 s while waiting for the response headers" in m.fields["error"]  # type: ignore[operator]
    assert m.fields["load_s"] is None and m.fields["ttfb_s"] is None
    assert judged_seconds(m) == 1.0  # counts at its timeout in the contract's mean
    assert m.fields["error_class"] == "timeout"


def test_redirect_loop_is_a_failure_naming_the_loop(server: WebServer) -> None:
    m = run(server.base + "/loop1", limits=WebmailLimits(max_redirects=5))
    assert m.tags["outcome"] == "fail"
    error = str(m.fields["error"])
    assert error.startswith("redirect loop (more than limits.max_redirects = 5)")
    assert "/loop1 -> " in error and "/loop2" in error
    assert m.fields["requests"] == 6
    assert m.fields["error_class"] == "protocol"


def test_server_error_is_an_http_error_with_its_status(server: WebServer) -> None:
    m = run(server.base + "/error")
    assert m.tags["outcome"] == "http_error"
    assert m.fields["status"] == 503
    assert "HTTP 503 Service Unavailable" in str(m.fields["error"])
    assert m.fields["error_class"] == "http"
    assert m.fields["ttfb_s"] is not None


def test_html_that_never_ends_times_out_while_receiving_it(server: WebServer) -> None:
    m = run(server.base + "/endless", timeout_s=1.0)
    assert m.tags["outcome"] == "timeout"
    error = str(m.fields["error"])
    assert "while receiving the page HTML of" in error and "bytes so far" in error
    assert m.fields["ttfb_s"] is not None and m.fields["html_s"] is None


def test_oversized_page_is_cut_off(server: WebServer) -> None:
    m = run(server.base + "/big", limits=WebmailLimits(max_page_bytes=10_000))
    assert m.tags["outcome"] == "fail"
    assert "larger than limits.max_page_bytes (10000)" in str(m.fields["error"])


def test_refused_connection_fails_with_the_reason() -> None:
    m = run(f"http://127.0.0.1:{free_port()}/")
    assert m.tags["outcome"] == "fail"
    assert "refused" in str(m.fields["error"]).lower()
    assert m.fields["error_class"] == "refused"
    assert m.fields["status"] is None


def test_missing_sub_resource_is_counted_not_fatal(server: WebServer) -> None:
    m = run(server.base + "/broken")
    assert m.tags["outcome"] == "ok"
    assert m.fields["requests"] == 3 and m.fields["failed_requests"] == 1
    assert "missing.css: HTTP 404" in str(m.fields["failed_detail"])


def test_bytes_are_counted_compressed_as_on_the_wire(server: WebServer) -> None:
    m = run(server.base + "/gz")
    assert m.tags["outcome"] == "ok"
    assert 0 < m.fields["bytes"] < 5000  # type: ignore[operator]  # 65 KB of HTML, gzipped


def test_untrusted_certificate_fails(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    srv = WebServer({"/": page("<p>hi</p>")}, tls=server_tls_context(cert, key)).start()
    try:
        m = run(srv.base + "/")
        assert m.tags["outcome"] == "fail"
        assert "certificate verify failed" in str(m.fields["error"])
        assert m.fields["error_class"] == "tls"
        trusted = run(srv.base + "/", ca_file=str(cert))
        assert trusted.tags["outcome"] == "ok", trusted.fields["error"]
    finally:
        srv.stop()


def login_target(base: str, password_env: str, **login: str) -> WebmailTarget:
    data = {"webmail": [{"name": "mail", "url": base + "/", "profiles": ["cable"],
                         "timeout_s": 5,
                         "login": {"user": "alice", "password_env": password_env, **login}}]}
    (target,) = parse_webmail(Section(data, "probes.toml"))
    return target


def test_login_reaches_the_inbox_and_times_it(server: WebServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBMAIL_PW", PASSWORD)
    target = login_target(server.base, "WEBMAIL_PW", expect_text="Inbox")
    server.clear_log()
    m = load(target, target.profiles[0])
    f = m.fields
    assert m.tags == {"vantage": "test", "target": "mail", "profile": "cable", "outcome": "ok"}
    assert f["login_status"] == 200
    paths = [e.path for e in server.entries()]
    assert paths.count("/inbox") == 1 and "/login" in paths
    # The inbox's own sub-resources were loaded; the shared stylesheet only once.
    assert "/inbox.css" in paths and "/row.png" in paths and "/avatar.png" in paths
    assert paths.count("/style.css") == 1
    # POST, the redirect to the inbox, then its stylesheet and image: 3 turnarounds at least.
    rtt = target.profiles[0].rtt_s
    assert 3 * rtt <= f["login_s"] < 1.0  # type: ignore[operator]
    assert f["load_s"] is not None and f["load_s"] >= 2 * rtt  # type: ignore[operator]
    assert judged_seconds(m) == max(f["load_s"], f["login_s"])  # type: ignore[type-var]
    # the score reads open_s: the same figure `prober check` judges
    assert f["open_s"] == judged_seconds(m)
    assert f.get("error_class") is None
    assert PASSWORD not in m.to_line()


def test_wrong_password_is_a_failed_login(server: WebServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBMAIL_PW", "not-it")
    target = login_target(server.base, "WEBMAIL_PW")
    m = load(target, target.profiles[0])
    assert m.tags["outcome"] == "fail"
    assert "still asks for a password" in str(m.fields["error"])
    assert m.fields["error_class"] == "auth"
    assert m.fields["load_s"] is not None and m.fields["login_s"] is None
    assert m.fields.get("open_s") is None  # a failed load counts at its timeout, not here
    assert "not-it" not in m.to_line()


def test_check_rows_per_target_and_profile(server: WebServer) -> None:
    good = WebmailTarget("good", server.base + "/broken",
                         profiles=(resolve_profile("fios"), resolve_profile("cable")))
    down = WebmailTarget("down", server.base + "/error", profiles=(resolve_profile("fios"),))
    rows = asyncio.run(check_webmail([good, down], "test", Contract()))
    assert [(r.target, r.state) for r in rows] == [
        ("good/fios", OK), ("good/cable", OK), ("down/fios", CRITICAL)]
    assert rows[1].values["threshold_s"] == 10.0 and rows[1].values["open_s"] > 0  # type: ignore[operator]
    assert "1 failed" in rows[0].detail
    assert rows[2].detail.startswith("http_error: HTTP 503")
    assert rows[2].measurement is not None and rows[2].measurement.tags["outcome"] == "http_error"


_NO_FD_LEFT = """
import asyncio, json, os, resource, sys
from prober.config.profiles import resolve_profile
from prober.config.webmail import WebmailTarget
from tests.webmail_helpers import load_async

async def main() -> None:
    target = WebmailTarget("t", sys.argv[1], timeout_s=3.0)
    # a first load imports what a connection needs and caches the TLS context, so what
    # runs out below is only the descriptors
    first = await load_async(target, resolve_profile("fios"))
    assert first.tags["outcome"] == "ok", first.fields
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    m = await load_async(target, resolve_profile("fios"))
    for fd in held:
        os.close(fd)
    print(json.dumps({"outcome": m.tags["outcome"], **m.fields}))

asyncio.run(main())
"""


def test_no_descriptor_left_is_the_probers_failure(server: WebServer) -> None:
    """The probe host out of file descriptors (EMFILE) cannot open the connection: the
    prober's own failure, not the provider's refusal. In a child process, so the test's
    own descriptors stay free."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _NO_FD_LEFT, server.base + "/"],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    f = json.loads(done.stdout)
    print(f["outcome"], f["error_class"], f["error"])
    assert f["outcome"] == "fail"
    assert "Too many open files" in f["error"] or "Errno 24" in f["error"]
    assert f["error_class"] == "prober"


def test_a_page_over_our_byte_budget_is_the_providers(server: WebServer) -> None:
    # the provider sent more than the limit allows: its failure (a protocol class), charged
    m = run(server.base + "/big", limits=WebmailLimits(max_page_bytes=10_000))
    assert m.fields["error_class"] == "protocol"
    m = run(server.base + "/gz", limits=WebmailLimits(max_total_bytes=20_000))
    print(m.fields["error"])
    assert m.tags["outcome"] == "fail" and m.fields["error_class"] == "protocol"
