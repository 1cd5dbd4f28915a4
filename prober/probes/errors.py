"""Failure classes shared by the mail probes: what went wrong, at which step, in one line."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from prober.measurement import one_line
from prober.schema import ErrorClass

# "prober": the probe host's own failure (ErrorClass.PROBER), never the provider's
KINDS = ("dns", "refused", "timeout", "tls", "auth", "protocol", "closed", "prober")
PROBER = str(ErrorClass.PROBER)

# The probe host's own resources ran out: no file descriptor, no memory, no buffer, no
# local port. Whatever the target does, these are the prober's failures, not the target's.
LOCAL_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS,
                          errno.EADDRNOTAVAIL))
# getaddrinfo's own failures on this host (not an answer from anyone's DNS)
_RESOLVER_OWN = frozenset(getattr(socket, name) for name in ("EAI_SYSTEM", "EAI_MEMORY")
                          if hasattr(socket, name))


def local_exhaustion(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, is the probe host running out of
    something (LOCAL_ERRNOS, MemoryError): libraries wrap the OS error, httpcore keeps it
    only as the context."""
    return local_cause(exc) is not None


_LOCAL_CAUSES = {
    errno.EMFILE: "no file descriptor left in the prober's process (EMFILE)",
    errno.ENFILE: "no file descriptor left on the probe host (ENFILE)",
    errno.ENOMEM: "the probe host is out of memory (ENOMEM)",
    errno.ENOBUFS: "the probe host is out of socket buffers (ENOBUFS)",
    errno.EADDRNOTAVAIL: "no local port or address left on the probe host (EADDRNOTAVAIL)",
}

# Exceptions no server reply can cause in the code that drives the mail protocols: a bug
# of ours (or the interpreter's state). A reply we cannot parse raises ValueError,
# IndexError, KeyError or UnicodeError there, which stay the provider's `protocol`.
_OUR_BUGS = (AttributeError, TypeError, NameError, AssertionError, NotImplementedError,
             ImportError, RecursionError, SystemError)


def local_cause(exc: BaseException | None) -> str | None:
    """The words for the probe host's own resource that ran out under `exc` (or an error it
    was raised from), or None when `exc` is not such a failure."""
    for _ in range(8):
        if exc is None:
            return None
        if isinstance(exc, MemoryError):
            return "the prober's process is out of memory (MemoryError)"
        if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
            return _LOCAL_CAUSES[exc.errno]
        exc = exc.__cause__ or exc.__context__
    return None


def host_exhausted() -> str | None:
    """Whether this process can open a socket at all right now; the words for why not.

    glibc's resolver answers "Name or service not known" (EAI_NONAME, as for a name that
    does not exist) when it cannot open /etc/hosts or its socket for lack of descriptors,
    so a failed lookup is asked this before it is charged to the provider's DNS."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    except OSError as exc:
        return local_cause(exc)
    return None


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
    # Ours before anything else: an EMFILE under an aiosmtplib or ssl wrapper is no fault
    # of the server's, whatever step it happened at.
    cause = local_cause(exc)
    if cause is not None:
        return ProbeError(PROBER, step, f"{cause}: {exc}")
    # Libraries wrap the OS error (aiosmtplib: SMTPConnectError from OSError); the cause
    # says more precisely what happened.
    under = exc.__cause__
    if under is not None and isinstance(under, (OSError, asyncio.TimeoutError, TimeoutError)):
        return classify(under, step)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ProbeError("timeout", step, "no answer in time")
    if isinstance(exc, socket.gaierror):
        # EAI_SYSTEM and EAI_MEMORY are the resolver failing on this host; any answer
        # while no socket can be opened is not the provider's DNS either (host_exhausted).
        # NXDOMAIN, SERVFAIL, no answer in time (EAI_NONAME, EAI_AGAIN, EAI_FAIL) stay "dns".
        said = exc.strerror or str(exc)
        if exc.errno in _RESOLVER_OWN:
            return ProbeError(PROBER, step, f"the probe host's resolver failed: {said}")
        local = host_exhausted()
        if local is not None:
            return ProbeError(PROBER, step, f"name lookup failed: {said}, while {local}")
        return ProbeError("dns", step, f"name lookup failed: {said}")
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
    if isinstance(exc, _OUR_BUGS):
        return ProbeError(PROBER, step, f"an error in the prober: {type(exc).__name__}: {exc}")
    return ProbeError("protocol", step, f"{type(exc).__name__}: {exc}")
