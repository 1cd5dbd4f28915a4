"""A real Postfix + Dovecot on loopback, in a temporary directory, for tests and the demo.

Postfix takes submissions (STARTTLS on one port, implicit TLS on another, SASL through
Dovecot's auth socket) and hands mail to Dovecot over LMTP; Dovecot serves IMAP (STARTTLS
and IMAPS) from Maildirs. Nothing of the system's own /etc/postfix or /etc/dovecot is read
or touched. Facts behind the choices are in docs/field-notes.md ("A real mail stack on loopback").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.localstack.packages import StackError, ensure_packages
from tests.localstack.ports import free_port, wait_port

DOMAIN = "example.test"
OTHER_DOMAIN = "other.test"
HOLD_HEADER = "X-Prober-Test-Hold"
MAILBOX_UID = 65534

PACKAGES = {"postfix": "postfix", "dovecot": "dovecot-imapd",
            "/usr/lib/dovecot/lmtp": "dovecot-lmtpd", "openssl": "openssl"}


@dataclass
class User:
    name: str
    password: str
    domain: str = DOMAIN  # set by the stack the user lives on

    @property
    def address(self) -> str:
        return self.name if "@" in self.name else f"{self.name}@{self.domain}"


@dataclass
class MailStack:
    """Start with `with MailStack() as stack:` or start()/stop()."""

    users: list[User] = field(default_factory=lambda: [
        User("alice", "alice-secret-1"), User("bob", "bob-secret-2"),
        User("carol", "carol-secret-3")])
    idle: bool = True  # False: Dovecot does not announce IDLE (poll-fallback tests)
    # Dovecot's announced capabilities, e.g. without UIDPLUS or MOVE (cleanup fallbacks);
    # None: Dovecot's own (less IDLE when idle is False)
    imap_capability: str | None = None
    workdir: Path | None = None
    host: str = "127.0.0.1"
    # Two stacks make two providers: each its own domain, and mail for the other's domain
    # relayed over SMTP to its port 25-style listener (relay = {domain: smtp_port}).
    domain: str = DOMAIN
    relay: dict[str, int] = field(default_factory=dict)
    cert_days: int = 30  # validity of the servers' self-signed certificate
    # {user: "spf=pass ...; dkim=...; dmarc=..."}: Postfix prepends an Authentication-Results
    # field with these verdicts (authserv-id = the stack's hostname) to mail from that user,
    # as a receiving provider's filters do
    auth_results: dict[str, str] = field(default_factory=dict)
    # Dovecot (and so Postfix's SASL through it) also takes XOAUTH2 and OAUTHBEARER, the
    # token checked at this OAuth2 introspection URL (RFC 7662)
    oauth2_introspection_url: str | None = None
    # True: submissions pass a before-queue content filter (tests/localstack/filter.py) at
    # filter_port, which hands what it lets through to the reinjection listener
    content_filter: bool = False

    def __post_init__(self) -> None:
        self.hostname = f"mail.{self.domain}"
        for user in self.users:
            user.domain = self.domain
        self._own_dir = self.workdir is None
        self.dir = Path(self.workdir or tempfile.mkdtemp(prefix="prober-mail-"))
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.smtp_port = free_port()
        self.imap_port = free_port()
        self.imaps_port = free_port()
        self.refused_address = f"gone@{self.domain}"
        self.filter_port = free_port()
        self.reinject_port = free_port()
        self.started = False

    # -- paths ----------------------------------------------------------------------------
    @property
    def postfix_dir(self) -> Path:
        return self.dir / "postfix"

    @property
    def queue_dir(self) -> Path:
        return self.dir / "spool"

    @property
    def dovecot_conf(self) -> Path:
        return self.dir / "dovecot" / "dovecot.conf"

    @property
    def cert_file(self) -> Path:
        return self.dir / "tls" / "cert.pem"

    def user(self, name: str) -> User:
        return next(u for u in self.users if u.name == name)

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> MailStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ensure_packages(PACKAGES)
        # Postfix's and Dovecot's unprivileged processes must traverse every level.
        for p in (self.dir, *self.dir.parents):
            if p == Path("/"):
                break
            if p.stat().st_mode & 0o005 != 0o005:
                p.chmod(p.stat().st_mode | 0o755)
        self._write_tls()
        self._write_dovecot()
        self._write_postfix()
        self.start_dovecot()
        self._run(["postfix", "-c", str(self.postfix_dir), "start"], "postfix start")
        for port in (self.submission_port, self.submissions_port, self.smtp_port):
            if not wait_port(self.host, port, 15):
                raise StackError(f"postfix did not listen on {self.host}:{port}; "
                                 f"see {self.dir / 'postfix.log'}")
        self.started = True

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.postfix_dir), "stop"], capture_output=True)
        self.stop_dovecot()
        self.started = False
        if self._own_dir and os.environ.get("PROBER_KEEP_STACK") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def start_dovecot(self) -> None:
        self._run(["dovecot", "-c", str(self.dovecot_conf)], "dovecot start", stderr_file=True)
        for port in (self.imap_port, self.imaps_port):
            if not wait_port(self.host, port, 15):
                raise StackError(f"dovecot did not listen on {self.host}:{port}; "
                                 f"see {self.dir / 'dovecot.log'}")

    def stop_dovecot(self) -> None:
        """Stop Dovecot at once: kick the clients first, or it waits 10 s on IDLE clients."""
        conf = str(self.dovecot_conf)
        pid_file = self.dir / "dovecot" / "run" / "master.pid"
        children: list[int] = []
        if pid_file.exists():
            children = _children(int(pid_file.read_text().split()[0]))
        subprocess.run(["doveadm", "-c", conf, "kick", "*"], capture_output=True)
        subprocess.run(["dovecot", "-c", conf, "stop"], capture_output=True)
        deadline = time.monotonic() + 10
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # auth, anvil, log and stats outlive the master while Postfix's smtpd processes
        # hold the auth socket; SMTP AUTH would go on working through the "outage".
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- delay and fault injection ---------------------------------------------------------
    def queue(self) -> list[dict]:
        out = subprocess.run(["postqueue", "-c", str(self.postfix_dir), "-j"],
                             capture_output=True, text=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    def held(self) -> list[str]:
        return [m["queue_id"] for m in self.queue() if m.get("queue_name") == "hold"]

    def wait_held(self, count: int = 1, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.held()
            if len(ids) >= count:
                return ids
            time.sleep(0.05)
        raise StackError(f"expected {count} held message(s), queue has {self.queue()}")

    def release(self, queue_id: str) -> None:
        """Take a held message out of hold and deliver it now."""
        self._run(["postsuper", "-c", str(self.postfix_dir), "-H", queue_id], "postsuper -H")
        self._run(["postqueue", "-c", str(self.postfix_dir), "-i", queue_id], "postqueue -i")

    def held_message(self, queue_id: str) -> bytes:
        """A held message's header and body as queued (what a provider's staff could see)."""
        out = subprocess.run(["postcat", "-c", str(self.postfix_dir), "-hb", "-q", queue_id],
                             capture_output=True, check=True)
        lines = [line for line in out.stdout.split(b"\n")
                 if not line.startswith(b"*** ")]  # postcat's section markers
        return b"\r\n".join(line.rstrip(b"\r") for line in lines)

    def purge_held(self) -> None:
        """Delete every message still on hold (tests leave none behind for the next)."""
        self._run(["postsuper", "-c", str(self.postfix_dir), "-d", "ALL", "hold"],
                  "postsuper -d ALL hold")

    def maildir(self, user: str) -> Path:
        return self.dir / "mail" / user / "Maildir"

    def deliver_local(self, user: str, message: bytes, flags: str = "") -> Path:
        """Put a message straight into a Maildir (as a person's mail, not through SMTP)."""
        md = self.maildir(user)
        for sub in ("tmp", "new", "cur"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.prober-test.{self.hostname}"
        target = md / ("cur" if flags else "new") / (f"{name}:2,{flags}" if flags else name)
        for p in (md, *md.parents[:1]):
            os.chown(p, MAILBOX_UID, MAILBOX_UID)
        for sub in ("tmp", "new", "cur"):
            os.chown(md / sub, MAILBOX_UID, MAILBOX_UID)
        # written in tmp/ and renamed, as Maildir delivers: Dovecot may move a file from
        # new/ to cur/ the moment it appears there
        (md / "tmp" / name).write_bytes(message)
        os.chown(md / "tmp" / name, MAILBOX_UID, MAILBOX_UID)
        os.rename(md / "tmp" / name, target)
        return target

    # -- configuration for probes.toml -------------------------------------------------------
    def probes_toml(self, vantage: str = "local", imap_tls: str = "starttls",
                    smtp_tls: str = "starttls", routes: list[tuple[str, str, str]] | None = None,
                    extra: str = "") -> str:
        """A probes.toml for this stack; passwords come from PROBER_TEST_<USER> variables."""
        routes = routes or [("alice-to-bob", "alice", "bob")]
        out = [f'[vantage]\nname = "{vantage}"\nstate_dir = "{self.dir / "state"}"\n']
        out.extend(self.mailbox_toml(u.name, smtp_tls, imap_tls) for u in self.users)
        for name, src, dst in routes:
            out.append(f'[[route]]\nname = "{name}"\nfrom = "{src}"\nto = "{dst}"\n'
                       f'direction = "internal"\n')
        out.append(extra)
        return "\n".join(out)

    def mailbox_toml(self, user: str, smtp_tls: str = "starttls",
                     imap_tls: str = "starttls") -> str:
        """One [[mailbox]] of this stack, e.g. to combine two stacks in one probes.toml."""
        u = self.user(user)
        smtp_port = self.submission_port if smtp_tls == "starttls" else self.submissions_port
        imap_port = self.imap_port if imap_tls == "starttls" else self.imaps_port
        return (f'[[mailbox]]\nname = "{u.name}"\naddress = "{u.address}"\n'
                f'password_env = "{self.password_env(u.name)}"\n'
                f'[mailbox.smtp]\nhost = "{self.host}"\nport = {smtp_port}\n'
                f'tls = "{smtp_tls}"\nca_file = "{self.cert_file}"\n'
                f'[mailbox.imap]\nhost = "{self.host}"\nport = {imap_port}\n'
                f'tls = "{imap_tls}"\nca_file = "{self.cert_file}"\n')

    @staticmethod
    def password_env(user: str) -> str:
        return "PROBER_TEST_" + user.upper().replace("-", "_").replace("@", "_").replace(".", "_")

    def env(self) -> dict[str, str]:
        return {self.password_env(u.name): u.password for u in self.users}

    # -- writing the configs ------------------------------------------------------------------
    def _write_tls(self) -> None:
        tls = self.dir / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        if self.cert_file.exists():
            return
        self._run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                   "-days", str(self.cert_days), "-subj", f"/CN={self.hostname}",
                   "-keyout", str(tls / "key.pem"),
                   "-out", str(self.cert_file), "-addext",
                   f"subjectAltName=DNS:{self.hostname},DNS:*.{self.domain},DNS:localhost,"
                   f"IP:{self.host}"],
                  "openssl req")
        (tls / "key.pem").chmod(0o600)

    def _write_dovecot(self) -> None:
        d = self.dir / "dovecot"
        for sub in ("run", "state"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        mail = self.dir / "mail"
        mail.mkdir(exist_ok=True)
        os.chown(mail, MAILBOX_UID, MAILBOX_UID)
        # queue_dir/private holds the sockets Postfix talks to (LMTP delivery, SASL auth)
        private = self.queue_dir / "private"
        private.mkdir(parents=True, exist_ok=True)
        # Postfix's master binds its own sockets here as mail_owner, so it must own the dir.
        shutil.chown(private, user="postfix")
        private.chmod(0o700)
        users = d / "users"
        users.write_text("".join(
            f"{u.address}:{{PLAIN}}{u.password}:{MAILBOX_UID}:{MAILBOX_UID}::"
            f"{mail / u.name}::\n" for u in self.users))
        users.chmod(0o640)
        shutil.chown(users, group="dovecot")
        dh = "/usr/share/dovecot/dh.pem"
        capability = "" if self.idle else (
            "imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ "
            "NAMESPACE UIDPLUS CHILDREN UNSELECT MOVE SPECIAL-USE\n")
        if self.imap_capability is not None:
            capability = f"imap_capability = {self.imap_capability}\n"
        self.dovecot_conf.write_text(f"""\
base_dir = {d / "run"}
state_dir = {d / "state"}
log_path = {self.dir / "dovecot.log"}
# microseconds: the "saved mail" line is the truth a delay is measured against (bench/)
log_timestamp = "%Y-%m-%d %H:%M:%S.%{{usecs}} "
protocols = imap lmtp
listen = {self.host}
hostname = {self.hostname}
ssl = required
ssl_cert = <{self.cert_file}
ssl_key = <{self.dir / "tls" / "key.pem"}
{f"ssl_dh = <{dh}" if os.path.exists(dh) else ""}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection_url else ""}
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = {MAILBOX_UID}
last_valid_uid = {MAILBOX_UID}
default_login_user = dovenull
default_internal_user = dovecot
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
{"  mechanisms = plain login" if self.oauth2_introspection_url else ""}
}}
{self._oauth2_passdb(d)}
userdb {{
  driver = passwd-file
  args = username_format=%u {users}
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener {self.queue_dir / "private" / "dovecot-lmtp"} {{
    user = postfix
    group = postfix
    mode = 0600
  }}
}}
service auth {{
  unix_listener {self.queue_dir / "private" / "auth"} {{
    user = postfix
    group = postfix
    mode = 0660
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{self.domain}
}}
""")

    def _oauth2_passdb(self, d: Path) -> str:
        if not self.oauth2_introspection_url:
            return ""
        conf = d / "oauth2.conf.ext"
        # introspection_mode = post: Dovecot POSTs token=... as RFC 7662 says; the answer's
        # "username" must be the login name, "active" must be true
        conf.write_text(f"introspection_mode = post\n"
                        f"introspection_url = {self.oauth2_introspection_url}\n"
                        f"username_attribute = username\n"
                        f"active_attribute = active\nactive_value = true\n"
                        f"force_introspection = yes\n")
        return (f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {conf}\n}}\n")

    def _write_postfix(self) -> None:
        # OTHER_DOMAIN is local too (a second domain at one provider), unless another stack
        # serves it and mail for it is relayed there.
        local_domains = " ".join(
            [self.domain] + ([OTHER_DOMAIN] if OTHER_DOMAIN not in (self.domain, *self.relay)
                             else []))
        transports = ("transport_maps = inline:{" + ", ".join(
            f"{d}=smtp:[{self.host}]:{port}" for d, port in self.relay.items()) + "}"
            if self.relay else "")
        pf = self.postfix_dir
        pf.mkdir(parents=True, exist_ok=True)
        data = self.dir / "postfix-data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, user="postfix")
        # Postfix's master opens the log after dropping to mail_owner: it must own the file.
        log = self.dir / "postfix.log"
        log.touch()
        shutil.chown(log, user="postfix")
        rules = [f"/^{HOLD_HEADER}:/ HOLD\n"] + [
            f"/^From:.*[<[:space:]]{re.escape(self.user(name).address)}>?[[:space:]]*$/ "
            f"PREPEND Authentication-Results: {self.hostname}; {verdicts}\n"
            for name, verdicts in self.auth_results.items()]
        (pf / "header_checks").write_text("".join(rules))
        (pf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue_dir}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydomain = {self.domain}
myorigin = {self.domain}
mydestination =
inet_interfaces = {self.host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
maillog_file = {self.dir / "postfix.log"}
maillog_file_prefixes = {self.dir}
virtual_mailbox_domains = {local_domains}
{transports}
virtual_transport = lmtp:unix:private/dovecot-lmtp
recipient_delimiter = +
smtpd_banner = $myhostname ESMTP
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_tls_cert_file = {self.cert_file}
smtpd_tls_key_file = {self.dir / "tls" / "key.pem"}
smtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination
header_checks = regexp:{pf / "header_checks"}
# one address the server refuses at RCPT, as a real server does for a user that is gone
smtpd_recipient_restrictions = check_recipient_access inline:{{ {self.refused_address}=REJECT }}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s
service_throttle_time = 1s
biff = no
# a long queue id encodes the queue file's creation time to the microsecond (bench/)
enable_long_queue_ids = yes
smtputf8_enable = no
""")
        sub_opts = ("-o smtpd_sasl_auth_enable=yes -o smtpd_tls_auth_only=yes "
                    "-o smtpd_client_restrictions=permit_sasl_authenticated,reject")
        tls_required = "-o smtpd_tls_security_level=encrypt"
        reinject = ""
        if self.content_filter:
            sub_opts += f" -o smtpd_proxy_filter={self.host}:{self.filter_port}"
            reinject = (f"{self.host}:{self.reinject_port} inet n - n - - smtpd "
                        "-o smtpd_proxy_filter= -o smtpd_sasl_auth_enable=no "
                        "-o smtpd_client_restrictions=permit_mynetworks,reject\n")
        (pf / "master.cf").write_text(f"""\
{self.host}:{self.smtp_port} inet n - n - - smtpd
{self.host}:{self.submission_port} inet n - n - - smtpd {sub_opts} {tls_required}
{self.host}:{self.submissions_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes {sub_opts}
{reinject}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def _run(self, cmd: list[str], what: str, stderr_file: bool = False) -> None:
        # Dovecot keeps the caller's stderr open after daemonizing: capturing it would hang.
        if stderr_file:
            with (self.dir / "start.log").open("ab") as log:
                proc = subprocess.run(cmd, stdout=log, stderr=log, timeout=60)
            detail = (self.dir / "start.log").read_text(errors="replace")[-500:]
        else:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            proc, detail = done, (done.stderr or done.stdout)[-500:]
        if proc.returncode != 0:
            raise StackError(f"{what} failed (exit {proc.returncode}): {detail.strip()}")


def _children(parent: int) -> list[int]:
    """Process ids whose parent is `parent` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found
