"""The systemd units: `systemd-analyze verify` accepts them; they are hardened as promised."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
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
    "User": "prober",
    "Group": "prober",
    "ConfigurationDirectoryMode": "0750",
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


# --- the README's install, as the unit's user would meet it -------------------------------

SERVICE_UID = SERVICE_GID = 61234  # no such user here: a bare unprivileged uid and gid


def readme_install_modes() -> dict[str, tuple[int, str, str]]:
    """`install ... -m MODE -o OWNER -g GROUP ... PATH` lines of the README's install block:
    path -> (mode, owner, group). The test applies exactly these."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Run it on a probe host", 1)[1].split("```", 2)[1]
    modes = {}
    for line in block.splitlines():
        m = re.match(r"install (-d )?-m (0\d{3}) -o (\S+) -g (\S+) (.+?)(\s+#.*)?$", line)
        if m:
            modes[m[5].split()[-1]] = (int(m[2], 8), m[3], m[4])
    return modes


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Path]:
    """/etc/prober and /var/lib/prober as the README and the unit make them, under a fresh
    root that any uid may traverse (pytest's own tmp is root's only)."""
    try:
        pwd.getpwuid(SERVICE_UID)
        pytest.fail(f"uid {SERVICE_UID} exists here; pick another for the test")
    except KeyError:
        pass
    root = Path(tempfile.mkdtemp(prefix="prober-unit-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _apply(path: Path, mode: int, owner: str, group: str) -> None:
    ids = {"root": 0, "prober": SERVICE_UID}
    os.chown(path, ids[owner], {"root": 0, "prober": SERVICE_GID}[group])
    path.chmod(mode)


def _as_service(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop to the service's uid"
    return subprocess.run([setpriv, f"--reuid={SERVICE_UID}", f"--regid={SERVICE_GID}",
                           "--clear-groups", "--", sys.executable, "-m", "prober.cli", *args],
                          capture_output=True, text=True, timeout=120, env=env, cwd="/")


def test_the_agent_runs_as_the_units_user_against_the_readmes_file_modes(
        installed: Path) -> None:
    modes = readme_install_modes()
    assert set(modes) == {"/etc/prober", "/etc/prober/credentials", "/etc/prober/probes.toml"}
    etc, state = installed / "etc" / "prober", installed / "var" / "lib" / "prober"
    etc.mkdir(parents=True)
    (etc / "credentials").mkdir()
    state.mkdir(parents=True)
    for p in (installed / "etc", installed / "var", installed / "var" / "lib"):
        p.chmod(0o755)
    # the secret as LoadCredential= hands it over: a private copy the service's user reads
    creds = installed / "run" / "credentials" / "prober.service"
    creds.mkdir(parents=True)
    (creds / "corp").write_text("the-password")
    for p in (installed / "run", installed / "run" / "credentials"):
        p.chmod(0o755)
    os.chown(creds, SERVICE_UID, SERVICE_GID)
    creds.chmod(0o500)
    os.chown(creds / "corp", SERVICE_UID, SERVICE_GID)
    (creds / "corp").chmod(0o400)
    config = etc / "probes.toml"
    config.write_text(f"""[vantage]
name = "unit"
state_dir = "{state}"
[agent]
tick_s = 0.5
[timeouts]
connect_s = 1
command_s = 1
[[mailbox]]
name = "corp"
address = "probe@corp.test"
password_credential = "corp"
allow_plaintext = true
[mailbox.smtp]
host = "127.0.0.1"
port = 9
tls = "none"
[mailbox.imap]
host = "127.0.0.1"
port = 9
tls = "none"
""")
    for path, (mode, owner, group) in modes.items():
        _apply(installed / path.lstrip("/"), mode, owner, group)
    # StateDirectory=prober, StateDirectoryMode=0700: owned by the unit's user
    os.chown(state, SERVICE_UID, SERVICE_GID)
    state.chmod(0o700)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8",
           "CREDENTIALS_DIRECTORY": str(creds), "PYTHONPATH": str(ROOT)}

    checked = _as_service("config", "check", "-c", str(config), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "the-password" not in checked.stdout + checked.stderr
    ran = _as_service("run", "--ticks", "2", "-c", str(config), env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    db = state / "prober.db"
    assert db.stat().st_uid == SERVICE_UID and db.stat().st_mode & 0o077 == 0

    # The control: the modes as the README had them (root:root), which a DynamicUser met.
    os.chown(etc, 0, 0)
    refused = _as_service("config", "check", "-c", str(config), env=env)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert f"{config}: cannot read: Permission denied" in refused.stderr
    assert "Traceback" not in refused.stderr
