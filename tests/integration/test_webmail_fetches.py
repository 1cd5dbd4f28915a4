"""The httpx engine fetches what a browser fetches before the load event: matched rules'
images, the fonts the text uses, iframes; not the favicon, unused fonts or lazy images;
plus the configured extra requests that stand for what scripts fetch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prober.config.profiles import resolve_profile
from prober.config.reader import Secret
from prober.config.webmail import ExtraRequest, LoginSettings, WebmailTarget
from tests.webmail_helpers import load
from tests.webserver import Reply, Request, WebServer, page

pytestmark = pytest.mark.integration

PAGE = """<html><head><link rel=icon href=/favicon.ico><link rel=stylesheet href=/s.css>
<script src=/app.js></script></head><body class=login><p>Sign in</p>
<form method=post action=/login><input type=text name=user><input type=password name=pw>
</form><img src=/below.png loading=lazy><iframe src=/frame.html></iframe></body></html>"""
CSS = """@font-face{font-family:Sans;src:url(/sans.woff2) format('woff2')}
@font-face{font-family:Sans;font-weight:700;src:url(/sans-bold.woff2) format('woff2')}
@font-face{font-family:Icons;src:url(/icons.woff2) format('woff2')}
body{font-family:Sans,sans-serif} .login{background:url(/bg.png)}
.messagelist{background:url(/rows.png)} .dialog{display:none}
.dialog .icon::before{content:"x";font-family:Icons}"""
FRAME = "<html><body><img src=/in-frame.png></body></html>"
INBOX = """<html><head><link rel=stylesheet href=/s.css><script src=/app.js></script></head><body>
<table class=messagelist><tr><td>a message</td></tr></table></body></html>"""


async def login_post(req: Request) -> Reply:
    return Reply(303, b"", {"Location": "/inbox"})


@pytest.fixture(scope="module")
def server() -> Iterator[WebServer]:
    routes: dict[str, object] = {
        "/": page(PAGE), "/frame.html": page(FRAME),
        "/s.css": Reply(200, CSS.encode(), {"Content-Type": "text/css",
                                            "Last-Modified": "Mon, 02 Nov 2026 10:00:00 GMT"}),
        "/login": login_post, "/inbox": page(INBOX),
        "/api/list": page('{"messages": []}', "application/json"),
        "/api/unread": page('{"unread": 0}', "application/json"),
    }
    # the script comes late: what waits for it shows
    routes["/app.js"] = Reply(200, b"x" * 500, {"Content-Type": "text/javascript"}, delay_s=0.3)
    for name in ("favicon.ico", "below.png", "sans.woff2", "sans-bold.woff2",
                 "icons.woff2", "bg.png", "rows.png", "in-frame.png"):
        routes[f"/{name}"] = page(b"x" * 500, "application/octet-stream")
    srv = WebServer(routes).start()  # type: ignore[arg-type]
    yield srv
    srv.stop()


def test_a_browsers_list_before_the_load_event(server: WebServer) -> None:
    server.clear_log()
    m = load(WebmailTarget("mail", server.base + "/", timeout_s=10), resolve_profile("fios"))
    assert m.tags["outcome"] == "ok", m.fields["error"]
    paths = sorted(e.path for e in server.entries())
    # the body's font and background; the frame and its image; the lazy image (on a
    # page this short, within Chromium's distance of the viewport); not the favicon, the
    # bold face (no bold text), the icon font of a hidden dialog or the rows of a message
    # list that is not on this page
    assert paths == ["/", "/app.js", "/below.png", "/bg.png", "/frame.html", "/in-frame.png",
                     "/s.css", "/sans.woff2"]
    assert m.fields["requests"] == 8 and m.fields["failed_requests"] == 0
    # as Chromium, the body's images and fonts, and its frame (which no preload scanner
    # asks for), only once the parser is past the blocking script in the head: asked for
    # after the script's response
    log = {e.path: e for e in server.entries()}
    for path in ("/bg.png", "/sans.woff2", "/below.png", "/frame.html"):
        assert log[path].received_at >= log["/app.js"].at, path


def test_the_inbox_styles_and_the_extra_requests(server: WebServer) -> None:
    target = WebmailTarget(
        "mail", server.base + "/", timeout_s=10,
        login=LoginSettings(user="alice", password=Secret("test", "pw"),
                            expect_text="a message"),
        extra_requests=(ExtraRequest("/api/unread", "page"),
                        ExtraRequest(server.base + "/api/list", "login")))
    server.clear_log()
    m = load(target, resolve_profile("fios"))
    assert m.tags["outcome"] == "ok", m.fields["error"]
    paths = [e.path for e in server.entries()]
    # the inbox's own matching rule; the stylesheet is not fetched again (fresh by
    # Last-Modified's heuristic), the script is (served without a validator: a browser
    # cannot take it from its cache); each extra request once, in its phase, after that
    # page's scripts
    assert "/rows.png" in paths and paths.count("/s.css") == 1
    assert paths.count("/app.js") == 2
    assert paths.count("/api/unread") == 1 and paths.count("/api/list") == 1
    assert paths.index("/api/unread") < paths.index("/login") < paths.index("/api/list")
    assert paths.index("/app.js") < paths.index("/api/unread")
    assert len(paths) - 1 - paths[::-1].index("/app.js") < paths.index("/api/list")
