"""A small webmail-like page set for the demo: a sign-in page, a login form, an inbox.

About 20 KB with its style sheets, script and images, so a load on the narrowband profile
(49 kbit/s down) takes a few seconds and one on broadband well under one, as a light real
webmail's first visit would. Served by tests/webserver.py on loopback.
"""

from __future__ import annotations

import hashlib

from tests.webserver import Reply, Request, WebServer, page

USER = "alice@example.test"
PASSWORD_ENV = "PROBER_DEMO_WEBMAIL_PASSWORD"

SIGN_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Example Mail - sign in</title>
<link rel="stylesheet" href="/static/base.css"><link rel="icon" href="/static/logo.svg">
<script src="/static/app.js" defer></script></head>
<body><header><img src="/static/logo.svg" alt="Example Mail" width="120"></header>
<main><h1>Sign in to Example Mail</h1>
<form method="post" action="/login">
  <input type="hidden" name="csrf" value="demo-token">
  <label>Address <input type="email" name="user" autocomplete="username"></label>
  <label>Password <input type="password" name="password" autocomplete="current-password">
  </label><button type="submit">Sign in</button>
</form>
<p class="note">{note}</p></main>
<footer><img src="/static/badge.png" alt="" width="80"></footer></body></html>"""

INBOX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Inbox - Example Mail</title>
<link rel="stylesheet" href="/static/base.css"><link rel="stylesheet" href="/static/inbox.css">
<script src="/static/app.js" defer></script></head>
<body><header><img src="/static/logo.svg" alt="Example Mail" width="120"></header>
<main><h1>Inbox</h1><table class="messages">{rows}</table></main></body></html>"""

ROW = ("<tr><td class=from>sender-{i}@example.test</td><td class=subject>Message number {i}"
       "</td><td class=date>09:{i:02d}</td></tr>")


def _filler(kind: str, size: int) -> bytes:
    """Deterministic bytes that do not compress: a stand-in for images and code."""
    out = bytearray()
    block = kind.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out.extend(block)
    return bytes(out[:size])


def routes(password: str) -> dict[str, object]:
    """The page set; `password` is the demo account's (the daemon reads it from the env)."""

    async def login(req: Request) -> Reply:
        form = req.form()
        if form.get("user") == USER and form.get("password") == password:
            return Reply(303, b"", {"Location": "/inbox", "Set-Cookie": "session=demo; Path=/"})
        return page(SIGN_IN.format(note="Wrong address or password."))

    async def inbox(req: Request) -> Reply:
        if "session=demo" not in req.headers.get("cookie", ""):
            return Reply(302, b"", {"Location": "/"})
        return page(INBOX.format(rows="".join(ROW.format(i=i) for i in range(1, 26))))

    css = ("body{font-family:sans-serif;margin:0}header{background:#24476b;padding:8px}"
           "main{max-width:40em;margin:2em auto}label{display:block;margin:.5em 0}"
           "main{background:url(/static/texture.png)}\n" + "/* layout */\n" * 60)
    return {
        "/": page(SIGN_IN.format(note="")),
        "/login": login,
        "/inbox": inbox,
        "/static/base.css": page(css, "text/css"),
        "/static/inbox.css": page("table.messages{width:100%}td{padding:2px 6px}\n" * 20,
                                  "text/css"),
        "/static/app.js": page(b"/* app */\n" + _filler("js", 6000), "text/javascript"),
        "/static/logo.svg": page('<svg xmlns="http://www.w3.org/2000/svg" width="120" '
                                 'height="24"><text y="18" fill="white">Example Mail</text>'
                                 "</svg>", "image/svg+xml"),
        "/static/badge.png": page(_filler("badge", 3000), "image/png"),
        "/static/texture.png": page(_filler("texture", 4000), "image/png"),
    }


def start(password: str) -> WebServer:
    """The page set on a free 127.0.0.1 port, plain HTTP (loopback only)."""
    return WebServer(routes(password)).start()
