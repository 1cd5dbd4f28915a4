"""The style pass: what matched rules and rendered text make a browser fetch."""

from __future__ import annotations

from prober.probes.webmail_css import (
    Wanted,
    compute,
    media_applies,
    parse_declarations,
    parse_stylesheet,
)
from prober.probes.webmail_discover import PageScanner

BASE = "https://m.example/mail/"
CSS_URL = "https://m.example/css/main.css"


def styled(html: str, css: str) -> Wanted:
    scanner = PageScanner(BASE)
    scanner.feed(html)
    scanner.close()
    sheets = [parse_stylesheet(css, CSS_URL)]
    sheets += [parse_stylesheet(text, BASE) for kind, text in scanner.styles if kind == "style"]
    inline = {id(el): parse_declarations(text, BASE) for el, text in scanner.inline}
    return compute(scanner.root, sheets, inline)


def names(urls: list[str]) -> list[str]:
    return [u.rsplit("/", 1)[1] for u in urls]


def test_images_only_of_rules_that_match_a_rendered_element() -> None:
    w = styled("""<body><div class=used></div><a href="/x">x</a><div class="a b"></div>
      <div class=hide><span class=icon></span></div><p hidden class=icon></p>
      <div style="background-image:url(/inline.png)"></div><ul><li>item</li></ul></body>""",
               """.used{background:url(used.png)} .unused{background:url(unused.png)}
      a:hover{background:url(hover.png)} .a{background:url(loser.png)}
      .a.b{background-image:url(winner.png)} .hide{display:none}
      .icon{background:url(hidden.png)} li{list-style:square url(bullet.png)}
      .nope::before{background:url(no-content.png)}""")
    assert names(w.images) == ["used.png", "winner.png", "inline.png", "bullet.png"]
    assert w.fonts == []
    assert w.images[0] == "https://m.example/css/used.png"  # relative to the stylesheet


def test_fonts_only_for_rendered_text_by_family_weight_style_and_range() -> None:
    faces = "".join(
        f"@font-face{{font-family:'Roboto';font-weight:{w};font-style:{s};"
        f"src:url(r-{w}-{s}-{sub}.eot) format('embedded-opentype'),"
        f"url(r-{w}-{s}-{sub}.woff2) format('woff2');unicode-range:{rng}}}"
        for w in (400, 700) for s in ("normal", "italic")
        for sub, rng in (("latin", "U+0000-00FF"), ("cyrillic", "U+0400-045F")))
    w = styled("""<body><p>Hello <b>bold</b></p><h1>Title</h1><div class=gone>Привет</div>
      <i class=fa-check></i><i class=fa-unused2></i></body>""",
               faces + """body{font-family:Roboto,sans-serif} h1{font-family:serif,Roboto}
      .gone{display:none} @font-face{font-family:Unused;src:url(unused.woff2)}
      @font-face{font-family:FA;src:url(fa.woff2) format("woff2")}
      .fa-check::before{content:"\\f00c";font-family:FA} .fa-unused::before{content:"x"}""")
    # 400 and bold 700 upright, latin only (no Cyrillic is rendered); not italic; the h1 is
    # a system serif; the icon font for the ::before that exists
    assert names(w.fonts) == ["r-400-normal-latin.woff2", "r-700-normal-latin.woff2",
                              "fa.woff2"]


def test_nearest_weight_when_the_exact_one_is_missing() -> None:
    w = styled("<body><p>text</p><h2>head</h2></body>",
               "@font-face{font-family:F;font-weight:300;src:url(f300.woff2)}"
               "@font-face{font-family:F;font-weight:800;src:url(f800.woff2)}"
               "p{font:16px/1.4 F, sans-serif} h2{font-family:F;font-weight:600}")
    # 400 wanted: lighter first (300); 600 wanted: heavier first (800)
    assert names(w.fonts) == ["f300.woff2", "f800.woff2"]


def test_media_and_imports() -> None:
    assert media_applies("screen and (min-width: 1024px)")
    assert not media_applies("(max-width: 600px)")
    assert not media_applies("print")
    assert media_applies("print, (min-width: 40em)")
    sheet = parse_stylesheet("""@import "base.css"; @import url(print.css) print;
      .a{} @import "late.css";
      @media print{.p{background:url(p.png)}} @media (min-width:900px){.d{background:url(d.png)}}
      @supports (display:grid){.g{background:url(g.png)}}""", CSS_URL)
    assert sheet.imports == ["https://m.example/css/base.css"]  # print.css: not a screen;
    # late.css: an @import after a rule is ignored, as browsers do
    w = compute(_root("<body><i class=p></i><i class=d></i><i class=g></i></body>"),
                [sheet], {})
    assert names(w.images) == ["d.png", "g.png"]


def _root(html: str):  # type: ignore[no-untyped-def]
    s = PageScanner(BASE)
    s.feed(html)
    s.close()
    return s.root
