"""The systemd units: `systemd-analyze verify` accepts them; they are hardened as promised."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.localstack.packages import ensure_packages

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("prober.service", "prober@.service")
INSTALLED_BINARY = "/opt/prober/bin/prober"

# What README "Run it on a probe host" promises of both units.
HARDENING = {
    "Type": "notify",
    "WatchdogSec": "180s",
    "Restart": "always",
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}


def settings(unit: str) -> dict[str, list[str]]:
    """The [Service] section's assignments, key -> values in order (comments skipped)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in (ROOT / "systemd" / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def prober_script() -> Path:
    script = Path(sys.executable).parent / "prober"
    assert script.is_file(), f"the venv's prober script is missing: {script}"
    return script


def installable_copies(dest: Path) -> list[Path]:
    """The units as installed, with ExecStart pointing at this venv's prober script."""
    copies = []
    for unit in UNITS:
        text = (ROOT / "systemd" / unit).read_text()
        assert INSTALLED_BINARY in text
        copy = dest / unit
        copy.write_text(text.replace(INSTALLED_BINARY, str(prober_script())))
        copies.append(copy)
    return copies


def verify(cwd: Path, *units: str) -> subprocess.CompletedProcess[str]:
    ensure_packages({"systemd-analyze": "systemd"})
    exe = shutil.which("systemd-analyze", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert exe is not None
    # The Documentation= man page is checked too, where man is there to check it.
    man = "--man=yes" if shutil.which("man") else "--man=no"
    return subprocess.run([exe, "verify", man, *units], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def complaints(proc: subprocess.CompletedProcess[str], dest: Path) -> list[str]:
    """Output lines about our units (the host may add unrelated noise about itself)."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return [ln for ln in lines if "prober" in ln or str(dest) in ln]


def test_both_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    installable_copies(tmp_path)
    # the template on its own, and an instance of it (resolves %i)
    proc = verify(tmp_path, "./prober.service", "./prober@.service", "./prober@provider-a.service")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert complaints(proc, tmp_path) == []


def test_verify_output_is_what_catches_a_bad_setting(tmp_path: Path) -> None:
    # systemd-analyze exits 0 on unknown keys and bad values ("ignoring"): the test above
    # therefore looks at the output too; this shows the output does name the unit.
    for copy in installable_copies(tmp_path):
        copy.write_text(copy.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    proc = verify(tmp_path, "./prober.service", "./prober@.service")
    found = complaints(proc, tmp_path)
    assert any("prober.service" in ln and "protect system" in ln.lower() for ln in found), found
    assert any("prober@.service" in ln and "protect system" in ln.lower() for ln in found), found


@pytest.mark.parametrize("unit", UNITS)
def test_the_hardening_the_readme_promises_is_in_the_unit(unit: str) -> None:
    s = settings(unit)
    for key, value in HARDENING.items():
        assert s.get(key) == [value], f"{unit}: {key}={s.get(key)} (expected {value!r})"
    assert s["StateDirectory"][0].split("/")[0] == "prober"
    assert s["StateDirectoryMode"] == ["0700"]
    assert s["NotifyAccess"] == ["main"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    exec_start = s["ExecStart"][0].split()
    assert exec_start[:2] == [INSTALLED_BINARY, "run"]
    # no secret in the unit itself: credentials only by LoadCredential= in a drop-in
    assert "LoadCredential" not in s and "Environment" not in s


def test_the_plain_unit_uses_the_default_config_and_state_directory() -> None:
    s = settings("prober.service")
    assert s["ExecStart"] == [f"{INSTALLED_BINARY} run -c /etc/prober/probes.toml"]
    assert s["StateDirectory"] == ["prober"]


def test_the_template_uses_its_instance_name_for_config_and_state() -> None:
    s = settings("prober@.service")
    assert s["ExecStart"] == [f"{INSTALLED_BINARY} run -c /etc/prober/%i.toml"]
    assert s["StateDirectory"] == ["prober/%i"]
    description = [ln for ln in (ROOT / "systemd" / "prober@.service").read_text().splitlines()
                   if ln.startswith("Description=")]
    assert description and "%i" in description[0]


def test_the_units_differ_only_where_the_instance_matters() -> None:
    plain, template = settings("prober.service"), settings("prober@.service")
    differ = {k for k in plain.keys() | template.keys() if plain.get(k) != template.get(k)}
    assert differ == {"ExecStart", "StateDirectory"}
