#!/usr/bin/env bash
# Quick start: a real Postfix + Dovecot on loopback (Debian packages, installed when
# missing, run from a temporary directory) and `prober check` against it.
# Needs root (apt-get, and the mail servers' own users). Extra arguments go to prober check.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m tests.localstack.demo "$@"
