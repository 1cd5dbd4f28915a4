"""Each engine against the physical truth on a real webmail: Roundcube 1.6 from Debian's
packages (Apache, mod_php, SQLite; IMAP and SMTP the test Dovecot and Postfix) on the
host end of the packet-level line (tests/tunline.py), Chromium in the namespace as the
reference. Broadband only (a narrowband visit takes minutes: bench/webmail_bench.py
--reference --site roundcube). Prints the table.

What is held: with the requests Roundcube's scripts make named as `[[webmail.extra]]`
(those of docs/webmail.md's Roundcube example, read from there), the httpx
engine asks for what Chromium asked for in the visit (the login page, the login POST,
the inbox); and each engine's medians stay within 20 % of the reference's on the login
page and the whole visit, the band the test pages' test holds on a loaded CI machine
(the goal is 10 %: docs/webmail.md has the measured table). The inbox after the login
is held to 30 %: a 1 s page whose reference moved from 0.93 to 1.15 s between runs
here (Roundcube's login in PHP, the relay under load), and from which the httpx engine
lacks Chromium's time running the inbox's scripts (about 10 % on broadband)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from prober.config.profiles import resolve_profile
from tests.localstack.packages import ensure_packages
from tests.webmail_reference import HEADER, measure_site, roundcube_site

pytestmark = pytest.mark.integration

BROADBAND = resolve_profile("broadband")
# per row: the band each engine is held to
BANDS = {"login page": 0.2, "inbox after login": 0.3, "login page + inbox": 0.2}
# Per visit, what varies: the session's token; the XHRs' lock id and cache buster, which
# a configured extra request cannot know.
_TOKEN = re.compile(r"([?&]_token=)[^&\s]*")
_XHR_ONLY = re.compile(r"&_(?:unlock|)=[^&\s]*")


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    ensure_packages({"chromium": "chromium"})


def _normal(requests: list[str]) -> list[str]:
    # the favicon: a browser asks for it after the load event
    return sorted(_XHR_ONLY.sub("", _TOKEN.sub(r"\1", r))
                  for r in requests if "favicon" not in r)


# serial: timed against Chromium behind a user-space packet relay, like the reference
# test; run beside other tests it went +27 % (scripts/test.sh runs it alone)
@pytest.mark.serial
def test_engines_against_chromium_on_roundcube(tmp_path: Path) -> None:
    with roundcube_site(BROADBAND, tmp_path) as s:
        rows = measure_site(s, BROADBAND, repeat=3)
        chromium, httpx = _normal(s.fetched["reference"]), _normal(s.fetched["httpx"])
        browser = _normal(s.fetched["browser"])
    print("\n" + HEADER)
    for row in rows:
        print(row.line())
    print(f"requests: Chromium {len(chromium)}, httpx engine {len(httpx)}, "
          f"browser engine {len(browser)}")
    # Chromium asks twice for the inbox's blank frame (its src, then set again by a
    # script); the httpx engine asks for each URL once per document
    assert sorted(set(httpx)) == sorted(set(chromium)), (
        sorted(set(chromium) - set(httpx)), sorted(set(httpx) - set(chromium)))
    assert sorted(set(browser)) == sorted(set(chromium))
    assert any("_action=list" in r for r in httpx)
    assert [row.page for row in rows] == list(BANDS)
    for row in rows:
        assert abs(row.browser_err) <= BANDS[row.page], row.line()
        assert abs(row.httpx_err) <= BANDS[row.page], row.line()
