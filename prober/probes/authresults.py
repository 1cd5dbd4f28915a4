"""What the receiving provider's filters said about a canary: its `Authentication-Results`
(RFC 8601) verdicts for SPF, DKIM and DMARC, parsed with `authres`.

Whose verdict: the topmost Authentication-Results field, the one the last hop (the
recipient's provider) added; `authserv_id` records who that was, so a verdict carried
over from an earlier hop can be told apart. Several DKIM results (several signatures):
`pass` if any passed, else the first. A field we cannot parse is not guessed at: its
error is recorded instead of verdicts.
"""

from __future__ import annotations

import re

import authres
import authres.dmarc

from prober.schema import (
    FIELD_AUTHRES_ERROR,
    FIELD_AUTHSERV_ID,
    FIELD_DKIM_RESULT,
    FIELD_DMARC_RESULT,
    FIELD_SPF_RESULT,
)

# bounds on what the parser sees (the header block comes from the network)
MAX_FIELD_CHARS = 4096
_NAME = re.compile(rb"^authentication-results\s*:", re.I)
_CONTEXT = authres.FeatureContext(authres.dmarc)
_METHODS = {"spf": FIELD_SPF_RESULT, "dkim": FIELD_DKIM_RESULT, "dmarc": FIELD_DMARC_RESULT}

Fields = dict[str, str]


def topmost_field(headers: bytes) -> str | None:
    """The value of the first Authentication-Results field, unfolded, at most
    MAX_FIELD_CHARS; one linear pass over the block."""
    value: list[bytes] = []
    size = 0
    inside = False
    for line in headers.split(b"\n"):
        line = line.rstrip(b"\r")
        if inside:
            if line[:1] in (b" ", b"\t"):
                if size < MAX_FIELD_CHARS:
                    piece = line[: MAX_FIELD_CHARS - size]
                    value.append(piece)
                    size += len(piece)
                continue
            break
        match = _NAME.match(line)
        if match:
            inside = True
            piece = line[match.end():][:MAX_FIELD_CHARS]
            value.append(piece)
            size = len(piece)
    if not inside:
        return None
    return " ".join(b" ".join(value).decode("utf-8", "replace").split())


def verdicts(headers: bytes) -> Fields:
    """spf_result, dkim_result, dmarc_result and authserv_id of the topmost field;
    authres_error when it does not parse; nothing when there is no such field."""
    text = topmost_field(headers)
    if text is None:
        return {}
    try:
        parsed = _CONTEXT.parse_value(text)
    except (authres.AuthResError, RecursionError, ValueError) as exc:
        # RecursionError: authres parses nested comments recursively
        return {FIELD_AUTHRES_ERROR: f"{type(exc).__name__}: {exc}"[:300]}
    out: Fields = {}
    if parsed.authserv_id:
        out[FIELD_AUTHSERV_ID] = str(parsed.authserv_id)
    for result in parsed.results:
        field = _METHODS.get(str(result.method).lower())
        if field is None or result.result is None:
            continue
        verdict = str(result.result).lower()
        if field not in out or (field == FIELD_DKIM_RESULT and verdict == "pass"):
            out[field] = verdict
    return out
