"""The test stack's package installer: one `apt-get update` serves every process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.localstack import packages


def test_apt_update_runs_once_an_hour_across_processes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(packages, "_UPDATED", tmp_path / "updated")
    monkeypatch.setattr(packages, "POLICY_RC", tmp_path / "policy-rc.d")
    monkeypatch.setattr(packages, "_run", lambda cmd, env: ran.append(cmd))
    # debconf-set-selections: not the system's debconf database from a unit test
    monkeypatch.setattr(packages, "subprocess", SimpleNamespace(run=lambda *a, **k: None))

    packages._apt_install(["postfix"])
    packages._apt_install(["chromium"])  # another worker, later: the stamp is on disk
    assert [c[:2] for c in ran] == [["apt-get", "update"], ["apt-get", "install"],
                                    ["apt-get", "install"]]
    assert not (tmp_path / "policy-rc.d").exists()  # put back as found

    hour_ago = time.time() - packages.UPDATE_EVERY_S - 1
    os.utime(tmp_path / "updated", (hour_ago, hour_ago))
    ran.clear()
    packages._apt_install(["influxdb"])
    assert [c[:2] for c in ran] == [["apt-get", "update"], ["apt-get", "install"]]
