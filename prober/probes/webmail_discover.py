"""What a browser would fetch for a page: sub-resources from HTML and CSS, and login forms.

The HTML parser is fed text as it arrives, like a browser's preload scanner, so fetches
start before the page is complete. It aims at fetching what a browser fetches and no more
(FIELD-NOTES: following every reference over-fetched 45 % on one real webmail):
- `<link rel=stylesheet|icon|preload|modulepreload>`, `<script src>`, `<img>` (its `src`,
  or one `srcset` candidate when there is no `src`), `<input type=image>`, inline `<style>`
  and `style=""` attributes;
- CSS `@import` and `url()`, but only the first `src` of each `@font-face` (browsers stop
  at the first format they support, woff2 listed first by convention).
Background images are followed for every rule, matching or not (no selector matching
here): the report's request count shows what was fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

FETCHABLE_SCHEMES = ("http", "https")
_ICON_RELS = {"icon", "shortcut", "apple-touch-icon"}
_PRELOAD_RELS = {"preload", "modulepreload"}

_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?(['"]?)([^'")\s;]+)\1""", re.I)
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+?)\1\s*\)""", re.I)
_FONT_FACE = re.compile(r"@font-face\s*\{([^}]*)\}", re.I | re.S)
_FONT_SRC = re.compile(r"\bsrc\s*:([^;}]*)", re.I)


@dataclass(frozen=True)
class Resource:
    url: str
    kind: str  # stylesheet, script, image, icon, font, preload, import


def _fetchable(url: str) -> bool:
    return urlsplit(url).scheme in FETCHABLE_SCHEMES


def _absolute(base: str, ref: str) -> str | None:
    ref = ref.strip()
    if not ref or ref.startswith(("data:", "#", "javascript:", "about:", "blob:")):
        return None
    url = urljoin(base, ref).split("#", 1)[0]
    return url if _fetchable(url) else None


def css_resources(css: str, base: str) -> list[Resource]:
    """Sub-resources a stylesheet pulls in: imports, then url()s, one per @font-face."""
    text = _CSS_COMMENT.sub("", css)
    found: list[Resource] = []
    for m in _CSS_IMPORT.finditer(text):
        url = _absolute(base, m.group(2))
        if url:
            found.append(Resource(url, "stylesheet"))
    text = _CSS_IMPORT.sub("", text)
    for face in _FONT_FACE.finditer(text):
        src = _FONT_SRC.search(face.group(1))
        first = _CSS_URL.search(src.group(1)) if src else None
        url = _absolute(base, first.group(2)) if first else None
        if url:
            found.append(Resource(url, "font"))
    text = _FONT_FACE.sub("", text)
    for m in _CSS_URL.finditer(text):
        url = _absolute(base, m.group(2))
        if url:
            found.append(Resource(url, "image"))
    return found


def _srcset_pick(srcset: str) -> str | None:
    """The candidate a 1x display takes: the `1x` one, else the first."""
    candidates = [c.strip().split() for c in srcset.split(",") if c.strip()]
    for parts in candidates:
        if len(parts) > 1 and parts[1] == "1x":
            return parts[0]
    return candidates[0][0] if candidates else None


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, value)

    @property
    def has_password(self) -> bool:
        return any(t == "password" for _, t, _ in self.fields)


class PageScanner(HTMLParser):
    """Feed it HTML text as it arrives; `take()` returns the resources found since last time."""

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

    def take(self) -> list[Resource]:
        new, self._new = self._new, []
        return new

    def _add(self, ref: str | None, kind: str) -> None:
        if ref:
            url = _absolute(self.base, ref)
            if url:
                self._new.append(Resource(url, kind))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if "style" in a:
            self._new.extend(css_resources(a["style"], self.base))
        if tag == "base" and a.get("href"):
            self.base = urljoin(self.base, a["href"])
        elif tag == "link":
            rels = set(a.get("rel", "").lower().split())
            if "stylesheet" in rels and "alternate" not in rels:
                self._add(a.get("href"), "stylesheet")
            elif rels & _PRELOAD_RELS:
                self._add(a.get("href"), "preload")
            elif rels & _ICON_RELS:
                self._add(a.get("href"), "icon")
        elif tag == "script":
            self._add(a.get("src"), "script")
        elif tag == "img":
            self._add(a.get("src") or _srcset_pick(a.get("srcset", "")), "image")
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
            self._new.extend(css_resources("".join(self._style), self.base))
        elif tag == "form":
            self._form = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self._style.append(data)
        elif self._text_len < 200_000:
            self.text_parts.append(data)
            self._text_len += len(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def login_form(self) -> Form | None:
        return next((f for f in self.forms if f.has_password), None)
