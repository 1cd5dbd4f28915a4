"""The link emulation against the analytic model, per profile, and the prober's own CPU.

For each preset profile, pages served on loopback are loaded through the emulated line:
  single/http    one page, plain HTTP: model = 2 RTT + bytes_down/down + bytes_up/up
  single/tls13   the same over TLS 1.3 (3 RTT)        single/tls12   over TLS 1.2 (4 RTT)
  levels         HTML -> 2 CSS -> @import/url() -> url(): 10 resources over up to 6
                 connections, against the shared-link fluid model (webmail_model)
and it prints the emulated load time, the model's, the error, and the CPU time the
prober's thread spent on the load (thread CPU: the loopback server runs in another thread)
as a share of the emulated time. Page sizes scale with the line so each load takes a few
seconds at most. Run: .venv/bin/python bench/webmail_bench.py [--profiles dial,dsl] [--repeat 3]

With --reference (root: a network namespace and TUN devices), each engine against
Chromium behind a packet-level line instead (tests/webmail_reference.py): login page,
inbox and login flow of a webmail-shaped test site, medians of interleaved loads, as a
Markdown table. Narrowband takes minutes per load: run it here, not in CI.
  .venv/bin/python bench/webmail_bench.py --reference --profiles narrowband,broadband
With --site roundcube, on a real Roundcube 1.6 from Debian's packages instead
(tests/localstack/roundcube.py; installs it when missing): one login flow per round gives
the login page, the inbox after the login and the two together.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prober.config.profiles import PRESETS, Profile
from prober.config.webmail import WebmailTarget
from tests.webmail_helpers import load_async
from tests.webmail_model import (
    ModelResource,
    predict_load_s,
    single_fetch_s,
)
from tests.webserver import WebServer, make_cert, page, server_tls_context

# The images of matching rules and the font the text uses are asked for once the page and
# all its stylesheets are in: when the imported c.css, the last, arrives.
TREE = {"/": ["/a.css", "/b.css", "/app.js", "/logo.png"], "/a.css": ["/c.css"],
        "/c.css": ["/bg1.png", "/bg2.png", "/bg3.png", "/f.woff2"]}
HTML = ('<html><head><link rel=stylesheet href="/a.css"><link rel=stylesheet href="/b.css">'
        '<script src="/app.js"></script></head><body><div class=x></div><div class=y></div>'
        '<img src="/logo.png"><p>Inbox</p></body></html>')


def routes(unit: int) -> dict[str, object]:
    """A levels page of about 17 units of bytes and a single page of 8; `unit` is chosen
    per profile."""
    pad = "/* pad */ " * (unit // 40)
    return {
        "/": page(HTML),
        "/single": page("<html><body>" + "mail " * (8 * unit // 5) + "</body></html>"),
        "/a.css": page("@import url('c.css'); body{background:url(bg1.png)}" + pad, "text/css"),
        "/b.css": page("@font-face{font-family:x;src:url(/f.woff2) format('woff2'),"
                       "url(/f.woff) format('woff')} .x{background:url(/bg2.png)} "
                       "p{font-family:x}" + pad,
                       "text/css"),
        "/c.css": page(".y{background:url(/bg3.png)}", "text/css"),
        "/app.js": page("x" * 3 * unit, "text/javascript"),
        "/logo.png": page(b"l" * 2 * unit, "image/png"),
        "/bg1.png": page(b"1" * 2 * unit, "image/png"),
        "/bg2.png": page(b"2" * 4 * unit, "image/png"),
        "/bg3.png": page(b"3" * 2 * unit, "image/png"),
        "/f.woff2": page(b"f" * 2 * unit, "font/woff2"),
    }


async def one(url: str, profile: Profile, ca: Path) -> dict[str, object]:
    m = await load_async(WebmailTarget("bench", url, ca_file=str(ca)), profile, "bench")
    if m.tags["outcome"] != "ok":
        raise SystemExit(f"load of {url} on {profile.name} failed: {m.fields['error']}")
    return dict(m.fields)


def tree_for(server: WebServer) -> ModelResource:
    log = {e.path: e for e in server.entries()}

    def build(path: str) -> ModelResource:
        return ModelResource(path, log[path].bytes_out, log[path].bytes_in,
                             [build(c) for c in TREE.get(path, [])])
    return build("/")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default=",".join(PRESETS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference", action="store_true",
                    help="each engine against Chromium on a packet-level line (root)")
    ap.add_argument("--site", choices=("test", "roundcube"), default="test",
                    help="with --reference: the test pages or a real Roundcube")
    args = ap.parse_args()
    if args.reference:
        from prober.config.profiles import resolve_profile
        from tests.webmail_reference import HEADER, measure

        names = args.profiles if args.profiles != ",".join(PRESETS) else "narrowband,broadband"
        print(f"{args.site}: medians of {args.repeat} interleaved cold loads", flush=True)
        print(HEADER, flush=True)
        cpu = []
        for name in names.split(","):
            tmp = Path(tempfile.mkdtemp(prefix="webmail-ref-"))
            for row in measure(resolve_profile(name), tmp, args.repeat, site_name=args.site):
                print(row.line(), flush=True)
                if row.httpx_cpu is not None:
                    cpu.append(f"{row.profile} {row.page} {row.httpx_cpu:.1%}")
        if cpu:
            print("httpx engine CPU, share of its load time (median): " + "; ".join(cpu))
        return
    tmp = Path(tempfile.mkdtemp(prefix="webmail-bench-"))
    cert, key = make_cert(tmp)
    print(f"{'profile':8} {'case':13} {'emulated_s':>10} {'model_s':>8} {'error':>7} "
          f"{'cpu_s':>6} {'cpu/emu':>7}  (median of {args.repeat})")
    for name in args.profiles.split(","):
        profile = PRESETS[name]
        # about 2.5 s of line time for the whole levels page
        unit = int(profile.down_kbps * 1000 / 8 * 2.5 / 17)
        servers = {
            "http": WebServer(routes(unit)).start(),
            "tls13": WebServer(routes(unit), tls=server_tls_context(cert, key, "1.3")).start(),
            "tls12": WebServer(routes(unit), tls=server_tls_context(cert, key, "1.2")).start(),
        }
        asyncio.run(one(servers["http"].base + "/single", PRESETS["fios"], cert))  # warm-up
        cases: list[tuple[str, str, int | None]] = [
            ("single/http", "http", 2), ("single/tls13", "tls13", 3),
            ("single/tls12", "tls12", 4), ("levels", "http", None)]
        for case, kind, rtts in cases:
            rows = []
            for _ in range(args.repeat):
                server = servers[kind]
                server.clear_log()
                path = "/single" if rtts else "/"
                f = asyncio.run(one(server.base + path, profile, cert))
                if rtts:
                    model = single_fetch_s(profile, rtts, f["bytes"], f["bytes_up"])  # type: ignore[arg-type]
                else:
                    model = predict_load_s(tree_for(server), profile)
                emu = float(f["load_s"])  # type: ignore[arg-type]
                rows.append((emu, model, float(f["cpu_s"])))  # type: ignore[arg-type]
            emu = statistics.median(r[0] for r in rows)
            model = statistics.median(r[1] for r in rows)
            cpu = statistics.median(r[2] for r in rows)
            print(f"{name:8} {case:13} {emu:10.3f} {model:8.3f} {100 * (emu / model - 1):+6.1f}% "
                  f"{cpu:6.3f} {100 * cpu / emu:6.1f}%", flush=True)
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
