#!/usr/bin/env bash
# The whole test suite: makes the virtual environment, then runs pytest. The tests install
# (apt-get) and start their own Postfix, Dovecot, InfluxDB and VictoriaMetrics on loopback.
#   PROBER_TEST_WORKERS=N   pytest workers for the parallel part (default 3; 0: one process)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
status=0
.venv/bin/ruff check prober tests bench || status=$?
.venv/bin/python -m mypy || status=$?   # [tool.mypy] in pyproject.toml: files = prober
# Most tests wait on servers and clocks rather than compute, so they run on several
# workers, a test file to a worker (their servers are per module or per worker session);
# every server is on its own free port and directory. Files are handed out in collection
# order, tests/integration (the long ones) first, not xdist's most-tests-first, which
# left the 3-minute demo for last. Tests marked `serial` hold a timing to a tight band
# that a busy CPU would blur: they run alone, after the rest.
parallel=0
.venv/bin/python -m pytest -n "${PROBER_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder \
  -m "not serial" "$@" || parallel=$?
alone=0
.venv/bin/python -m pytest -m serial "$@" -n 0 || alone=$?
# pytest's 5 means "no tests ran": a failure when neither part ran a test (a selection
# may well fall wholly in one part).
if [ "$parallel" -eq 5 ] && [ "$alone" -eq 5 ]; then
  status=5
else
  for rc in "$parallel" "$alone"; do
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] && [ "$status" -eq 0 ]; then status=$rc; fi
  done
fi
exit "$status"
