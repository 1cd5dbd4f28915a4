"""OAuth2 access tokens for SMTP and IMAP logins (SASL XOAUTH2 and OAUTHBEARER).

Microsoft 365 and Google Workspace accept no passwords on IMAP/SMTP; their mailboxes log
in with a bearer token. Three sources, one per mailbox (`[mailbox.oauth2]`):

- a token endpoint (RFC 6749): the client credentials grant, or the refresh token grant
  when a refresh token is configured (Microsoft 365 and any standard server), through
  authlib's OAuth2 client: it implements the grants, client authentication and the
  error responses, on the httpx the project already uses;
- a Google service account's JSON key, through google-auth (Google's own library: the
  key format, the signed JWT assertion, the token URI in the key, domain-wide delegation
  to the mailbox's user);
- an operator's `token_command`, for anything else (a vault, an agent, a script).

Tokens are cached per mailbox and source, shared by every probe of the mailbox in the
process, and fetched again before they expire (`refresh_before_s`, at most half their
life). A login refused with a cached token drops it, so a revoked token is replaced at the
next probe. Tokens and secrets never reach a log, an error or a point.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from prober.config.mail import Mailbox, OAuth2Settings
from prober.probes.errors import ProbeError, classify, local_cause
from prober.probes.tls import client_context_for

MAX_COMMAND_OUTPUT = 65536
COMMAND_TIMEOUT_S = 30.0
DEFAULT_LIFETIME_S = 3600.0  # a token whose answer says nothing about its life


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # time.monotonic()
    lifetime_s: float


class TokenCache:
    """The newest token of one mailbox; one fetch at a time."""

    def __init__(self, settings: OAuth2Settings, user: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.user = user
        self.clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self._refresh_token = settings.refresh_token.reveal() if settings.refresh_token else None
        self.fetches = 0

    def fresh(self) -> bool:
        token = self._token
        if token is None:
            return False
        margin = min(self.settings.refresh_before_s, token.lifetime_s / 2)
        return self.clock() < token.expires_at - margin

    async def get(self, timeout: float) -> str:
        if self.fresh():
            assert self._token is not None
            return self._token.value
        async with self._lock:
            if not self.fresh():  # another probe may have fetched it meanwhile
                self._token = await self._fetch(timeout)
                self.fetches += 1
            assert self._token is not None
            return self._token.value

    def drop(self, value: str) -> None:
        """The server refused this token: fetch a new one next time."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _fetch(self, timeout: float) -> Token:
        source = self.settings.source
        try:
            if source == "command":
                value, life = await asyncio.wait_for(self._command(), COMMAND_TIMEOUT_S)
            elif source == "google":
                value, life = await asyncio.wait_for(asyncio.to_thread(self._google, timeout),
                                                     timeout)
            else:
                value, life = await asyncio.wait_for(self._endpoint(timeout), timeout)
        except ProbeError:
            raise
        except TimeoutError:
            raise ProbeError("timeout", "token", f"no token from the {source} source in "
                             f"time") from None
        except Exception as exc:
            raise _token_error(exc, source) from None
        if not value or any(c in value for c in "\r\n\x00\x01 "):
            raise ProbeError("auth", "token", f"the {source} source gave no usable token")
        life = life if life and life > 0 else DEFAULT_LIFETIME_S
        return Token(value, self.clock() + life, life)

    async def _endpoint(self, timeout: float) -> tuple[str, float | None]:
        # authlib >= 1.9 warns, once per process, that it will move to the httpx2 package:
        # httpx is the project's (pinned) client and authlib < 1.10 supports it. Its module
        # sets an "always" filter on import, so the ignore goes in after that.
        from authlib.deprecate import AuthlibDeprecationWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            from authlib.integrations.httpx_client import AsyncOAuth2Client
        s = self.settings
        assert s.token_url is not None
        secret = s.client_secret.reveal() if s.client_secret else None
        async with AsyncOAuth2Client(
                s.client_id, secret, scope=s.scope, timeout=timeout,
                token_endpoint_auth_method=("client_secret_post" if secret else "none"),
                verify=client_context_for(s.ca_file)) as client:
            if self._refresh_token:
                answer = await client.refresh_token(s.token_url,
                                                    refresh_token=self._refresh_token)
                # servers may rotate the refresh token: the new one replaces it (in memory;
                # the configured one is used again after a restart)
                if answer.get("refresh_token"):
                    self._refresh_token = str(answer["refresh_token"])
            else:
                answer = await client.fetch_token(s.token_url, grant_type="client_credentials")
        return str(answer.get("access_token") or ""), _seconds(answer.get("expires_in"))

    def _google(self, timeout: float) -> tuple[str, float | None]:
        import google.auth.transport.urllib3
        import urllib3
        from google.oauth2 import service_account

        s = self.settings
        assert s.service_account is not None
        info = json.loads(s.service_account.reveal())
        creds = service_account.Credentials.from_service_account_info(
            info, scopes=[s.scope or "https://mail.google.com/"], subject=self.user)
        pool = (urllib3.PoolManager(timeout=timeout, retries=False, ca_certs=s.ca_file)
                if s.ca_file else urllib3.PoolManager(timeout=timeout, retries=False))
        creds.refresh(google.auth.transport.urllib3.Request(pool))
        life = None
        if creds.expiry is not None:
            life = creds.expiry.timestamp() - time.time()  # google-auth's expiry is naive UTC
        return str(creds.token or ""), life

    async def _command(self) -> tuple[str, float | None]:
        proc = await asyncio.create_subprocess_exec(
            *self.settings.token_command, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
        name = self.settings.token_command[0]
        if proc.returncode != 0:
            # stderr may name the problem; it is the operator's own program, not a secret
            why = err.decode("utf-8", "replace").strip()[:200] or "no message"
            raise ProbeError("auth", "token", f"token_command {name} exited "
                             f"{proc.returncode}: {why}")
        text = out[:MAX_COMMAND_OUTPUT].decode("utf-8", "replace").strip()
        if text.startswith("{"):
            try:
                answer = json.loads(text)
            except ValueError:
                raise ProbeError("auth", "token", f"token_command {name} printed JSON that "
                                 f"does not parse") from None
            return str(answer.get("access_token") or ""), _seconds(answer.get("expires_in"))
        return text, None


def _seconds(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _token_error(exc: Exception, source: str) -> ProbeError:
    """What went wrong getting a token, in the token server's words, never the token's."""
    if isinstance(exc, ProbeError):  # already classed (a CA file we could not load)
        return exc
    if local_cause(exc) is not None:  # no descriptor or memory left: ours
        return classify(exc, "token")
    error = getattr(exc, "error", None)  # authlib's OAuthError: the RFC 6749 error code
    description = getattr(exc, "description", "") or ""
    answer = exc.args[1] if len(exc.args) == 2 else None  # google-auth's RefreshError
    if not error and isinstance(answer, dict) and answer.get("error"):
        error, description = str(answer["error"]), str(answer.get("error_description") or "")
    if error:
        return ProbeError("auth", "token", f"token endpoint refused: {error}"
                          + (f": {description}" if description else ""))
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return ProbeError("auth", "token", f"token endpoint answered HTTP {status}")
    if type(exc).__name__.endswith("Timeout"):  # httpx's ConnectTimeout, ReadTimeout, ...
        return ProbeError("timeout", "token", f"{source}: no answer in time")
    cause: BaseException | None = exc
    for _ in range(5):  # httpx wraps httpcore, which wraps the OS error
        if cause is None:
            break
        if isinstance(cause, OSError):
            return classify(cause, "token")
        cause = cause.__cause__ or cause.__context__
    return ProbeError("auth", "token", f"{source}: {type(exc).__name__}: {exc}")


_caches: dict[tuple[str, str, OAuth2Settings], TokenCache] = {}


def token_cache(mailbox: Mailbox) -> TokenCache:
    """The process-wide cache of this mailbox's tokens (a reload with other settings gets
    a new one)."""
    assert mailbox.oauth2 is not None
    key = (mailbox.name, mailbox.user, mailbox.oauth2)
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = TokenCache(mailbox.oauth2, mailbox.user)
    return cache


def sasl_initial(mechanism: str, user: str, token: str, host: str, port: int) -> str:
    """The base64 initial client response of XOAUTH2 or OAUTHBEARER (RFC 7628)."""
    if mechanism == "oauthbearer":
        # gs2 header with the authzid; a comma or '=' in it is escaped (RFC 5801)
        authz = user.replace("=", "=3D").replace(",", "=2C")
        raw = f"n,a={authz},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    else:
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
    return base64.b64encode(raw.encode()).decode("ascii")


# After a failure the server sends a JSON error as a challenge and waits for the client to
# end the exchange: XOAUTH2 with an empty line, OAUTHBEARER with %x01 (RFC 7628 3.2.3).
SASL_ABORT = {"xoauth2": "", "oauthbearer": base64.b64encode(b"\x01").decode("ascii")}


def challenge_text(challenge: str) -> str:
    """The server's JSON error from a failure challenge, for the error message."""
    try:
        decoded = base64.b64decode(challenge.strip(), validate=True).decode("utf-8")
        return " ".join(json.dumps(json.loads(decoded), sort_keys=True).split())[:200]
    except (ValueError, UnicodeDecodeError):
        return ""
