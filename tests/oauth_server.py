"""A small OAuth2 authorization server on loopback, built on authlib's server side: the token
endpoint (client credentials and refresh token grants, RFC 6749) over HTTPS for the prober,
and token introspection (RFC 7662) over plain HTTP for Dovecot's oauth2 passdb.

Tokens live in memory; a test can shorten their life, revoke them, and count the grants.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from joserfc.jwk import RSAKey

from tests.localstack.ports import free_port


@dataclass
class Client(ClientMixin):
    client_id: str
    secret: str
    user: str  # the mailbox the client's tokens log in as

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return ""

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("client_credentials", "refresh_token", JWTBearerGrant.GRANT_TYPE)


@dataclass
class Token(TokenMixin):
    client: Client
    access_token: str
    refresh_token: str | None
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return client.get_client_id() == self.client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.client.user

    def get_client(self) -> ClientMixin:
        return self.client


class _Request(OAuth2Request):
    def __init__(self, method: str, headers: dict[str, str], form: dict[str, str]) -> None:
        # the URI only feeds authlib's "insecure transport" check; the token endpoint is HTTPS
        super().__init__(method, "https://127.0.0.1/", headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _Refresh(grants.RefreshTokenGrant):
    INCLUDE_NEW_REFRESH_TOKEN = True
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post"]

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        server: TokenServer = self.server  # type: ignore[assignment]
        token = server.by_refresh.get(refresh_token)
        return token if token is not None and not token.revoked else None

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.get_user()

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.revoked = True


class _ClientCredentials(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post"]


class _ServiceAccount(JWTBearerGrant):
    """Google's service-account flow (RFC 7523): a JWT signed with the account's key, whose
    `sub` is the mailbox the token is for (domain-wide delegation)."""

    def resolve_issuer_client(self, issuer: str) -> Client | None:
        server: TokenServer = self.server  # type: ignore[assignment]
        return server.clients.get(issuer)

    def resolve_client_public_key(self, client: Client) -> RSAKey:
        server: TokenServer = self.server  # type: ignore[assignment]
        return RSAKey.import_key(server.public_keys[client.client_id])

    def authenticate_user(self, subject: str) -> str | None:
        return subject

    def has_granted_permission(self, client: Client, user: str) -> bool:
        return user == client.user

    def get_audiences(self) -> list[str]:
        server: TokenServer = self.server  # type: ignore[assignment]
        # google-auth puts Google's own token endpoint in `aud`, whatever the key's token_uri
        return [server.token_url, "https://oauth2.googleapis.com/token"]


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar = ["none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        server: TokenServer = self.server  # type: ignore[assignment]
        return server.by_access.get(token_string)

    def check_permission(self, token: Token, client: ClientMixin, request: object) -> bool:
        return True  # Dovecot asks without client credentials, from loopback

    def introspect_token(self, token: Token) -> dict:
        return {"active": True, "username": token.get_user(), "scope": token.scope,
                "client_id": token.client.client_id,
                "exp": int(token.issued_at + token.expires_in)}

    def authenticate_endpoint_client(self, request: OAuth2Request) -> ClientMixin:
        return Client("dovecot", "", "")


@dataclass
class TokenServer(AuthorizationServer):
    cert_file: Path
    key_file: Path
    expires_in: int = 3600
    clients: dict[str, Client] = field(default_factory=dict)
    by_access: dict[str, Token] = field(default_factory=dict)
    by_refresh: dict[str, Token] = field(default_factory=dict)
    grants_issued: Counter = field(default_factory=Counter)
    introspections: Counter = field(default_factory=Counter)
    public_keys: dict[str, bytes] = field(default_factory=dict)  # service accounts' keys

    def __post_init__(self) -> None:
        AuthorizationServer.__init__(self)
        self.register_grant(_ClientCredentials)
        self.register_grant(_Refresh)
        self.register_grant(_ServiceAccount)
        self.register_endpoint(_Introspection)
        self.token_port = free_port()
        self.introspection_port = free_port()
        self._servers: list[ThreadingHTTPServer] = []

    # -- what a test uses ----------------------------------------------------------------
    @property
    def token_url(self) -> str:
        return f"https://127.0.0.1:{self.token_port}/token"

    @property
    def introspection_url(self) -> str:
        return f"http://127.0.0.1:{self.introspection_port}/introspect"

    def add_client(self, client_id: str, secret: str, user: str) -> Client:
        self.clients[client_id] = Client(client_id, secret, user)
        return self.clients[client_id]

    def issue_refresh_token(self, client_id: str) -> str:
        """A refresh token as an operator would have got it once from a consent flow."""
        token = self._save(self.clients[client_id], {"scope": "mail"}, refresh=True)
        assert token.refresh_token is not None
        return token.refresh_token

    def add_service_account(self, email: str, user: str) -> dict:
        """A service account allowed to act for `user`: its JSON key, as Google hands it
        out, with this server as the token URI."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.add_client(email, secrets.token_hex(8), user)
        self.public_keys[email] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": "prober-test",
                "private_key_id": "k1", "private_key": pem, "client_email": email,
                "client_id": "1", "token_uri": self.token_url}

    def revoke_all(self, client_id: str) -> None:
        for token in self.by_access.values():
            if token.client.client_id == client_id:
                token.revoked = True
        for token in self.by_refresh.values():
            if token.client.client_id == client_id:
                token.revoked = True

    # -- authlib's server interface ---------------------------------------------------------
    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        client = request.client
        assert isinstance(client, Client)
        self.grants_issued[request.payload.grant_type] += 1
        self._store(client, token)

    def issue_access_token(self, client_id: str, expires_in: int = 3600) -> str:
        """An access token handed out of band (what an operator's token_command prints)."""
        return self._save(self.clients[client_id], {"scope": "mail"}, refresh=False,
                          expires_in=expires_in).access_token

    def _save(self, client: Client, token: dict, refresh: bool,
              expires_in: int | None = None) -> Token:
        token = {**token, "access_token": secrets.token_urlsafe(24),
                 "refresh_token": secrets.token_urlsafe(24) if refresh else None,
                 "expires_in": expires_in or self.expires_in}
        return self._store(client, token)

    def _store(self, client: Client, token: dict) -> Token:
        t = Token(client, token["access_token"], token.get("refresh_token"),
                  token.get("scope", ""), time.time(), int(token["expires_in"]))
        self.by_access[t.access_token] = t
        if t.refresh_token:
            self.by_refresh[t.refresh_token] = t
        return t

    def generate_token(self, grant_type: str, client: ClientMixin, user: object = None,
                       scope: str | None = None, expires_in: int | None = None,
                       include_refresh_token: bool = True) -> dict:
        token = {"token_type": "Bearer", "access_token": secrets.token_urlsafe(24),
                 "expires_in": self.expires_in, "scope": scope or ""}
        if include_refresh_token and grant_type == "refresh_token":
            token["refresh_token"] = secrets.token_urlsafe(24)
        return token

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def create_json_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: object, headers: list) -> tuple:
        return status, body, headers

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        pass

    # -- HTTP ---------------------------------------------------------------------------------
    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Dovecot's HTTP client keeps connections open; an HTTP/1.0 answer that closes
            # them makes it wait and retry, seconds per introspection
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                size = min(int(self.headers.get("Content-Length") or 0), 65536)
                form = dict(parse_qsl(self.rfile.read(size).decode()))
                request = _Request("POST", dict(self.headers.items()), form)
                if self.path == "/token":
                    status, body, headers = server.create_token_response(request)
                elif self.path == "/introspect":
                    server.introspections[form.get("token", "")] += 1
                    status, body, headers = server.create_endpoint_response(
                        _Introspection.ENDPOINT_NAME, request)
                else:
                    status, body, headers = 404, {"error": "not_found"}, []
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers:
                    if name.lower() != "content-type":
                        self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        tls = ThreadingHTTPServer(("127.0.0.1", self.token_port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        plain = ThreadingHTTPServer(("127.0.0.1", self.introspection_port), Handler)
        for srv in (tls, plain):
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self._servers.append(srv)
        return self

    def stop(self) -> None:
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
