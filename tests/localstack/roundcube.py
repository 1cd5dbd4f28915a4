"""Roundcube 1.6 from Debian's packages, served by Apache with mod_php over TLS, in a
temporary directory, against the test Dovecot and Postfix (tests/localstack/mail.py).

The real webmail the engines are compared on (tests/webmail_reference.py). Apache as
Debian runs Roundcube: prefork MPM with mod_php, the package's document root
(/var/lib/roundcube/public_html) with its .htaccess (AllowOverride All, as the
package's apache.conf), and Debian's default modules plus mod_ssl (a webmail is on
HTTPS): mod_deflate compresses as the .htaccess asks; mod_rewrite, mod_expires and
mod_headers are not enabled by default on Debian, so static files carry validators
and no explicit lifetime. PHP's built-in server (`php -S`) is not used: it serves one
request at a time, which would serialize a browser's six parallel fetches.

Nothing of the system's /etc/roundcube or /etc/apache2 is read or changed: Roundcube
takes its configuration from ROUNDCUBE_CONFIG_DIR (set by Apache for PHP), with its
own SQLite database, temp and log directories; dbconfig-common is preseeded not to
create a database (no MySQL, no prompt). The des_key is random per instance and only
written to the config file (mode 0640), never printed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from tests.localstack.mail import MailStack
from tests.localstack.packages import StackError, ensure_packages
from tests.localstack.ports import free_port, wait_port

PACKAGES = {"/usr/share/roundcube/index.php": "roundcube-core",
            "/usr/share/bug/roundcube-sqlite3/control": "roundcube-sqlite3",
            "/usr/sbin/apache2": "libapache2-mod-php", "openssl": "openssl"}
# dbconfig-common: no database set up by the package (the test writes its own SQLite
# file), no web server reconfigured or restarted.
PRESEED = ("roundcube-core roundcube/dbconfig-install boolean false\n"
           "roundcube-core roundcube/reconfigure-webserver multiselect\n"
           "roundcube-core roundcube/restart-webserver boolean false\n")
DOCROOT = Path("/var/lib/roundcube/public_html")
SQL = Path("/usr/share/roundcube/SQL/sqlite.initial.sql")
MODULES = Path("/usr/lib/apache2/modules")
# Debian's apache2 enables these by default (a2enmod's list in the apache2 package),
# with prefork for mod_php; plus ssl and its session cache.
DEFAULT_MODULES = ("mpm_prefork", "access_compat", "alias", "auth_basic", "authn_core",
                   "authn_file", "authz_core", "authz_host", "authz_user", "autoindex",
                   "deflate", "dir", "env", "filter", "mime", "negotiation", "reqtimeout",
                   "setenvif", "socache_shmcb", "ssl")
WWW_USER = "www-data"
START_TIMEOUT_S = 20.0


def _php_module() -> Path:
    found = sorted(glob.glob(str(MODULES / "libphp*.so")))
    if not found:
        raise StackError(f"no PHP module for Apache in {MODULES} (libapache2-mod-php)")
    return Path(found[-1])


def sample_messages(count: int, to: str) -> list[bytes]:
    """An inbox a person has: `count` plain messages from a few senders, a day apart."""
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    out = []
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = f"Sender {i % 7} <sender{i % 7}@other.test>"
        msg["To"] = to
        msg["Subject"] = f"Message {i + 1}: the quarterly report, part {i % 5}"
        msg["Date"] = format_datetime(now - timedelta(hours=7 * i))
        msg["Message-ID"] = make_msgid(domain="other.test")
        msg.set_content(f"Hello,\n\nthis is message {i + 1}.\n" + "Some text. " * 40)
        out.append(msg.as_bytes())
    return out


@dataclass
class Roundcube:
    """`with Roundcube(stack, host=...) as rc:` -> `rc.base` is its https:// URL.

    `stack` is a started MailStack (IMAP with STARTTLS, submission with STARTTLS);
    `cert`/`key` the server's certificate (made here for `host` if not given)."""

    stack: MailStack
    host: str = "127.0.0.1"
    cert: Path | None = None
    key: Path | None = None
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prober-rc-")))

    def __post_init__(self) -> None:
        self.port = free_port(self.host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.dir / "access.log"

    def __enter__(self) -> Roundcube:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        ensure_packages(PACKAGES, preseed=PRESEED)
        module = _php_module()
        for sub in ("config", "temp", "logs", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if self.cert is None or self.key is None:
            self.cert, self.key = self._make_cert()
        self._write_config()
        self._write_db()
        self._write_apache(module)
        # PHP runs as www-data: it must reach the database, temp and log directories
        for p in (self.dir, *self.dir.parents):
            if p == Path("/"):
                break
            if p.stat().st_mode & 0o001 == 0:
                p.chmod(p.stat().st_mode | 0o711)
        for path in (self.dir / "roundcube.db", self.dir / "temp", self.dir / "logs",
                     self.dir):
            shutil.chown(path, user=WWW_USER, group=WWW_USER)
        log = (self.dir / "apache.out").open("wb")
        self._proc = subprocess.Popen(
            ["/usr/sbin/apache2", "-f", str(self.dir / "httpd.conf"), "-DFOREGROUND"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not wait_port(self.host, self.port, 0.5):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise StackError(f"apache2 did not listen on {self.host}:{self.port}: "
                                 f"{self._tail('apache.out')} {self._tail('error.log')}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # SIGTERM: the parent stops its children and exits
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(5)
        self._proc = None
        if os.environ.get("PROBER_KEEP_STACK") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- what the tests read --------------------------------------------------------------
    def fill_inbox(self, user: str, count: int = 30) -> None:
        for message in sample_messages(count, self.stack.user(user).address):
            self.stack.deliver_local(user, message)

    def requests(self) -> list[str]:
        """The request targets Apache served since the last `clear_requests`, as logged
        ("GET /skins/elastic/ui.min.js?s=... HTTP/1.1 200 1234 1796035798941123 2100": status,
        body bytes, when it came in and how long it took to serve, in microseconds)."""
        if not self.access_log.exists():
            return []
        return [line for line in self.access_log.read_text().splitlines() if line]

    def clear_requests(self) -> None:
        # Apache holds the file open for appending: truncating is seen at once
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.access_log, 0)

    def errors(self) -> str:
        """Roundcube's own error log (IMAP login failures, PHP errors)."""
        path = self.dir / "logs" / "errors.log"
        return path.read_text() if path.exists() else ""

    # -- writing the configs --------------------------------------------------------------
    def _make_cert(self) -> tuple[Path, Path]:
        cert, key = self.dir / "cert.pem", self.dir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-keyout", str(key), "-out", str(cert), "-addext",
             f"subjectAltName=DNS:localhost,IP:{self.host}"],
            check=True, capture_output=True)
        return cert, key

    def _write_config(self) -> None:
        conf = self.dir / "config"
        for name in ("defaults.inc.php", "mimetypes.php"):
            target = Path("/etc/roundcube") / name
            if target.exists():
                (conf / name).symlink_to(target)
        s = self.stack
        tls = (f"['ssl' => ['cafile' => '{s.cert_file}', 'peer_name' => 'localhost', "
               "'verify_peer' => true, 'verify_peer_name' => true]]")
        des_key = secrets.token_urlsafe(18)[:24]  # 24 characters, as Roundcube wants
        (conf / "config.inc.php").write_text(f"""<?php
$config = [];
$config['db_dsnw'] = 'sqlite:///{self.dir}/roundcube.db?mode=0640';
$config['imap_host'] = 'tls://{s.host}:{s.imap_port}';
$config['imap_conn_options'] = {tls};
$config['smtp_host'] = 'tls://{s.host}:{s.submission_port}';
$config['smtp_conn_options'] = {tls};
$config['smtp_user'] = '%u';
$config['smtp_pass'] = '%p';
$config['temp_dir'] = '{self.dir}/temp/';
$config['log_dir'] = '{self.dir}/logs/';
$config['support_url'] = '';
$config['product_name'] = 'Roundcube Webmail';
$config['des_key'] = '{des_key}';
$config['plugins'] = [];
$config['skin'] = 'elastic';
$config['enable_spellcheck'] = false;
$config['enable_installer'] = false;
""")
        (conf / "config.inc.php").chmod(0o640)
        shutil.chown(conf / "config.inc.php", group=WWW_USER)

    def _write_db(self) -> None:
        db = sqlite3.connect(self.dir / "roundcube.db")
        try:
            db.executescript(SQL.read_text())
            db.commit()
        finally:
            db.close()

    def _write_apache(self, php: Path) -> None:
        loads = "\n".join(f"LoadModule {m}_module {MODULES / f'mod_{m}.so'}"
                          for m in DEFAULT_MODULES)
        (self.dir / "httpd.conf").write_text(f"""\
ServerRoot {self.dir}
ServerName localhost
DefaultRuntimeDir {self.dir / "run"}
PidFile {self.dir / "run" / "httpd.pid"}
Mutex file:{self.dir / "run"} default
User {WWW_USER}
Group {WWW_USER}
{loads}
LoadModule php_module {php}
ErrorLog {self.dir / "error.log"}
LogLevel warn
LogFormat "%r %>s %B %{{usec}}t %D" requests
CustomLog {self.access_log} requests
TypesConfig /etc/mime.types
AddType application/x-httpd-php .php
# Debian's apache2.conf and mpm_prefork.conf
Timeout 300
KeepAlive On
MaxKeepAliveRequests 100
KeepAliveTimeout 5
StartServers 5
MinSpareServers 5
MaxSpareServers 10
MaxRequestWorkers 150
DirectoryIndex index.html index.php
Listen {self.host}:{self.port}
SSLEngine on
SSLCertificateFile {self.cert}
SSLCertificateKeyFile {self.key}
SSLSessionCache shmcb:{self.dir / "run" / "ssl_scache"}(512000)
DocumentRoot {DOCROOT}
SetEnv ROUNDCUBE_CONFIG_DIR {self.dir / "config"}
<FilesMatch "\\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
<Directory {DOCROOT}/>
    Options +FollowSymLinks
    AllowOverride All
    Require all granted
</Directory>
""")

    def _tail(self, name: str) -> str:
        path = self.dir / name
        if not path.exists():
            return ""
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-5:])
