"""Each command imports what it uses: start-up time and the daemon's memory depend on it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("httpx", "httpcore", "h2", "influxdb_client", "urllib3", "prober.sla",
         "prober.agent.influx", "playwright", "cryptography", "prometheus_client",
         "cssselect2", "tinycss2", "zoneinfo")


def _loaded_after(code: str) -> set[str]:
    probe = (f"import sys, json\n{code}\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_config_check_imports_nothing_heavy(tmp_path: Path) -> None:
    path = tmp_path / "probes.toml"
    path.write_text(f'[vantage]\nname = "v"\nstate_dir = "{tmp_path}"\n')
    loaded = _loaded_after(
        "from prober.cli import main\n"
        f"main(['config', 'check', '-c', {str(path)!r}], standalone_mode=False)")
    assert loaded == set()


def test_check_without_influx_or_webmail_imports_nothing_heavy() -> None:
    # what `prober check` imports to check mail and spool the points (no [influx])
    loaded = _loaded_after("import prober.cli, prober.commands.check, prober.commands.deliver")
    assert loaded == set()


def test_the_daemon_without_influx_imports_nothing_heavy() -> None:
    assert _loaded_after("import prober.cli, prober.agent.daemon") == set()


def test_score_is_imported_when_it_runs() -> None:
    assert "prober.sla.score" in _loaded_after(
        "from prober.cli import main\nmain.get_command(None, 'score')")


# What the daemon would keep resident for as long as it runs, for a moment's use or none:
# click (~1 MB, for a command line read once), shutil (bz2 and lzma with their libraries,
# ~0.6 MB, for a free-space figure), zoneinfo (~0.35 MB, without [sla]).
NOT_IN_THE_DAEMON = ("click", "shutil", "tempfile", "bz2", "lzma", "zoneinfo")


def test_the_daemon_started_as_the_executable_starts_it_keeps_out_what_it_does_not_use(
        tmp_path: Path) -> None:
    # prober.main parses `prober run` itself. A config error ends it before the agent runs.
    code = ("import sys\nfrom prober.main import main\n"
            "try:\n"
            f"    main(['-v', 'run', '-c', {str(tmp_path / 'missing.toml')!r}])\n"
            "except SystemExit as exc:\n"
            "    print('exit', exc.code, file=sys.stderr)\n"
            "import prober.agent.daemon\n"
            "print(json.dumps(sorted(m for m in sys.modules\n"
            f"                       if m.split('.')[0] in {NOT_IN_THE_DAEMON!r})))")
    out = subprocess.run([sys.executable, "-c", f"import json\n{code}"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "config error:" in out.stderr and "exit 3" in out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
