"""What a browser fetches for a page before its load event, as far as the HTML says.

The HTML parser is fed text as it arrives, like a browser's preload scanner, so fetches
start before the page is complete, and it builds the document tree that the styles are
matched against (webmail_css: the images of matching rules and the fonts the text uses
are known only once the document and its stylesheets are in). From the HTML itself:
- `<link rel=stylesheet>` (not `alternate`, and only for media that apply to a screen),
  `<link rel=preload|modulepreload>`, `<script src>` (not `nomodule`: Chromium runs
  modules), `<iframe src>` (a document of its own, loaded before the load event),
  `<input type=image>`;
- `<img>` and `<picture>` as a desktop Chromium chooses (1280 px wide, 1x display): the
  first `<source>` whose `type` it decodes and whose `media` applies, else the `<img>`;
  from a `srcset` the `1x` candidate, or with width descriptors the smallest one at least
  as wide as `sizes` (default 100vw); `loading="lazy"` images wait for the style pass
  (Chromium asks for them once layout puts them within its distance of the viewport,
  which on a webmail's short pages is nearly always: measured so on the reference line);
- not the favicon: a browser asks for it after the load event.
`<style>` elements and `style=""` attributes are kept for the style pass.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

from prober.probes.webmail_css import VIEWPORT, absolute, media_applies

_PRELOAD_RELS = {"preload", "modulepreload"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
         "source", "track", "wbr", "frame", "keygen"}
# an open <p> ends where one of these starts (the HTML parser's implied end tags, in short)
_CLOSES_P = {"address", "article", "aside", "blockquote", "div", "dl", "fieldset", "footer",
             "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "main", "nav", "ol",
             "p", "pre", "section", "table", "ul"}
_SELF_CLOSING = {"li", "option", "dt", "dd", "tr", "td", "th"}
_IMAGE_TYPES = {"image/webp", "image/avif", "image/png", "image/jpeg", "image/gif",
                "image/svg+xml", "image/apng", "image/bmp", "image/x-icon"}
# Bounds on what the tree holds, so a page of a million empty tags stays small in memory.
MAX_ELEMENTS = 50_000
MAX_TREE_TEXT = 2_000_000


@dataclass(frozen=True)
class Resource:
    url: str
    kind: str  # stylesheet, script, image, font, preload, document, xhr


def pick_srcset(srcset: str, sizes: str = "", src: str = "") -> str | None:
    """The candidate a desktop Chromium (1280 px viewport, 1x display) takes; `src` counts
    as the 1x candidate when `srcset` has none (and no width descriptors)."""
    candidates: list[tuple[str, str]] = []
    for part in re.split(r",\s+|,(?=\S+\s)", srcset.strip()):
        bits = part.strip().split()
        if bits:
            candidates.append((bits[0].rstrip(","), bits[1].lower() if len(bits) > 1 else "1x"))
    if not candidates:
        return None
    widths = [(int(d[:-1]), u) for u, d in candidates if d.endswith("w") and d[:-1].isdigit()]
    if widths:
        want = _slot_width(sizes)
        wide_enough = sorted(w for w in widths if w[0] >= want)
        return (wide_enough[0] if wide_enough else max(widths))[1]
    for url, d in candidates:
        if d in ("1x", "1.0x", "1"):
            return url
    if src:
        return src
    dens = [(float(d[:-1]), u) for u, d in candidates if d.endswith("x")
            and d[:-1].replace(".", "", 1).isdigit()]
    at_least = sorted(x for x in dens if x[0] >= 1)
    return at_least[0][1] if at_least else candidates[0][0]


def _slot_width(sizes: str) -> float:
    for entry in sizes.split(","):
        entry = entry.strip()
        if not entry:
            continue
        m = re.match(r"^(\(.*\))\s*(.*)$", entry)
        media, length = (m.group(1), m.group(2)) if m else ("", entry)
        if media and not media_applies(media):
            continue
        n = re.match(r"^([\d.]+)(px|vw|em|rem)?$", length.strip())
        if n:
            value = float(n.group(1))
            unit = n.group(2) or "px"
            return value * VIEWPORT[0] / 100 if unit == "vw" else value * (
                16 if unit in ("em", "rem") else 1)
        return VIEWPORT[0]  # calc() and the like: the whole width
    return VIEWPORT[0]


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, value)

    @property
    def has_password(self) -> bool:
        return any(t == "password" for _, t, _ in self.fields)


class PageScanner(HTMLParser):
    """Feed it HTML text as it arrives; `take()` returns the resources found since last time.
    `root` is the document tree so far; `styles` the stylesheets in document order
    (("link", url) or ("style", css text)); `inline` the style="" attributes."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base_url
        self._new: list[Resource] = []
        self._in_style = False
        self._style: list[str] = []
        self.forms: list[Form] = []
        self._form: Form | None = None
        self.text_parts: list[str] = []
        self._text_len = 0
        self.root = ET.Element("html")
        self._stack: list[ET.Element] = [self.root]
        self._elements = 0
        self._tree_text = 0
        self.styles: list[tuple[str, str]] = []
        self.inline: list[tuple[ET.Element, str]] = []
        self._picture: list[str | None] | None = None  # [chosen source] inside <picture>
        self.lazy: list[str] = []  # loading=lazy images: asked for after layout
        # classic scripts without async or defer: the parser stops at each until it has
        # run, so the elements after it are not styled, nor their images asked for, before
        self.blocking: set[str] = set()
        # frames after a blocking script: no preload scanner asks for a frame, the parser
        # inserts it once past the scripts before it (Roundcube's inbox: its blank frame
        # came after its two scripts on the reference line)
        self.frames: list[str] = []

    def take(self) -> list[Resource]:
        new, self._new = self._new, []
        return new

    def _add(self, ref: str | None, kind: str) -> None:
        if ref:
            url = absolute(self.base, ref)
            if url:
                self._new.append(Resource(url, kind))

    def _open(self, tag: str, a: dict[str, str]) -> ET.Element | None:
        if tag == "html":
            self.root.attrib.update(a)
            return self.root
        top = self._stack[-1]
        if (top.tag == "p" and tag in _CLOSES_P) or (tag in _SELF_CLOSING and top.tag == tag):
            self._stack.pop()
        if self._elements >= MAX_ELEMENTS:
            return None
        self._elements += 1
        el = ET.SubElement(self._stack[-1], tag, a)
        if tag not in _VOID:
            self._stack.append(el)
        return el

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self._stack[-1].tag == tag and len(self._stack) > 1:
            self._stack.pop()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        el = self._open(tag, a)
        if "style" in a and el is not None:
            self.inline.append((el, a["style"]))
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        elif tag == "link":
            rels = set(a.get("rel", "").lower().split())
            if "stylesheet" in rels and "alternate" not in rels:
                url = absolute(self.base, a.get("href", ""))
                if url and media_applies(a.get("media", "")):
                    self.styles.append(("link", url))
                    self._new.append(Resource(url, "stylesheet"))
            elif rels & _PRELOAD_RELS:
                self._add(a.get("href"), "preload")
        elif tag == "script":
            if "nomodule" not in a:
                self._add(a.get("src"), "script")
                src = absolute(self.base, a.get("src") or "")
                if (src and "async" not in a and "defer" not in a
                        and a.get("type", "").lower() != "module"):
                    self.blocking.add(src)
        elif tag == "picture":
            self._picture = [None]
        elif tag == "source" and self._picture is not None and self._picture[0] is None:
            kind = a.get("type", "").lower()
            if (not kind or kind in _IMAGE_TYPES) and media_applies(a.get("media", "")):
                self._picture[0] = pick_srcset(a.get("srcset", ""), a.get("sizes", ""))
        elif tag == "img":
            chosen = self._picture[0] if self._picture is not None else None
            ref = chosen or (pick_srcset(a["srcset"], a.get("sizes", ""), a.get("src", ""))
                             if a.get("srcset") else a.get("src"))
            if a.get("loading", "").lower() != "lazy":
                self._add(ref, "image")
            elif ref and (url := absolute(self.base, ref)):
                self.lazy.append(url)
        elif tag in ("iframe", "frame"):
            if a.get("loading", "").lower() != "lazy":
                if self.blocking and (url := absolute(self.base, a.get("src") or "")):
                    self.frames.append(url)  # the parser inserts it after those scripts
                else:
                    self._add(a.get("src"), "document")
        elif tag == "input" and a.get("type", "").lower() == "image":
            self._add(a.get("src"), "image")
        elif tag == "style":
            self._in_style = True
            self._style = []
        if tag == "form":
            self._form = Form(action=urljoin(self.base, a.get("action") or ""),
                              method=(a.get("method") or "get").upper())
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            kind = a.get("type", "text").lower() or "text"
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind not in ("submit", "button", "image", "reset", "file"):
                self._form.fields.append((a["name"], kind, a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "style" and self._in_style:
            self._in_style = False
            self.styles.append(("style", "".join(self._style)))
        elif tag == "form":
            self._form = None
        elif tag == "picture":
            self._picture = None
        for i in range(len(self._stack) - 1, 0, -1):
            if self._stack[i].tag == tag:
                del self._stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._style.append(data)
            return
        if self._text_len < 200_000:
            self.text_parts.append(data)
            self._text_len += len(data)
        if self._tree_text < MAX_TREE_TEXT:
            self._tree_text += len(data)
            top = self._stack[-1]
            if len(top):
                last = top[-1]
                last.tail = (last.tail or "") + data
            else:
                top.text = (top.text or "") + data

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def login_form(self) -> Form | None:
        return next((f for f in self.forms if f.has_password), None)
