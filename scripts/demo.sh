#!/usr/bin/env bash
# Quick start: the whole product on this machine in about five minutes. A real Postfix +
# Dovecot, a webmail-like page set and InfluxDB 1.6.7 on free loopback ports, from a
# temporary directory (Debian packages installed when missing); `prober check`; two
# vantages (`prober run`) ticking through an injected provider fault and a fault of one
# vantage; `prober score` and its HTML report. Stops everything it started, also on Ctrl-C.
# Needs root (apt-get, and the mail servers' own users).
#   bash scripts/demo.sh [--minutes N] [--tick-s S] [--report FILE] [--keep]
#   bash scripts/demo.sh --check-only [--keep] [-- extra prober check options]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m tests.localstack.demo "$@"
