"""The deliver room's settings: `[spool]` and `[influx]`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from prober.config.hosts import is_loopback
from prober.config.reader import Secret, Section

MiB = 1024 * 1024
DAY_S = 86400.0


@dataclass(frozen=True)
class SpoolSettings:
    path: str
    # Used size of the database (pages in use, WAL excluded) above which the oldest points
    # are pruned (no [influx]) or new points are refused (with [influx]: nothing unsent is
    # ever dropped).
    max_bytes: int = 2048 * MiB
    # Points older than this are pruned when no [influx] is configured: long enough to
    # score a whole calendar month from the local spool.
    max_age_s: float = 40 * DAY_S
    # Free space on the spool's filesystem below which new points are refused, loudly.
    min_free_bytes: int = 64 * MiB
    # A file of this size sits next to the database and is deleted when the disk fills,
    # so SQLite can still delete delivered rows and checkpoint its WAL.
    ballast_bytes: int = 8 * MiB
    # True when no [influx] is configured: the spool is the store, pruned by size and age.
    retain: bool = False


@dataclass(frozen=True)
class InfluxSettings:
    api: str  # "v2" (/api/v2/write, influxdb-client) or "v1" (/write, InfluxDB 1.x < 1.8)
    url: str
    token: Secret | None = None
    org: str = "-"
    bucket: str | None = None
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = None
    tls_verify: bool = True
    batch_size: int = 5000
    timeout_s: float = 10.0
    backoff_min_s: float = 1.0
    # the longest wait between write attempts, so also how long after InfluxDB's return
    # the spooled points start to flow again
    backoff_max_s: float = 8.0
    interval_s: float = 1.0

    @property
    def target(self) -> str:
        """Where points go, for humans: URL plus bucket or database (no secrets)."""
        if self.api == "v2":
            return f"{self.url} bucket {self.bucket}"
        rp = f".{self.retention_policy}" if self.retention_policy else ""
        return f"{self.url} database {self.database}{rp}"


def parse_spool(root: Section, state_dir: str) -> SpoolSettings:
    retain = not root.has("influx")
    s = root.table("spool")
    path = f"{state_dir}/prober.db"
    if s is None:
        return SpoolSettings(path=path, retain=retain)
    spool = SpoolSettings(
        path=s.text("path", path),
        max_bytes=s.integer("max_bytes", SpoolSettings.max_bytes, minimum=MiB,
                            maximum=1024 * 1024 * MiB),
        max_age_s=s.number("max_age_s", SpoolSettings.max_age_s, minimum=60,
                           maximum=3660 * DAY_S),
        min_free_bytes=s.integer("min_free_bytes", SpoolSettings.min_free_bytes, minimum=0,
                                 maximum=1024 * 1024 * MiB),
        ballast_bytes=s.integer("ballast_bytes", SpoolSettings.ballast_bytes, minimum=0,
                            maximum=1024 * MiB),
        retain=retain,
    )
    s.check_unknown()
    return spool


def parse_influx(root: Section) -> InfluxSettings | None:
    s = root.table("influx")
    if s is None:
        return None
    api = s.choice("api", ("v2", "v1"), "v2")
    url = s.text("url").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise s.error("url", f"{url!r} must be an http:// or https:// URL with a host")
    allow_plaintext = s.flag("allow_plaintext", False)
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_plaintext:
        raise s.error("url", "http:// sends the token or password in clear text over the "
                      "network; use https://, or set allow_plaintext = true to accept that")
    ca_file = s.existing_file("ca_file")
    common = dict(
        ca_file=ca_file,
        tls_verify=s.flag("tls_verify", True),
        batch_size=s.integer("batch_size", 5000, minimum=1, maximum=100_000),
        timeout_s=s.number("timeout_s", 10.0, minimum=0.1, maximum=600),
        backoff_min_s=s.number("backoff_min_s", 1.0, minimum=0.01, maximum=3600),
        backoff_max_s=s.number("backoff_max_s", 8.0, minimum=0.01, maximum=DAY_S),
        interval_s=s.number("interval_s", 1.0, minimum=0.01, maximum=3600),
    )
    if common["backoff_max_s"] < common["backoff_min_s"]:  # type: ignore[operator]
        raise s.error("backoff_max_s", f"must be >= backoff_min_s ({common['backoff_min_s']})")
    if api == "v2":
        for key in ("database", "retention_policy", "username", "password_env",
                    "password_file", "password_credential"):
            if s.has(key):
                raise s.error(key, 'belongs to api = "v1"; for "v2" use bucket, org and token')
        influx = InfluxSettings(
            api=api, url=url,
            bucket=s.text("bucket"),
            org=s.text("org", "-"),
            token=s.secret("token", required=False),
            **common,  # type: ignore[arg-type]
        )
    else:
        for key in ("bucket", "org", "token_env", "token_file", "token_credential"):
            if s.has(key):
                raise s.error(key, 'belongs to api = "v2"; for "v1" use database, '
                              "retention_policy, username and password")
        username = s.text("username", None)
        password = s.secret("password", required=False)
        if password is not None and username is None:
            raise s.error("username", "is required when a password is given")
        if username is not None and password is None:
            raise s.error("password_env", "one of password_env, password_file, "
                          f"password_credential is required with username = {username!r}")
        influx = InfluxSettings(
            api=api, url=url,
            database=s.text("database"),
            retention_policy=s.text("retention_policy", None),
            username=username,
            password=password,
            **common,  # type: ignore[arg-type]
        )
    s.check_unknown()
    return influx
