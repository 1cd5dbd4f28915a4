"""[spool] and [influx] in probes.toml: defaults, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from prober.config import ConfigError, parse


def cfg(**sections: dict) -> dict:
    return {"vantage": {"name": "v1", "state_dir": "/var/lib/prober-test"}, **sections}


def test_defaults_without_influx_keep_points_locally() -> None:
    c = parse(cfg())
    assert c.influx is None
    assert c.spool.path == "/var/lib/prober-test/prober.db"
    assert c.spool.retain is True
    assert c.spool.max_age_s >= 31 * 86400  # a whole month can be scored from the spool


def test_influx_v2_defaults_and_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "s3cret-token")
    c = parse(cfg(influx={"url": "https://influx.example.net:8086/", "bucket": "mail",
                          "org": "acme", "token_env": "INFLUX_TOKEN"}))
    i = c.influx
    assert i is not None
    assert (i.api, i.url, i.bucket, i.org, i.tls_verify) == (
        "v2", "https://influx.example.net:8086", "mail", "acme", True)
    assert i.token is not None and i.token.reveal() == "s3cret-token"
    assert "s3cret" not in repr(i)
    assert c.spool.retain is False


def test_influx_v1_with_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    (tmp_path / "pw").chmod(0o600)
    c = parse(cfg(influx={"api": "v1", "url": "http://127.0.0.1:8086", "database": "mail",
                          "retention_policy": "month", "username": "prober",
                          "password_file": str(tmp_path / "pw")}), str(tmp_path / "p.toml"))
    i = c.influx
    assert i is not None and i.password is not None
    assert (i.database, i.retention_policy, i.username, i.password.reveal()) == (
        "mail", "month", "prober", "hunter2")
    assert i.target == "http://127.0.0.1:8086 database mail.month"


@pytest.mark.parametrize(("influx", "key", "text"), [
    ({"url": "http://127.0.0.1:1"}, "influx.bucket", "is required"),
    ({"api": "v1", "url": "http://127.0.0.1:1"}, "influx.database", "is required"),
    ({"api": "v3", "url": "http://127.0.0.1:1"}, "influx.api", "must be one of"),
    ({"url": "ftp://x", "bucket": "b"}, "influx.url", "http:// or https://"),
    ({"url": "http://influx.example.net", "bucket": "b"}, "influx.url", "clear text"),
    ({"url": "http://127.0.0.1:1", "bucket": "b", "database": "d"}, "influx.database",
     'api = "v1"'),
    ({"api": "v1", "url": "http://127.0.0.1:1", "database": "d", "token_env": "X"},
     "influx.token_env", 'api = "v2"'),
    ({"api": "v1", "url": "http://127.0.0.1:1", "database": "d", "username": "u"},
     "influx.password_env", "is required"),
    ({"url": "http://127.0.0.1:1", "bucket": "b", "token": "inline"}, "influx.token",
     "not accepted inline"),
    ({"url": "https://h", "bucket": "b", "ca_file": "/nonexistent/ca.pem"}, "influx.ca_file",
     "no such file"),
    ({"url": "http://127.0.0.1:1", "bucket": "b", "batch_size": 0}, "influx.batch_size",
     ">= 1"),
    ({"url": "http://127.0.0.1:1", "bucket": "b", "backoff_min_s": 10, "backoff_max_s": 1},
     "influx.backoff_max_s", ">= backoff_min_s"),
    ({"url": "http://127.0.0.1:1", "bucket": "b", "bukcet": "typo"}, "influx.bukcet",
     "unknown key"),
])
def test_influx_errors_name_the_key(influx: dict, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(cfg(influx=influx), "probes.toml")
    assert f"probes.toml: {key}: " in str(info.value)
    assert text in str(info.value)


def test_plaintext_to_a_remote_host_needs_opt_in() -> None:
    c = parse(cfg(influx={"url": "http://influx.example.net:8086", "bucket": "b",
                          "allow_plaintext": True}))
    assert c.influx is not None and c.influx.url.startswith("http://")


def test_spool_section() -> None:
    c = parse(cfg(spool={"path": "/srv/p.db", "max_bytes": 100 * 2**20, "max_age_s": 86400,
                         "min_free_bytes": 0, "ballast_bytes": 0}))
    assert (c.spool.path, c.spool.max_bytes, c.spool.max_age_s, c.spool.min_free_bytes,
            c.spool.ballast_bytes) == ("/srv/p.db", 100 * 2**20, 86400.0, 0, 0)


@pytest.mark.parametrize(("spool", "key"), [
    ({"max_bytes": 10}, "spool.max_bytes"),
    ({"max_age_s": 1}, "spool.max_age_s"),
    ({"min_free_bytes": -1}, "spool.min_free_bytes"),
    ({"pth": "/x"}, "spool.pth"),
])
def test_spool_errors_name_the_key(spool: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"probes.toml: {key}: "):
        parse(cfg(spool=spool), "probes.toml")
