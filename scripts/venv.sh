# Sourced: make .venv with the project and its test extra installed, once.
if [ ! -x .venv/bin/prober ] || [ pyproject.toml -nt .venv/.installed ]; then
  if ! python3 -m venv .venv 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv .venv
  fi
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
