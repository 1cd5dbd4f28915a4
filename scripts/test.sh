#!/usr/bin/env bash
# The whole test suite: makes the virtual environment, then runs pytest. The tests install
# (apt-get) and start their own Postfix, Dovecot, InfluxDB and VictoriaMetrics on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
status=0
.venv/bin/ruff check prober tests bench || status=$?
.venv/bin/python -m mypy || status=$?   # [tool.mypy] in pyproject.toml: files = prober
.venv/bin/python -m pytest "$@" || status=$?
# pytest's 5 means "no tests ran": that is a failure too.
exit "$status"
