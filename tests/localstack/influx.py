"""Real InfluxDB 1.6.7 and VictoriaMetrics servers on loopback, for tests and benches.

Both run from Debian's packages, with their data in a directory of the caller's choosing
and their HTTP API on a free 127.0.0.1 port. InfluxDB 1.6.7 answers `/write` (v1) and
InfluxQL on `/query`; VictoriaMetrics answers `/api/v2/write` (what influxdb-client sends)
and gives the points back through `/api/v1/export`.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import httpx

from tests.localstack.packages import StackError, ensure_packages
from tests.localstack.ports import free_port

PACKAGES = {"influxd": "influxdb", "victoria-metrics": "victoria-metrics", "openssl": "openssl"}


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key; the certificate is its own CA,
    so clients trust it by naming it as their CA file."""
    cert, key = directory / "server.crt", directory / "server.key"
    if cert.exists() and key.exists():
        return cert, key
    proc = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "7", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise StackError(f"openssl req failed: {proc.stderr.strip()[-300:]}")
    return cert, key


class _Server:
    """A server process with a data directory, a log file and a loopback HTTP port."""

    name = "server"
    binary = ""
    ready_path = "/"
    ready_status = 200
    # binary -> Debian package, installed when missing
    packages: ClassVar[Mapping[str, str]] = PACKAGES

    def __init__(self, workdir: str | Path, tls: bool = False) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def url(self) -> str:
        if not self.port:
            raise StackError(f"{self.name} has not been started")
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def cert_file(self) -> Path:
        """The server's self-signed certificate (with tls=True): a client's CA file."""
        return self.workdir / "server.crt"

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.cert_file)) if self.tls else True

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.binary}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write config files before the first start (and again on a restart: idempotent)."""

    def _after_first_start(self) -> None:
        """Server-side setup that needs the API (users, databases)."""

    def start(self, timeout: float = 20.0) -> _Server:
        if self.running:
            return self
        ensure_packages(self.packages)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            make_self_signed(self.workdir)
        first = self.port == 0
        if first:
            # The port is kept across stop()/start() so clients configured with .url
            # reach the same server after an outage test restarts it.
            self.port = free_port()
        self._prepare()
        self._log_file = self.log_path.open("ab")
        self._proc = subprocess.Popen(self._command(), stdout=self._log_file,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self._wait_ready(timeout)
        if first:
            self._after_first_start()
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise StackError(f"{self.name} exited with status {self._proc.returncode} "
                                 f"while starting: {self._log_tail()}")
            try:
                r = httpx.get(self.url + self.ready_path, timeout=1.0, verify=self._verify())
                if r.status_code == self.ready_status:
                    return
                last = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.02)
        self.stop()
        raise StackError(f"{self.name} not ready on {self.url} after {timeout:.0f} s ({last}): "
                         f"{self._log_tail()}")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> _Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class InfluxDB1(_Server):
    """InfluxDB 1.6.7 (`influxd`). With `auth=True`, HTTP auth is on and an admin user exists."""

    name = "InfluxDB 1.6.7"
    binary = "influxd"
    ready_path = "/ping"
    ready_status = 204
    packages: ClassVar[Mapping[str, str]] = {"influxd": "influxdb", "openssl": "openssl"}

    def __init__(self, workdir: str | Path, auth: bool = False, admin_user: str = "admin",
                 admin_password: str = "admin-secret", tls: bool = False) -> None:
        super().__init__(workdir, tls)
        self.auth = auth
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.rpc_port = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "influxdb.conf"

    def _prepare(self) -> None:
        if not self.rpc_port:
            self.rpc_port = free_port()
        d = self.workdir
        # Every listener is pinned to loopback: by default the RPC service binds 8088 and
        # [ifql] 8082 on all interfaces (docs/field-notes.md), and two instances would collide.
        self.config_path.write_text(f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{d}/meta"
  logging-enabled = false

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  index-version = "inmem"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  https-enabled = {"true" if self.tls else "false"}
  https-certificate = "{d}/server.crt"
  https-private-key = "{d}/server.key"
  log-enabled = false
  pprof-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false
  bind-address = "127.0.0.1:0"

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
""")

    def _command(self) -> list[str]:
        return ["influxd", "-config", str(self.config_path)]

    def _after_first_start(self) -> None:
        if self.auth:
            # With auth on and no user yet, InfluxDB 1.x accepts exactly this one statement
            # without credentials: creating the first admin.
            pw = self.admin_password.replace("'", "\\'")
            self._post_query(f"CREATE USER \"{self.admin_user}\" WITH PASSWORD '{pw}' "
                             "WITH ALL PRIVILEGES", auth=False)

    def _auth(self) -> tuple[str, str] | None:
        return (self.admin_user, self.admin_password) if self.auth else None

    def _post_query(self, q: str, db: str | None = None, auth: bool = True) -> dict[str, Any]:
        params = {"q": q}
        if db:
            params["db"] = db
        r = httpx.post(self.url + "/query", data=params, auth=self._auth() if auth else None,
                       timeout=10.0, verify=self._verify())
        return self._result(r, q)

    def _result(self, r: httpx.Response, q: str) -> dict[str, Any]:
        try:
            body = r.json()
        except json.JSONDecodeError:
            raise StackError(f"{self.name} answered {q!r} with HTTP {r.status_code}: "
                             f"{r.text[:200]}") from None
        if r.status_code != 200 or "error" in body:
            raise StackError(f"{self.name} answered {q!r} with HTTP {r.status_code}: "
                             f"{body.get('error', body)}")
        for result in body.get("results", []):
            if "error" in result:
                raise StackError(f"{self.name} refused {q!r}: {result['error']}")
        return dict(body)

    def query(self, influxql: str, db: str | None = None, epoch: str = "ns") -> dict[str, Any]:
        """Run InfluxQL over GET /query; timestamps as integers in `epoch` units (ns default)."""
        params = {"q": influxql, "epoch": epoch}
        if db:
            params["db"] = db
        r = httpx.get(self.url + "/query", params=params, auth=self._auth(), timeout=30.0,
                      verify=self._verify())
        return self._result(r, influxql)

    def rows(self, influxql: str, db: str | None = None) -> list[dict[str, Any]]:
        """The first statement's result as flat dicts: columns, plus the series' tags."""
        out: list[dict[str, Any]] = []
        for result in self.query(influxql, db).get("results", [])[:1]:
            for series in result.get("series", []):
                tags = series.get("tags", {})
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(tags)
                    row["_measurement"] = series.get("name")
                    out.append(row)
        return out

    def create_database(self, name: str) -> None:
        self._post_query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self._post_query(f'DROP DATABASE "{name}"')

    def create_user(self, name: str, password: str, admin: bool = False) -> None:
        pw = password.replace("'", "\\'")
        extra = " WITH ALL PRIVILEGES" if admin else ""
        self._post_query(f"CREATE USER \"{name}\" WITH PASSWORD '{pw}'{extra}")

    def grant(self, privilege: str, database: str, user: str) -> None:
        self._post_query(f'GRANT {privilege} ON "{database}" TO "{user}"')


class VictoriaMetrics(_Server):
    """VictoriaMetrics single-node. Keeps millisecond timestamps and numeric values only."""

    name = "VictoriaMetrics"
    binary = "victoria-metrics"
    ready_path = "/health"

    def __init__(self, workdir: str | Path, username: str | None = None,
                 password: str | None = None, tls: bool = False) -> None:
        super().__init__(workdir, tls)
        self.username = username
        self.password = password

    def _command(self) -> list[str]:
        cmd = ["victoria-metrics", f"-storageDataPath={self.workdir / 'data'}",
               f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
               "-loggerLevel=WARN", "-memory.allowedBytes=64MB"]
        if self.tls:
            cmd += ["-tls", f"-tlsCertFile={self.cert_file}",
                    f"-tlsKeyFile={self.workdir / 'server.key'}"]
        if self.username:
            cmd += [f"-httpAuth.username={self.username}",
                    f"-httpAuth.password={self.password or ''}"]
        return cmd

    def _auth(self) -> tuple[str, str] | None:
        return (self.username, self.password or "") if self.username else None

    def flush(self) -> None:
        """Make just-written points visible to export (VM buffers them for up to ~1 s)."""
        r = httpx.get(self.url + "/internal/force_flush", auth=self._auth(), timeout=10.0,
                      verify=self._verify())
        if r.status_code != 200:
            raise StackError(f"{self.name} /internal/force_flush: HTTP {r.status_code} {r.text}")

    def export(self, match: str = '{__name__!=""}', start: str | None = None,
               end: str | None = None) -> list[dict[str, Any]]:
        """The series matching `match`, as /api/v1/export's JSON lines (ms timestamps)."""
        self.flush()
        params: dict[str, str] = {"match[]": match}
        if start:
            params["start"] = start
        if end:
            params["end"] = end
        r = httpx.get(self.url + "/api/v1/export", params=params, auth=self._auth(),
                      timeout=30.0, verify=self._verify())
        if r.status_code != 200:
            raise StackError(f"{self.name} /api/v1/export: HTTP {r.status_code} {r.text[:200]}")
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

