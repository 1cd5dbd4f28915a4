"""probes.toml, mail side: vantage, mailboxes, routes, timeouts, canary, check, secrets.

Every error must name the file and the dotted key; secrets must never be shown.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from prober.config import ConfigError, Secret, load
from prober.config.mail import CanarySettings, CheckSettings, Timeouts
from prober.config.show import render

PASSWORD = "hunter2-Pa55-do-not-show"
PASSWORD2 = "other-secret-Xy9"


def vantage(tmp_path: Path) -> str:
    return f'[vantage]\nname = "probe-1"\nstate_dir = "{tmp_path / "state"}"\n'


def mailbox(name: str = "corp", address: str = "probe@corp.example",
            smtp_host: str = "smtp.corp.example", imap_host: str = "imap.corp.example",
            secret: str = 'password_env = "PROBER_TEST_PW"', extra: str = "",
            smtp_extra: str = "", imap_extra: str = "",
            smtp_tls: str = "starttls", imap_tls: str = "tls") -> str:
    return (f'\n[[mailbox]]\nname = "{name}"\naddress = "{address}"\n{secret}\n{extra}\n'
            f'[mailbox.smtp]\nhost = "{smtp_host}"\ntls = "{smtp_tls}"\n{smtp_extra}\n'
            f'[mailbox.imap]\nhost = "{imap_host}"\ntls = "{imap_tls}"\n{imap_extra}\n')


def route(name: str = "corp-to-ext", frm: str = "corp", to: str = "ext",
          direction: str = "outbound", extra: str = "") -> str:
    return (f'\n[[route]]\nname = "{name}"\nfrom = "{frm}"\nto = "{to}"\n'
            f'direction = "{direction}"\n{extra}\n')


def two_mailboxes() -> str:
    return mailbox() + mailbox(name="ext", address="probe@ext.example.org",
                               smtp_host="mx1.mail.provider.net",
                               imap_host="imap.mail.provider.net",
                               secret='password_env = "PROBER_TEST_PW2"')


@pytest.fixture(autouse=True)
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBER_TEST_PW", PASSWORD)
    monkeypatch.setenv("PROBER_TEST_PW2", PASSWORD2)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def write(tmp_path: Path, text: str, name: str = "probes.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value


def assert_names(err: ConfigError, path: Path, key: str, fragment: str) -> None:
    text = str(err)
    assert err.file == str(path)
    assert err.key == key
    assert text.startswith(f"{path}: {key}: "), text
    assert fragment in text, text


# --- valid configurations -------------------------------------------------------------


def test_minimal_config_without_other_rooms_sections_loads(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path))
    c = load(path)
    assert c.file == str(path)
    assert c.vantage.name == "probe-1"
    assert c.vantage.state_dir == str(tmp_path / "state")
    assert c.mailboxes == {}
    assert c.routes == ()
    assert c.timeouts == Timeouts()
    assert c.canary == CanarySettings()
    assert c.check == CheckSettings()
    assert c.influx is None
    assert c.webmail == ()


def test_full_mail_config_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + two_mailboxes() + route())
    c = load(path)
    assert list(c.mailboxes) == ["corp", "ext"]
    corp = c.mailboxes["corp"]
    assert corp.user == "probe@corp.example"  # defaults to the address
    assert corp.password.reveal() == PASSWORD
    assert corp.password.source == "env:PROBER_TEST_PW"
    assert (corp.smtp.host, corp.smtp.port, corp.smtp.tls) == ("smtp.corp.example", 587,
                                                                "starttls")
    assert corp.smtp.tls_verify is True and corp.smtp.ca_file is None
    imap = corp.imap
    assert (imap.endpoint.host, imap.endpoint.port, imap.endpoint.tls) == (
        "imap.corp.example", 993, "tls")
    assert (imap.folder, imap.junk_folder, imap.trash_folder, imap.idle) == (
        "INBOX", "Junk", "Trash", True)
    (r,) = c.routes
    assert (r.name, r.sender, r.recipient, r.direction) == ("corp-to-ext", "corp", "ext",
                                                           "outbound")
    # outbound: the provider under contract is the sender's
    assert r.provider_domains == ("corp.example",)


def test_tls_ports_follow_the_mode(tmp_path: Path) -> None:
    text = vantage(tmp_path) + mailbox(smtp_tls="tls", imap_tls="starttls")
    c = load(write(tmp_path, text))
    assert c.mailboxes["corp"].smtp.port == 465
    assert c.mailboxes["corp"].imap.endpoint.port == 143


@pytest.mark.parametrize(("direction", "expected"), [
    ("outbound", ("corp.example",)),
    # inbound / internal: the recipient's provider; host parent and address domain
    ("inbound", ("ext.example.org", "mail.provider.net")),
    ("internal", ("ext.example.org", "mail.provider.net")),
])
def test_provider_domains_derived_from_direction(tmp_path: Path, direction: str,
                                                 expected: tuple[str, ...]) -> None:
    c = load(write(tmp_path, vantage(tmp_path) + two_mailboxes() + route(direction=direction)))
    assert c.routes[0].provider_domains == expected


def test_provider_domains_given_are_lowercased(tmp_path: Path) -> None:
    text = vantage(tmp_path) + two_mailboxes() + route(
        extra='provider_domains = ["Corp.Example", "RELAY.example.net"]')
    c = load(write(tmp_path, text))
    assert c.routes[0].provider_domains == ("corp.example", "relay.example.net")


def test_plaintext_allowed_when_asked(tmp_path: Path) -> None:
    text = vantage(tmp_path) + mailbox(extra="allow_plaintext = true", smtp_tls="none",
                                       imap_tls="none")
    c = load(write(tmp_path, text))
    mb = c.mailboxes["corp"]
    assert (mb.smtp.tls, mb.smtp.port) == ("none", 25)
    assert (mb.imap.endpoint.tls, mb.imap.endpoint.port) == ("none", 143)


def test_imap_folder_settings_and_empty_junk(tmp_path: Path) -> None:
    text = vantage(tmp_path) + mailbox(
        imap_extra='folder = "Probe"\njunk_folder = ""\ntrash_folder = "Bin"\nidle = false\n'
                   "port = 10993\ntls_verify = false")
    imap = load(write(tmp_path, text)).mailboxes["corp"].imap
    assert (imap.folder, imap.junk_folder, imap.trash_folder, imap.idle) == (
        "Probe", None, "Bin", False)
    assert imap.endpoint.port == 10993
    assert imap.endpoint.tls_verify is False


def test_existing_ca_file_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    text = vantage(tmp_path) + mailbox(smtp_extra=f'ca_file = "{ca}"')
    assert load(write(tmp_path, text)).mailboxes["corp"].smtp.ca_file == str(ca)


def test_sections_with_values(tmp_path: Path) -> None:
    text = vantage(tmp_path) + (
        "[timeouts]\nconnect_s = 2\ncommand_s = 5.5\n"
        '[canary]\nlate_after_s = 60\nlost_after_s = 61\ncleanup = "move"\n'
        "[check]\nwarning_s = 30\ncritical_s = 30\nwait_s = 10\n")
    c = load(write(tmp_path, text))
    assert c.timeouts == Timeouts(connect_s=2.0, command_s=5.5)
    assert isinstance(c.timeouts.connect_s, float)
    assert (c.canary.late_after_s, c.canary.lost_after_s, c.canary.cleanup) == (60.0, 61.0,
                                                                                "move")
    assert (c.check.warning_s, c.check.critical_s, c.check.wait_s) == (30.0, 30.0, 10.0)


# --- errors name the file and the dotted key -----------------------------------------


@pytest.mark.parametrize(("text_of", "key", "fragment"), [
    (lambda v: v + mailbox(smtp_extra='port = "587"'), "mailbox[0].smtp.port",
     "must be an integer"),
    (lambda v: v + mailbox(smtp_extra="port = true"), "mailbox[0].smtp.port", "boolean"),
    (lambda v: v + mailbox(smtp_extra="port = 0"), "mailbox[0].smtp.port", ">= 1"),
    (lambda v: v + mailbox(imap_extra="port = 70000"), "mailbox[0].imap.port", "<= 65535"),
    (lambda v: v + mailbox(smtp_tls="ssl"), "mailbox[0].smtp.tls", "must be one of"),
    (lambda v: v + mailbox(smtp_tls="none"), "mailbox[0].smtp.tls", "allow_plaintext"),
    (lambda v: v + mailbox(imap_tls="none"), "mailbox[0].imap.tls", "allow_plaintext"),
    (lambda v: v + mailbox(smtp_extra='ca_file = "/nonexistent/ca.pem"'),
     "mailbox[0].smtp.ca_file", "no such file"),
    (lambda v: v + mailbox(imap_extra='ca_file = "/nonexistent/ca.pem"'),
     "mailbox[0].imap.ca_file", "no such file"),
    (lambda v: v + mailbox(smtp_extra="prot = 587"), "mailbox[0].smtp.prot", "unknown key"),
    (lambda v: v + mailbox(imap_extra='fodler = "x"'), "mailbox[0].imap.fodler",
     "unknown key"),
    (lambda v: v + mailbox(extra='usr = "x"'), "mailbox[0].usr", "unknown key"),
    (lambda v: v + mailbox(smtp_extra="tls_verify = 1"), "mailbox[0].smtp.tls_verify",
     "true or false"),
    (lambda v: v + mailbox(imap_extra="idle = 1"), "mailbox[0].imap.idle", "true or false"),
    (lambda v: v + mailbox(address="probe.corp.example"), "mailbox[0].address",
     "not an email address"),
    (lambda v: v + mailbox(name="bad name"), "mailbox[0].name", "letters, digits"),
    (lambda v: v + mailbox(smtp_host=""), "mailbox[0].smtp.host", "must not be empty"),
    (lambda v: v + mailbox() + mailbox(), "mailbox[1].name", "defined twice"),
    (lambda v: v + '[[mailbox]]\nname = "corp"\naddress = "a@b.c"\npassword_env = "X"\n'
     '[mailbox.smtp]\nhost = "h"\ntls = "tls"\n', "mailbox[0].imap", "is required"),
    (lambda v: v + two_mailboxes() + route(frm="nobody"), "route[0].from",
     "no mailbox named 'nobody'"),
    (lambda v: v + two_mailboxes() + route(to="nobody"), "route[0].to", "known: corp, ext"),
    (lambda v: v + two_mailboxes() + route(direction="sideways"), "route[0].direction",
     "outbound, inbound, internal"),
    (lambda v: v + two_mailboxes() + route() + route(), "route[1].name", "defined twice"),
    (lambda v: v + two_mailboxes() + route(extra='provider_domains = ["ok.example", ""]'),
     "route[0].provider_domains[1]", "non-empty string"),
    (lambda v: v + two_mailboxes() + route(extra="via = 1"), "route[0].via", "unknown key"),
    (lambda v: v + "[timeouts]\nconnect_s = 0\n", "timeouts.connect_s", ">= 0.1"),
    (lambda v: v + '[timeouts]\ncommand_s = "30"\n', "timeouts.command_s", "a number"),
    (lambda v: v + "[timeouts]\nconect_s = 3\n", "timeouts.conect_s", "unknown key"),
    (lambda v: v + "[canary]\nlate_after_s = 600\nlost_after_s = 600\n",
     "canary.lost_after_s", "greater than late_after_s"),
    (lambda v: v + "[canary]\nlate_after_s = 20000\n", "canary.lost_after_s",
     "greater than late_after_s"),
    (lambda v: v + '[canary]\ncleanup = "shred"\n', "canary.cleanup", "delete, move, keep"),
    (lambda v: v + "[canary]\nidle_renew_s = 1800\n", "canary.idle_renew_s", "<= 1740"),
    (lambda v: v + "[check]\nwarning_s = 120\ncritical_s = 60\n", "check.critical_s",
     "must be >= warning_s"),
    (lambda v: v + "[check]\nwait_s = 0\n", "check.wait_s", ">= 1"),
    (lambda v: v + "[check]\nfast_poll_s = 0.001\n", "check.fast_poll_s", "0 (off) or at least"),
    (lambda v: v + "[canary]\nfast_poll_s = -1\n", "canary.fast_poll_s", ">= 0"),
    (lambda v: v + '[vantage2]\nname = "x"\n', "vantage2", "unknown key"),
    (lambda v: v.replace('name = "probe-1"', 'name = "probe/1"'), "vantage.name",
     "letters, digits"),
    (lambda v: v + 'colour = "blue"\n', "vantage.colour", "unknown key"),
    (lambda v: '[timeouts]\nconnect_s = 3\n', "vantage", "is required"),
])
def test_error_names_file_and_key(tmp_path: Path, text_of: Callable[[str], str], key: str,
                                  fragment: str) -> None:
    path = write(tmp_path, text_of(vantage(tmp_path)))
    assert_names(load_error(path), path, key, fragment)


def test_toml_syntax_error_reports_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[vantage]\nname = "probe-1"\nstate_dir = \n')
    err = load_error(path)
    assert err.line == 3
    assert str(err).startswith(f"{path}:3: TOML syntax error: ")
    assert "(at line" not in str(err)


def test_toml_duplicate_key_reports_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + "\n\n[timeouts]\nconnect_s = 1\nconnect_s = 2\n")
    err = load_error(path)
    assert err.line == 8  # the second connect_s
    assert str(err).startswith(f"{path}:8: TOML syntax error")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    err = load_error(path)
    assert str(err).startswith(f"{path}: cannot read")


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[vantage]\nname = "caf\xe9"\n')
    err = load_error(path)
    assert str(err).startswith(f"{path}: not UTF-8")


def test_mailbox_as_single_table_is_index_zero(tmp_path: Path) -> None:
    # `[mailbox]` instead of `[[mailbox]]`: still one mailbox, still keyed mailbox[0]
    text = vantage(tmp_path) + mailbox().replace("[[mailbox]]", "[mailbox]").replace(
        'tls = "starttls"', 'tls = "starttls"\nport = -1')
    path = write(tmp_path, text)
    assert_names(load_error(path), path, "mailbox[0].smtp.port", ">= 1")


# --- secrets ---------------------------------------------------------------------------


def test_inline_password_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret=f'password = "{PASSWORD}"'))
    err = load_error(path)
    assert_names(err, path, "mailbox[0].password", "not accepted inline")
    assert PASSWORD not in str(err)


def test_two_secret_sources_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    path = write(tmp_path, vantage(tmp_path) + mailbox(
        secret='password_env = "PROBER_TEST_PW"\npassword_file = "pw"'))
    assert_names(load_error(path), path, "mailbox[0].password_file", "only one")


def test_no_secret_source_refused(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret=""))
    assert_names(load_error(path), path, "mailbox[0].password_env", "is required")


def test_unset_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROBER_TEST_PW")
    path = write(tmp_path, vantage(tmp_path) + mailbox())
    assert_names(load_error(path), path, "mailbox[0].password_env",
                 "PROBER_TEST_PW is not set")


def test_password_file_relative_to_config_dir(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "corp.pw").write_text(PASSWORD + "\r\n")
    (conf_dir / "corp.pw").chmod(0o600)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(conf_dir, vantage(tmp_path) + mailbox(secret='password_file = "corp.pw"'))
    pw = load(path).mailboxes["corp"].password
    assert pw.reveal() == PASSWORD  # trailing newline stripped
    assert pw.source == f"file:{conf_dir.resolve() / 'corp.pw'}"


def test_missing_password_file(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret='password_file = "nope.pw"'))
    assert_names(load_error(path), path, "mailbox[0].password_file", "cannot read")


def test_password_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "corp-pw").write_text(PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret='password_credential = "corp-pw"'))
    pw = load(path).mailboxes["corp"].password
    assert pw.reveal() == PASSWORD
    assert pw.source == "credential:corp-pw"


def test_password_credential_needs_credentials_directory(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret='password_credential = "corp-pw"'))
    assert_names(load_error(path), path, "mailbox[0].password_credential",
                 "CREDENTIALS_DIRECTORY is not set")


def test_secret_never_shows_its_value(tmp_path: Path) -> None:
    c = load(write(tmp_path, vantage(tmp_path) + two_mailboxes() + route()))
    pw = c.mailboxes["corp"].password
    assert isinstance(pw, Secret)
    for text in (repr(pw), str(pw), f"{pw}", repr(c.mailboxes["corp"]), repr(c)):
        assert PASSWORD not in text
        assert PASSWORD2 not in text
    assert repr(pw) == "Secret(env:PROBER_TEST_PW, ****)"


def test_secret_equality_by_source_only() -> None:
    assert Secret("env:A", "x") == Secret("env:A", "y")
    assert Secret("env:A", "x") != Secret("env:B", "x")
    assert hash(Secret("env:A", "x")) == hash(Secret("env:A", "z"))


def test_render_masks_secrets_and_shows_sources(tmp_path: Path) -> None:
    path = write(tmp_path, vantage(tmp_path) + two_mailboxes() + route())
    text = render(load(path))
    assert PASSWORD not in text and PASSWORD2 not in text
    assert 'password = "****" # from env:PROBER_TEST_PW\n' in text
    assert 'password = "****" # from env:PROBER_TEST_PW2\n' in text
    assert text.startswith(f"# resolved from {path}; secrets are masked\n")
    assert "\n[vantage]\n" in text and 'name = "probe-1"' in text
    assert text.count("\n[[mailbox]]\n") == 2
    assert "\n[[route]]\n" in text and 'provider_domains = ["corp.example"]' in text
    assert "port = 587" in text


def test_render_masks_file_secret(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    (tmp_path / "pw").chmod(0o600)
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret='password_file = "pw"'))
    text = render(load(path))
    assert PASSWORD not in text
    assert f'password = "****" # from file:{tmp_path.resolve() / "pw"}' in text


def test_render_is_toml_with_dates_in_toml_syntax(tmp_path: Path) -> None:
    text = vantage(tmp_path) + two_mailboxes() + route() + (
        '\n[[sla.maintenance]]\nstart = 2026-11-03T02:00:00Z\nend = 2026-11-03T03:00:00Z\n'
        'reason = "upgrade"\n')
    shown = render(load(write(tmp_path, text)))
    parsed = tomllib.loads(shown)
    window = parsed["sla"]["maintenance"][0]
    assert window["start"].isoformat() == "2026-11-03T02:00:00+00:00"
    assert [m["name"] for m in parsed["mailbox"]] == ["corp", "ext"]
    assert parsed["route"][0]["from"] == "corp"


# --- numbers and secret files: the one place each is checked ---------------------------


def test_every_number_getter_names_both_bounds() -> None:
    """A number without a maximum is how `tick_s = 1e300` never ticked: every call of
    Section.integer/number in prober/config states its range (the README lists them)."""
    import ast

    import prober.config

    unbounded = []
    for module in Path(prober.config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("integer", "number")):
                given = {k.arg for k in node.keywords}
                if not {"minimum", "maximum"} <= given:
                    unbounded.append(f"{module.name}:{node.lineno}")
    assert unbounded == []


def test_every_named_number_key_is_in_the_readmes_range_table() -> None:
    """The ranges are documented: a key added with its bounds is added to the table too."""
    import ast

    import prober.config

    readme = (Path(prober.config.__file__).parents[2] / "README.md").read_text()
    table = readme.split("- **Numbers** must be finite", 1)[1].split("- **Strings**", 1)[0]
    missing = set()
    for module in Path(prober.config.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("integer", "number") and node.args
                    and isinstance(node.args[0], ast.Constant)):
                key = str(node.args[0].value)
                documented = f"`{key}`" in table or (key.startswith("max_")
                                                     and key.endswith("_bytes")
                                                     and "`max_*_bytes`" in table)
                if not documented:
                    missing.add(f"{module.name}: {key}")
    assert missing == set()


def test_shared_secret_file_is_an_explicit_opt_in(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o640)
    path = write(tmp_path, vantage(tmp_path) + mailbox(secret='password_file = "pw"'))
    assert_names(load_error(path), path, "mailbox[0].password_file", "mode 0640")
    path = write(tmp_path, vantage(tmp_path) + mailbox(
        secret='password_file = "pw"\npassword_file_shared = true'))
    assert load(path).mailboxes["corp"].password.reveal() == PASSWORD
    path = write(tmp_path, vantage(tmp_path) + mailbox(
        secret='password_env = "PROBER_TEST_PW"\npassword_file_shared = true'))
    assert_names(load_error(path), path, "mailbox[0].password_file_shared",
                 "only with password_file")


def test_secret_from_env_with_a_line_break_is_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBER_TEST_PW", "pw\r\nA1 LOGOUT")
    path = write(tmp_path, vantage(tmp_path) + mailbox())
    err = load_error(path)
    assert_names(err, path, "mailbox[0].password_env", "CR, LF or NUL")
    assert "LOGOUT" not in str(err)


def test_ca_file_that_is_a_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    path = write(tmp_path, vantage(tmp_path) + mailbox(smtp_extra='ca_file = "ca"'))
    assert_names(load_error(path), path, "mailbox[0].smtp.ca_file", "not a regular file")
