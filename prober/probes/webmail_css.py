"""What a page's styles make a browser fetch before the load event: the images of rules that
match an element, and the web fonts the rendered text uses.

Stylesheets are parsed with tinycss2 and their selectors matched against the document
with cssselect2 (the CSS parser and selector engine WeasyPrint is built on). The cascade
is applied per element (and per ::before/::after) for the properties that fetch:
`background(-image)`, `list-style(-image)`, `border-image(-source)`, `content`, and the
font properties, which are inherited. What a desktop Chromium does, as far as a document
without layout allows:
- an image is fetched for the winning value of a property on an element that is rendered
  (no `display: none` on it or an ancestor, no `hidden` attribute; pseudo-elements only
  when their `content` makes them exist); rules behind `:hover` and the like match nothing;
- a web font is fetched when rendered text uses it: the first family of the element's
  `font-family` that is an `@font-face` family (a generic family or `system-ui` stops the
  search), the face chosen by style then the nearest weight (CSS Fonts 4 matching), and
  only faces whose `unicode-range` covers a character of that text; its first `src` in a
  format Chromium takes (woff2, woff, truetype, opentype);
- `@media` is evaluated for a 1280 x 720 screen (print, and width/height outside, do not
  apply); `@supports` is taken as supported.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import cssselect2
import tinycss2
from tinycss2 import ast

VIEWPORT = (1280, 720)
FETCHABLE_SCHEMES = ("http", "https")
_IMAGE_PROPS = {
    "background": "background-image", "background-image": "background-image",
    "list-style": "list-style-image", "list-style-image": "list-style-image",
    "border-image": "border-image-source", "border-image-source": "border-image-source",
    "content": "content",
}
_FONT_PROPS = ("font-family", "font-weight", "font-style")
_GENERIC = {"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui", "math",
            "emoji", "fangsong", "ui-serif", "ui-sans-serif", "ui-monospace", "ui-rounded"}
_FORMATS_TAKEN = {"woff2", "woff", "truetype", "opentype", "woff2-variations",
                  "woff-variations", "truetype-variations", "opentype-variations"}
_NOT_RENDERED = {"head", "script", "style", "title", "template", "noscript", "meta", "link",
                 "base"}
_WEIGHTS = {"normal": 400, "bold": 700, "lighter": 100, "bolder": 700}
# The browser's own stylesheet, as far as fonts go.
_UA_BOLD = {"b", "strong", "th", "h1", "h2", "h3", "h4", "h5", "h6", "optgroup"}
_UA_ITALIC = {"i", "em", "cite", "var", "dfn", "address"}


def absolute(base: str, ref: str) -> str | None:
    ref = ref.strip()
    if not ref or ref.startswith(("data:", "#", "javascript:", "about:", "blob:")):
        return None
    url = urljoin(base, ref).split("#", 1)[0]
    return url if urlsplit(url).scheme in FETCHABLE_SCHEMES else None


# -- stylesheets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FontFace:
    family: str  # lower-case
    url: str | None  # the first src Chromium would take
    style: str  # normal | italic | oblique
    weight: tuple[int, int]  # a range: (400, 400) for one weight
    ranges: tuple[tuple[int, int], ...]  # unicode-range; all of Unicode when not given

    def covers(self, chars: Iterable[int]) -> bool:
        return any(lo <= c <= hi for c in chars for lo, hi in self.ranges)


@dataclass
class Rule:
    declarations: dict[str, tuple[str, bool]]  # property -> (value text, !important)
    base: str  # the stylesheet's URL: relative url()s resolve against it


@dataclass
class StyleSheet:
    url: str
    imports: list[str] = field(default_factory=list)
    # (compiled selectors, rule) of the rules with a declaration that fetches or hides:
    # compiled when the sheet arrives and once per load however many pages of the visit
    # use it (compiling every selector at each style pass was ~0.5 s of CPU on the
    # critical path for Roundcube's two big sheets)
    rules: list[tuple[list[Any], Rule]] = field(default_factory=list)
    faces: list[FontFace] = field(default_factory=list)


def parse_stylesheet(css: str, url: str) -> StyleSheet:
    sheet = StyleSheet(url)
    _walk(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True), sheet,
          top=True)
    return sheet


def parse_declarations(css: str, base: str) -> Rule:
    return Rule(_declarations(css), base)


def _walk(nodes: Iterable[ast.Node], sheet: StyleSheet, top: bool) -> None:
    for node in nodes:
        if isinstance(node, ast.QualifiedRule):
            top = False  # an @import after a rule is ignored
            declarations = _declarations(node.content)
            if not declarations:
                continue  # nothing that fetches or hides (most rules): not compiled
            try:
                compiled = cssselect2.compile_selector_list(node.prelude)
            except (cssselect2.SelectorError, ValueError, IndexError):
                continue  # a selector the engine does not know matches nothing here
            sheet.rules.append((compiled, Rule(declarations, sheet.url)))
        elif isinstance(node, ast.AtRule):
            name = node.lower_at_keyword
            if name == "import" and top:
                url = _first_url(node.prelude, allow_string=True)
                media = _after_url(node.prelude)
                if url and (not media or media_applies(media)):
                    resolved = absolute(sheet.url, url)
                    if resolved:
                        sheet.imports.append(resolved)
            elif name == "media" and node.content is not None:
                if media_applies(tinycss2.serialize(node.prelude)):
                    _walk(_rules(node.content), sheet, top=False)
            elif name in ("supports", "layer", "container", "document", "scope") \
                    and node.content is not None:
                _walk(_rules(node.content), sheet, top=False)
            elif name == "font-face" and node.content is not None:
                face = _font_face(_declarations(node.content), sheet.url)
                if face is not None:
                    sheet.faces.append(face)
            if name not in ("import", "charset", "layer"):
                top = False


def _rules(content: list[ast.Node]) -> list[ast.Node]:
    return tinycss2.parse_rule_list(content, skip_comments=True, skip_whitespace=True)


def _declarations(content: list[ast.Node] | str | None) -> dict[str, tuple[str, bool]]:
    result: dict[str, tuple[str, bool]] = {}
    if not content:
        return result
    for decl in tinycss2.parse_blocks_contents(content, skip_comments=True,
                                               skip_whitespace=True):
        if isinstance(decl, ast.Declaration):
            name = decl.lower_name
            if name in _IMAGE_PROPS or name in _FONT_PROPS or name in ("font", "display",
                                                                      "src", "unicode-range"):
                result[name] = (tinycss2.serialize(decl.value).strip(), decl.important)
    return result


_MEDIA_FEATURE = re.compile(r"\(\s*(min-|max-)?(width|height)\s*:\s*([\d.]+)(px|em|rem)?\s*\)")


def media_applies(media: str) -> bool:
    """A media query list for a 1280 x 720 screen: any query that applies."""
    for query in media.lower().split(","):
        q = query.strip()
        if not q:
            return True
        negate = q.startswith("not ")
        q = q.removeprefix("not ").removeprefix("only ").strip()
        ok = not any(w in q.split() for w in ("print", "speech", "tty", "tv", "projection",
                                                 "handheld", "braille", "embossed", "aural"))
        for m in _MEDIA_FEATURE.finditer(q):
            value = float(m.group(3)) * (16 if m.group(4) in ("em", "rem") else 1)
            have = VIEWPORT[0] if m.group(2) == "width" else VIEWPORT[1]
            if m.group(1) == "min-":
                ok = ok and have >= value
            elif m.group(1) == "max-":
                ok = ok and have <= value
            else:
                ok = ok and have == value
        if "orientation: portrait" in q or "orientation:portrait" in q:
            ok = False
        if ok != negate:
            return True
    return False


def _first_url(tokens: list[ast.Node], allow_string: bool = False) -> str | None:
    for t in tokens:
        if isinstance(t, ast.URLToken):
            return str(t.value)
        if isinstance(t, ast.FunctionBlock) and t.lower_name == "url":
            for arg in t.arguments:
                if isinstance(arg, ast.StringToken):
                    return str(arg.value)
        if allow_string and isinstance(t, ast.StringToken):
            return str(t.value)
    return None


def _after_url(tokens: list[ast.Node]) -> str:
    for i, t in enumerate(tokens):
        if isinstance(t, ast.URLToken | ast.StringToken | ast.FunctionBlock):
            return tinycss2.serialize(tokens[i + 1:]).strip()
    return ""


def urls_in(value: str) -> list[str]:
    """The url()s of a property value, in order."""
    found: list[str] = []
    for t in tinycss2.parse_component_value_list(value):
        if isinstance(t, ast.URLToken):
            found.append(str(t.value))
        elif isinstance(t, ast.FunctionBlock):
            if t.lower_name == "url":
                found.extend(str(a.value) for a in t.arguments
                             if isinstance(a, ast.StringToken))
            elif t.lower_name in ("image-set", "-webkit-image-set"):
                inner = urls_in(tinycss2.serialize(t.arguments))
                found.extend(inner[:1])  # the 1x candidate comes first by convention
            elif t.lower_name not in ("linear-gradient", "radial-gradient",
                                      "repeating-linear-gradient", "conic-gradient"):
                found.extend(urls_in(tinycss2.serialize(t.arguments)))
    return found


def _font_face(decls: dict[str, tuple[str, bool]], base: str) -> FontFace | None:
    family = _families(decls.get("font-family", ("", False))[0])
    if not family:
        return None
    url = None
    for source in _split_commas(decls.get("src", ("", False))[0]):
        refs = urls_in(source)
        fmt = re.search(r"format\(\s*['\"]?([\w-]+)", source)
        if refs and (fmt is None or fmt.group(1).lower() in _FORMATS_TAKEN):
            url = absolute(base, refs[0])
            break
    style = decls.get("font-style", ("normal", False))[0].lower().split()
    weights = [_weight(w) for w in decls.get("font-weight", ("400", False))[0].split()]
    numeric = [w for w in weights if w is not None] or [400]
    return FontFace(family[0], url, style[0] if style else "normal",
                    (min(numeric), max(numeric)),
                    _unicode_ranges(decls.get("unicode-range", ("", False))[0]))


def _split_commas(value: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in value:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _families(value: str) -> list[str]:
    return [p.strip().strip("'\"").strip().lower() for p in _split_commas(value)
            if p.strip().strip("'\"")]


def _weight(text: str) -> int | None:
    text = text.lower()
    if text in _WEIGHTS:
        return _WEIGHTS[text]
    try:
        return int(float(text))
    except ValueError:
        return None


def _unicode_ranges(value: str) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for part in value.split(","):
        part = part.strip().upper().removeprefix("U+")
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                ranges.append((int(lo, 16), int(hi, 16)))
            elif "?" in part:
                ranges.append((int(part.replace("?", "0"), 16), int(part.replace("?", "F"), 16)))
            else:
                ranges.append((int(part, 16), int(part, 16)))
        except ValueError:
            continue
    return tuple(ranges) or ((0, 0x10FFFF),)


def _font_shorthand(value: str) -> dict[str, str]:
    """`font: italic bold 12px/1.2 Roboto, sans-serif` -> style, weight, family."""
    out: dict[str, str] = {}
    words = value.replace("/", " / ").split()
    for i, w in enumerate(words):
        lw = w.lower()
        if re.match(r"^[\d.]+(px|em|rem|pt|%|ex|ch|vw|vh)$", lw) or lw in (
                "small", "medium", "large", "x-large", "xx-large", "x-small", "xx-small",
                "smaller", "larger"):
            rest = words[i + 1:]
            if rest and rest[0] == "/":
                rest = rest[2:]
            out["font-family"] = " ".join(rest)
            break
        if lw in ("italic", "oblique"):
            out["font-style"] = lw
        elif _weight(lw) is not None and lw not in ("normal",):
            out["font-weight"] = lw
    return out


# -- the document ---------------------------------------------------------------------------


@dataclass
class Wanted:
    """What style makes the browser fetch: image URLs and font URLs, in document order."""

    images: list[str] = field(default_factory=list)
    fonts: list[str] = field(default_factory=list)


@dataclass
class _Face:
    families: list[str]
    weight: int
    style: str


def compute(root: ET.Element, sheets: list[StyleSheet], inline: dict[int, Rule]) -> Wanted:
    """The images and fonts the document's rendered elements need: `sheets` in cascade
    order (imports before the sheet that imports them), `inline` the style="" attributes
    by the id() of their element."""
    matcher = cssselect2.Matcher()
    faces: list[FontFace] = []
    for sheet in sheets:
        faces.extend(sheet.faces)
        for compiled, rule in sheet.rules:
            for sel in compiled:
                matcher.add_selector(sel, rule)
    families = {f.family for f in faces}
    wanted = Wanted()
    seen: set[str] = set()
    text_by_face: dict[tuple[str, int, str], set[int]] = {}

    def want_image(value: str, base: str) -> None:
        for ref in urls_in(value):
            url = absolute(base, ref)
            if url and url not in seen:
                seen.add(url)
                wanted.images.append(url)

    def walk(el: cssselect2.ElementWrapper, inherited: _Face) -> None:
        tag = el.local_name.lower()
        etree = el.etree_element
        if tag in _NOT_RENDERED or "hidden" in etree.attrib or (
                tag == "input" and etree.get("type", "").lower() == "hidden"):
            return
        by_pseudo: dict[str | None, list[tuple[tuple[bool, tuple[int, int, int], int],
                                               str, str, str]]] = {}
        for specificity, order, pseudo, rule in matcher.match(el):
            for prop, (value, important) in rule.declarations.items():
                by_pseudo.setdefault(pseudo, []).append(
                    ((important, specificity, order), prop, value, rule.base))
        own = inline.get(id(etree))
        if own is not None:
            for prop, (value, important) in own.declarations.items():
                by_pseudo.setdefault(None, []).append(
                    ((important, (1, 0, 0, 0), 10**9), prop, value, own.base))  # type: ignore[arg-type]
        styles = {pseudo: _cascade(decls) for pseudo, decls in by_pseudo.items()}
        mine = styles.get(None, {})
        if mine.get("display", ("", ""))[0].lower().startswith("none"):
            return
        if tag in _UA_BOLD:
            inherited = _Face(inherited.families, 700, inherited.style)
        elif tag in _UA_ITALIC:
            inherited = _Face(inherited.families, inherited.weight, "italic")
        face = _inherit(inherited, mine)
        for prop in ("background-image", "list-style-image", "border-image-source"):
            if prop in mine:
                want_image(*mine[prop])
        text = (etree.text or "") + "".join(child.tail or "" for child in etree)
        if tag in ("input", "textarea", "select", "button"):
            text += etree.get("value", "") + etree.get("placeholder", "")
        _note_text(text_by_face, face, text, families)
        for pseudo in ("before", "after"):
            ps = styles.get(pseudo)
            if not ps or "content" not in ps:
                continue
            content = ps["content"][0]
            if content.lower() in ("none", "normal", ""):
                continue
            want_image(*ps["content"])
            for prop in ("background-image", "list-style-image", "border-image-source"):
                if prop in ps:
                    want_image(*ps[prop])
            strings = "".join(str(t.value) for t in tinycss2.parse_component_value_list(
                content) if isinstance(t, ast.StringToken))
            _note_text(text_by_face, _inherit(face, ps), strings, families)
        for child in el.iter_children():
            walk(child, face)

    walk(cssselect2.ElementWrapper.from_html_root(root), _Face([], 400, "normal"))
    for (family, weight, style), chars in text_by_face.items():
        for face in _choose_faces([f for f in faces if f.family == family], weight, style):
            if face.url and face.url not in seen and face.covers(chars):
                seen.add(face.url)
                wanted.fonts.append(face.url)
    return wanted


def _cascade(decls: list[tuple[tuple[bool, tuple[int, int, int], int], str, str, str]],
             ) -> dict[str, tuple[str, str]]:
    """Winning (value, base) per property, shorthands folded onto their longhand."""
    won: dict[str, tuple[str, str]] = {}
    for _, prop, value, base in sorted(decls, key=lambda d: d[0]):
        if prop in _IMAGE_PROPS:
            won[_IMAGE_PROPS[prop]] = (value, base)
        elif prop == "font":
            for k, v in _font_shorthand(value).items():
                won[k] = (v, base)
            won.setdefault("font-style", ("normal", base))
        else:
            won[prop] = (value, base)
    return won


def _inherit(parent: _Face, style: dict[str, tuple[str, str]]) -> _Face:
    families = parent.families
    if "font-family" in style and style["font-family"][0].lower() not in ("inherit", "unset"):
        families = _families(style["font-family"][0])
    weight = parent.weight
    if "font-weight" in style:
        w = style["font-weight"][0].lower()
        if w == "bolder":
            weight = 700 if parent.weight < 600 else 900
        elif w == "lighter":
            weight = 100 if parent.weight < 600 else 400
        else:
            weight = _weight(w) or parent.weight
    fstyle = parent.style
    if "font-style" in style:
        fstyle = (style["font-style"][0].lower().split() or ["normal"])[0]
    return _Face(families, weight, fstyle)


def _note_text(text_by_face: dict[tuple[str, int, str], set[int]], face: _Face, text: str,
               families: set[str]) -> None:
    chars = {ord(c) for c in text if not c.isspace()}
    if not chars:
        return
    for family in face.families:
        if family in families:
            text_by_face.setdefault((family, face.weight, face.style), set()).update(chars)
            return
        if family in _GENERIC:
            return  # a system font: nothing to fetch


def _choose_faces(faces: list[FontFace], weight: int, style: str) -> Iterator[FontFace]:
    """CSS Fonts 4 matching: the style first (italic -> oblique -> normal), then the
    nearest weight; every unicode-range slice of the chosen style and weight."""
    if not faces:
        return
    order = {"italic": ("italic", "oblique", "normal"),
             "oblique": ("oblique", "italic", "normal")}.get(style, ("normal", "oblique", "italic"))
    for s in order:
        same = [f for f in faces if f.style == s]
        if same:
            break
    else:
        same = faces

    def distance(f: FontFace) -> tuple[int, int]:
        lo, hi = f.weight
        if lo <= weight <= hi:
            return (0, 0)
        if 400 <= weight <= 500:  # try up to 500 first, then down, then up
            if weight < lo <= 500:
                return (1, lo - weight)
            if hi < weight:
                return (2, weight - hi)
            return (3, lo - weight)
        if weight < 400:
            return (1, weight - hi) if hi < weight else (2, lo - weight)
        return (1, lo - weight) if lo > weight else (2, weight - hi)

    best = min(distance(f) for f in same)
    yield from (f for f in same if distance(f) == best)
