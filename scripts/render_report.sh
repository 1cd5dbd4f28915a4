#!/usr/bin/env bash
# Render the HTML report of a scenario month (tests/sla_scenarios.py), or take an existing
# report (e.g. the demo's), and screenshot it in headless Chromium, to look at the charts
# as a person would.
# Usage: scripts/render_report.sh [OUT_DIR [REPORT.html | a | b | sparse]]
#   (default /tmp/prober-report, scenario a; sparse: a few down minutes among many unknown)
# Writes OUT_DIR/report.html (a copy of REPORT.html when given) and OUT_DIR/report.png.
# Installs Debian's chromium if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/prober-report}"
mkdir -p "$out"
if ! command -v chromium >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
scenario="${2:-a}"
if [ -f "$scenario" ]; then
    [ "$(realpath "$scenario")" = "$(realpath -m "$out/report.html")" ] \
        || cp "$scenario" "$out/report.html"
else
PYTHONPATH=. .venv/bin/python - "$out/report.html" "$scenario" <<'PY'
import sys, time
from prober.sla.local import PointsEvidence
from prober.sla.report import render
from prober.sla.score import score
from tests.sla_scenarios import build, sparse

if sys.argv[2] == "sparse":
    points, settings, contracted = sparse()
else:
    sc = build(sys.argv[2])
    points, settings, contracted = sc.measurements, sc.settings, sc.contracted
card = score(PointsEvidence.from_measurements(points), settings, 2026, 9,
             now_ns=time.time_ns(), contracted=contracted)
open(sys.argv[1], "w", encoding="utf-8").write(render(card, "html"))
PY
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --hide-scrollbars --screenshot="$out/report.png" --window-size=1200,2400 \
    "file://$(realpath "$out/report.html")" 2>/dev/null
echo "$out/report.html"
echo "$out/report.png"
