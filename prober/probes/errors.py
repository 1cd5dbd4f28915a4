"""Failure classes shared by the mail probes: what went wrong, at which step, in one line."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from prober.measurement import one_line

KINDS = ("dns", "refused", "timeout", "tls", "auth", "protocol", "closed")

# The probe host's own resources ran out: no file descriptor, no memory, no buffer, no
# local port. Whatever the target does, these are the prober's failures, not the target's.
LOCAL_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS,
                          errno.EADDRNOTAVAIL))


def local_exhaustion(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, is the probe host running out of
    something (LOCAL_ERRNOS, MemoryError): libraries wrap the OS error, httpcore keeps it
    only as the context."""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, MemoryError) or (isinstance(exc, OSError)
                                            and exc.errno in LOCAL_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class ProbeError(Exception):
    """`kind` is one of KINDS; `step` names the protocol step (connect, tls, auth, data...)."""

    def __init__(self, kind: str, step: str, detail: str) -> None:
        self.kind = kind
        self.step = step
        self.detail = one_line(detail, 300)
        # "auth: NO [AUTHENTICATIONFAILED] ..." / "connect: refused: connection refused"
        super().__init__(f"{step}: {self.detail}" if kind == step
                         else f"{step}: {kind}: {self.detail}")


MASK = "****"


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret (raw, and as an IMAP quoted string) replaced by ****: a
    server that echoes the LOGIN line must not put the password into an error."""
    for secret in secrets:
        if not secret:
            continue
        quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
        for form in {quoted, secret}:
            text = text.replace(form, MASK)
    return text


def masked(error: ProbeError, secrets: tuple[str, ...]) -> ProbeError:
    detail = mask(error.detail, secrets)
    return error if detail == error.detail else ProbeError(error.kind, error.step, detail)


def classify(exc: BaseException, step: str) -> ProbeError:
    """Map library and OS exceptions to our classes, keeping the server's words."""
    if isinstance(exc, ProbeError):
        return exc
    # Libraries wrap the OS error (aiosmtplib: SMTPConnectError from OSError); the cause
    # says more precisely what happened.
    cause = exc.__cause__
    if cause is not None and isinstance(cause, (OSError, asyncio.TimeoutError, TimeoutError)):
        return classify(cause, step)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ProbeError("timeout", step, "no answer in time")
    if isinstance(exc, socket.gaierror):
        return ProbeError("dns", step, f"name lookup failed: {exc.strerror or exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc  # set only by the C ssl module
        return ProbeError("tls", step, f"certificate not trusted: {why}")
    if isinstance(exc, ssl.SSLError):
        return ProbeError("tls", step, f"TLS failed: {exc.reason or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError("refused", step, "connection refused")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, EOFError, ConnectionAbortedError)):
        return ProbeError("closed", step, "connection closed by the server")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return ProbeError("refused", step, f"unreachable: {exc.strerror}")
        return ProbeError("protocol", step, exc.strerror or str(exc))
    return ProbeError("protocol", step, f"{type(exc).__name__}: {exc}")
