"""What the loader fetches for a page from its HTML: a desktop Chromium's list before the
load event, not every reference."""

from __future__ import annotations

from prober.probes.webmail_discover import PageScanner, pick_srcset

BASE = "https://mail.example.com/app/index.html"
M = "https://mail.example.com"


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
    found, s = scan("""<html><head>
      <link rel="stylesheet" href="css/main.css"><link rel="alternate stylesheet" href="alt.css">
      <link rel=stylesheet href="print.css" media=print>
      <link rel="icon" href="/favicon.ico"><link rel=preload href="/f.woff2" as=font>
      <link rel="canonical" href="/x"><script src="js/app.js"></script>
      <script nomodule src="/legacy.js"></script>
      <script>var s = "<img src='/not-fetched.png'>";</script>
      <style>body { background: url('/bg.png') }</style></head>
      <body><img srcset="/a-1x.png 1x, /a-2x.png 2x"><img src="data:image/png;base64,AA">
      <img src="/logo.png" srcset="/logo-2x.png 2x"><div style="background:url(/d.png)"></div>
      <img src="/below.png" loading="lazy"><iframe src="/frame.html"></iframe>
      <iframe src="/later.html" loading=lazy></iframe>
      <input type="image" src="/go.png"><a href="/next.html">next</a></body></html>""")
    # no favicon (a browser asks for it after the load event), no print or alternate
    # stylesheet, no nomodule script, no lazy frame; lazy images and style wait for the
    # style pass
    assert found == [
        (f"{M}/app/css/main.css", "stylesheet"),
        (f"{M}/f.woff2", "preload"),
        (f"{M}/app/js/app.js", "script"),
        (f"{M}/a-1x.png", "image"),
        (f"{M}/logo.png", "image"),
        (f"{M}/go.png", "image"),
    ]
    # the frame: inserted by the parser once past app.js (blocking), never preloaded;
    # a frame before any blocking script is asked for at once
    assert s.frames == [f"{M}/frame.html"]
    early, s2 = scan('<iframe src="/f.html"></iframe><script src="/x.js"></script>')
    assert early == [(f"{M}/f.html", "document"), (f"{M}/x.js", "script")] and not s2.frames
    assert s.styles == [("link", f"{M}/app/css/main.css"),
                        ("style", "body { background: url('/bg.png') }")]
    assert [(el.tag, css) for el, css in s.inline] == [("div", "background:url(/d.png)")]
    assert s.lazy == [f"{M}/below.png"]  # asked for after layout, with the style pass
    body = s.root.find("body")
    assert body is not None and [c.tag for c in body][:3] == ["img", "img", "img"]


def test_picture_and_srcset_as_a_desktop_browser_chooses() -> None:
    found, _ = scan("""<picture><source srcset="/p.jxl" type="image/jxl">
      <source srcset="/p-small.webp" media="(max-width: 600px)" type="image/webp">
      <source srcset="/p-480.webp 480w, /p-1600.webp 1600w" type="image/webp">
      <img src="/p.jpg"></picture>
      <picture><source srcset="/q.avif" type="image/avif" media="print"><img src="/q.jpg">
      </picture>
      <img srcset="/w-480.png 480w, /w-1280.png 1280w, /w-1920.png 1920w"
           sizes="(max-width: 600px) 480px, 50vw" src="/w.png">""")
    assert [u for u, _ in found] == [f"{M}/p-1600.webp", f"{M}/q.jpg", f"{M}/w-1280.png"]


def test_srcset_picks() -> None:
    assert pick_srcset("/a.png 2x, /b.png 1x") == "/b.png"
    assert pick_srcset("/a.png 2x", src="/s.png") == "/s.png"
    assert pick_srcset("/a.png 1.5x, /b.png 3x") == "/a.png"
    assert pick_srcset("/s.png 400w, /m.png 800w, /l.png 1600w") == "/l.png"  # 100vw = 1280
    assert pick_srcset("/s.png 400w, /m.png 800w", "300px") == "/s.png"
    assert pick_srcset("/s.png 400w, /m.png 800w", "2000px") == "/m.png"  # the largest


def test_base_href_changes_resolution() -> None:
    found, _ = scan('<base href="https://cdn.example.net/v2/"><script src="a.js"></script>')
    assert found == [("https://cdn.example.net/v2/a.js", "script")]


def test_the_tree_closes_what_html_closes_implicitly() -> None:
    _, s = scan("<body><p>one<p>two<div>three</div><ul><li>a<li>b</ul><br>tail</body>")
    body = s.root.find("body")
    assert body is not None
    assert [c.tag for c in body] == ["p", "p", "div", "ul", "br"]
    ul = body.find("ul")
    assert ul is not None and [li.text for li in ul] == ["a", "b"]
    assert body[4].tail == "tail"


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


def test_scripts_that_stop_the_parser() -> None:
    _, s = scan("""<html><head><script src="a.js"></script><script async src="b.js">
      </script><script defer src="c.js"></script><script type=module src="d.js"></script>
      <script src="/e.js" type="text/javascript"></script></head><body></body></html>""")
    assert s.blocking == {f"{M}/app/a.js", f"{M}/e.js"}
