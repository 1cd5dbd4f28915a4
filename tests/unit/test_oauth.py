"""OAuth2 for mailboxes: the config, the SASL strings, the token cache and token_command."""

from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import pytest

from prober.config import ConfigError, parse
from prober.config.mail import OAuth2Settings
from prober.probes.errors import ProbeError
from prober.probes.oauth import TokenCache, challenge_text, sasl_initial

BASE = """
[vantage]
name = "v"
state_dir = "/tmp/prober-test-oauth"
[[mailbox]]
name = "m"
address = "probe@corp.example"
{password}
[mailbox.smtp]
host = "smtp.corp.example"
tls = "starttls"
[mailbox.imap]
host = "imap.corp.example"
tls = "tls"
{oauth2}
"""


def load(oauth2: str, password: str = "") -> OAuth2Settings | None:
    import tomllib

    text = BASE.format(password=password, oauth2=("[mailbox.oauth2]\n" + oauth2) if oauth2
                       else "")
    return parse(tomllib.loads(text), "p.toml").mailboxes["m"].oauth2


def test_client_credentials_and_refresh_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S", "secret")
    monkeypatch.setenv("R", "refresh")
    cc = load('token_url = "https://login.example/token"\nclient_id = "c"\n'
              'client_secret_env = "S"\nscope = "mail"\n')
    assert cc is not None and cc.source == "client_credentials" and cc.mechanism == "xoauth2"
    rt = load('mechanism = "oauthbearer"\ntoken_url = "https://login.example/token"\n'
              'client_id = "c"\nrefresh_token_env = "R"\n')
    assert rt is not None and rt.source == "refresh_token" and rt.mechanism == "oauthbearer"
    cmd = load('token_command = ["/usr/local/bin/token", "probe"]\n')
    assert cmd is not None and cmd.source == "command"


@pytest.mark.parametrize(("oauth2", "password", "error"), [
    ("", "", "mailbox[0].password_env: one of password_env"),
    ('token_command = ["x"]\n', 'password_env = "P"', "mailbox[0].oauth2: give a password"),
    ('scope = "x"\n', "", "oauth2.token_url: give exactly one token source"),
    ('token_command = ["x"]\ntoken_url = "https://a/t"\nclient_id = "c"\n', "",
     "got token_url, token_command"),
    ('token_url = "http://a/t"\nclient_id = "c"\nclient_secret_env = "S"\n', "",
     "must be https://"),
    ('token_url = "https://a/t"\nclient_id = "c"\n', "", "needs client_secret_env"),
    ('token_url = "https://a/t"\nclient_id = "c"\nclient_secret = "inline"\n', "",
     "secrets are not accepted inline"),
    ('token_command = ["x"]\nmechanism = "plain"\n', "", "must be one of xoauth2, oauthbearer"),
    ('token_command = ["x"]\nrefresh_in = 3\n', "", "oauth2.refresh_in: unknown key"),
])
def test_config_errors_name_the_key(oauth2: str, password: str, error: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S", "secret")
    monkeypatch.setenv("P", "pw")
    with pytest.raises(ConfigError) as exc:
        load(oauth2, password)
    assert error in str(exc.value)


def test_sasl_strings() -> None:
    x = base64.b64decode(sasl_initial("xoauth2", "a@b.example", "TOKEN", "h", 993))
    assert x == b"user=a@b.example\x01auth=Bearer TOKEN\x01\x01"
    o = base64.b64decode(sasl_initial("oauthbearer", "a,=b@c", "TOKEN", "imap.c", 993))
    assert o == b"n,a=a=2C=3Db@c,\x01host=imap.c\x01port=993\x01auth=Bearer TOKEN\x01\x01"


def test_challenge_text_is_the_servers_json_or_nothing() -> None:
    challenge = base64.b64encode(b'{"status":"401","schemes":"bearer"}').decode()
    assert challenge_text(challenge) == '{"schemes": "bearer", "status": "401"}'
    assert challenge_text("not base64!") == ""


class FakeSource(TokenCache):
    def __init__(self, lifetimes: list[float | None], clock: list[float]) -> None:
        super().__init__(OAuth2Settings(token_command=("x",), refresh_before_s=300),
                         "u", clock=lambda: clock[0])
        self.lifetimes = lifetimes

    async def _command(self) -> tuple[str, float | None]:
        await asyncio.sleep(0.01)
        return f"t{self.fetches}", self.lifetimes[self.fetches]


def test_cache_refreshes_before_expiry_and_shares_one_fetch() -> None:
    clock = [1000.0]
    cache = FakeSource([3600.0, 10.0, None], clock)

    async def scenario() -> None:
        # three probes at once: one fetch
        assert await asyncio.gather(*(cache.get(5) for _ in range(3))) == ["t0"] * 3
        clock[0] += 3299  # 301 s left: still fresh (refresh 300 s before the end)
        assert await cache.get(5) == "t0" and cache.fetches == 1
        clock[0] += 2  # 299 s left: fetched again ahead of expiry
        assert await cache.get(5) == "t1"
        clock[0] += 4.9  # a 10 s token: refreshed at half its life, not 300 s early
        assert await cache.get(5) == "t1"
        clock[0] += 0.2
        assert await cache.get(5) == "t2"  # no lifetime given: an hour assumed
        cache.drop("t1")  # not the current token: nothing happens
        assert await cache.get(5) == "t2" and cache.fetches == 3

    asyncio.run(scenario())


def _command_cache(tmp_path: Path, script: str) -> TokenCache:
    path = tmp_path / "token.py"
    path.write_text(script)
    return TokenCache(OAuth2Settings(token_command=(sys.executable, str(path))), "u")


def test_token_command_raw_and_json(tmp_path: Path) -> None:
    raw = _command_cache(tmp_path, "print('abc.def')\n")
    assert asyncio.run(raw.get(5)) == "abc.def"
    js = _command_cache(tmp_path, 'print(\'{"access_token": "xyz", "expires_in": 60}\')\n')
    assert asyncio.run(js.get(5)) == "xyz"
    assert js._token is not None and js._token.lifetime_s == 60


@pytest.mark.parametrize(("script", "error"), [
    ("import sys; print('vault sealed', file=sys.stderr); sys.exit(3)",
     "exited 3: vault sealed"),
    ("print('')", "gave no usable token"),
    ("print('two words')", "gave no usable token"),
    ("print('{not json')", "printed JSON that does not parse"),
])
def test_token_command_failures_are_auth_errors(tmp_path: Path, script: str,
                                                error: str) -> None:
    cache = _command_cache(tmp_path, script)
    with pytest.raises(ProbeError) as exc:
        asyncio.run(cache.get(5))
    assert exc.value.kind == "auth" and exc.value.step == "token"
    assert error in str(exc.value)
