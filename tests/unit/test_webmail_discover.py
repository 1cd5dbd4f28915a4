"""What the loader fetches for a page: a browser's list, not every reference."""

from __future__ import annotations

from prober.probes.webmail_discover import PageScanner, css_resources

BASE = "https://mail.example.com/app/index.html"


def scan(html: str, chunk: int = 7) -> tuple[list[tuple[str, str]], PageScanner]:
    s = PageScanner(BASE)
    found = []
    for i in range(0, len(html), chunk):  # fed in pieces, as it arrives
        s.feed(html[i:i + chunk])
        found += [(r.url, r.kind) for r in s.take()]
    s.close()
    found += [(r.url, r.kind) for r in s.take()]
    return found, s


def test_html_sub_resources() -> None:
    found, _ = scan("""<html><head>
      <link rel="stylesheet" href="css/main.css"><link rel="alternate stylesheet" href="alt.css">
      <link rel="icon" href="/favicon.ico"><link rel=preload href="/f.woff2" as=font>
      <link rel="canonical" href="/x"><script src="js/app.js"></script>
      <script>var s = "<img src='/not-fetched.png'>";</script>
      <style>body { background: url('/bg.png') }</style></head>
      <body><img srcset="/a-1x.png 1x, /a-2x.png 2x"><img src="data:image/png;base64,AA">
      <img src="/logo.png" srcset="/logo-2x.png 2x"><div style="background:url(/d.png)"></div>
      <input type="image" src="/go.png"><a href="/next.html">next</a></body></html>""")
    assert found == [
        ("https://mail.example.com/app/css/main.css", "stylesheet"),
        ("https://mail.example.com/favicon.ico", "icon"),
        ("https://mail.example.com/f.woff2", "preload"),
        ("https://mail.example.com/app/js/app.js", "script"),
        ("https://mail.example.com/bg.png", "image"),
        ("https://mail.example.com/a-1x.png", "image"),
        ("https://mail.example.com/logo.png", "image"),
        ("https://mail.example.com/d.png", "image"),
        ("https://mail.example.com/go.png", "image"),
    ]


def test_base_href_changes_resolution() -> None:
    found, _ = scan('<base href="https://cdn.example.net/v2/"><script src="a.js"></script>')
    assert found == [("https://cdn.example.net/v2/a.js", "script")]


def test_css_imports_first_font_face_first_src_only_and_comments_ignored() -> None:
    css = """@import "reset.css"; @import url(theme.css) screen;
    /* .old { background: url(old.png) } */
    @font-face { font-family: Inter; src: url(fonts/inter.woff2) format("woff2"),
                 url(fonts/inter.woff) format("woff"); }
    .a { background: url("img/a.png") } .b { background-image: url(data:image/gif;base64,R0) }
    """
    found = [(r.url, r.kind) for r in css_resources(css, "https://m.example/css/main.css")]
    assert found == [
        ("https://m.example/css/reset.css", "stylesheet"),
        ("https://m.example/css/theme.css", "stylesheet"),
        ("https://m.example/css/fonts/inter.woff2", "font"),
        ("https://m.example/css/img/a.png", "image"),
    ]


def test_login_form_fields() -> None:
    _, s = scan("""<form action="/session" method=post><input type=hidden name=csrf value=t1>
      <input name=user><input type=password name=pw><input type=checkbox name=keep value=1>
      <input type=checkbox name=tz value=utc checked><input type=submit name=go value=Go>
      </form><form action="/search"><input name=q></form><p>Sign in</p>""")
    form = s.login_form()
    assert form is not None
    assert (form.action, form.method) == ("https://mail.example.com/session", "POST")
    assert form.fields == [("csrf", "hidden", "t1"), ("user", "text", ""),
                           ("pw", "password", ""), ("tz", "checkbox", "utc")]
    assert "Sign in" in s.text
