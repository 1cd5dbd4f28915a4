"""classify(): the probe host's own failures are `prober`, the provider's stay its own.

The mail probes charge the provider only with what the provider did: a process out of
descriptors, a host out of memory or local ports, a CA file we cannot load, a bug in our
code are ErrorClass.PROBER (never charged); refusals, resets, timeouts, TLS alerts and
bad replies keep their class.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import ssl
from pathlib import Path

import pytest

from prober.config.mail import Endpoint
from prober.probes.errors import PROBER, ProbeError, classify, host_exhausted, local_cause
from prober.probes.tls import client_context
from prober.schema import ErrorClass
from tests.unit.test_errors import wrapped


def test_prober_kind_is_the_schema_word() -> None:
    assert PROBER == ErrorClass.PROBER == "prober"


@pytest.mark.parametrize(("exc", "words"), [
    (OSError(errno.EMFILE, "Too many open files"), "no file descriptor left in the "
                                                   "prober's process (EMFILE)"),
    (OSError(errno.ENFILE, "Too many open files in system"), "no file descriptor left on "
                                                             "the probe host (ENFILE)"),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), "out of memory (ENOMEM)"),
    (OSError(errno.ENOBUFS, "No buffer space available"), "socket buffers (ENOBUFS)"),
    (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
     "no local port or address left on the probe host (EADDRNOTAVAIL)"),
    (MemoryError(), "out of memory (MemoryError)"),
])
def test_local_exhaustion_is_prober_and_named(exc: BaseException, words: str) -> None:
    for raised in (exc, wrapped(exc)):
        err = classify(raised, "connect")
        assert (err.kind, err.step) == ("prober", "connect")
        assert words in err.detail
        assert str(err).startswith("connect: prober: ")


def test_exhaustion_under_a_context_is_found() -> None:
    # httpcore-style: the OS error kept only as the context
    try:
        try:
            raise OSError(errno.EMFILE, "Too many open files")
        except OSError:
            raise ConnectionError("connect failed")  # noqa: B904
    except ConnectionError as exc:
        assert classify(exc, "tls").kind == "prober"


@pytest.mark.parametrize(("exc", "kind"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "closed"),
    (TimeoutError(), "timeout"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "refused"),
    (ValueError("bad response line"), "protocol"),  # a reply we could not parse
    (IndexError("list index out of range"), "protocol"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "protocol"),
])
def test_provider_faults_keep_their_class(exc: BaseException, kind: str) -> None:
    assert classify(exc, "auth").kind == kind
    assert classify(wrapped(exc), "auth").kind == kind


def test_tls_alert_from_the_server_stays_tls() -> None:
    exc = ssl.SSLError(1, "[SSL: TLSV1_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure")
    exc.reason = "TLSV1_ALERT_HANDSHAKE_FAILURE"
    assert classify(exc, "tls").kind == "tls"


@pytest.mark.parametrize("exc", [AttributeError("'NoneType' object has no attribute 'x'"),
                                 TypeError("unsupported operand"), AssertionError(),
                                 NameError("name 'x' is not defined"), RecursionError()])
def test_our_bugs_are_prober(exc: BaseException) -> None:
    err = classify(exc, "select")
    assert err.kind == "prober"
    assert err.detail.startswith(f"an error in the prober: {type(exc).__name__}")


def test_resolver_own_failures_are_prober() -> None:
    err = classify(socket.gaierror(socket.EAI_SYSTEM, "System error"), "connect")
    assert (err.kind, err.detail) == ("prober", "the probe host's resolver failed: System error")
    err = classify(socket.gaierror(socket.EAI_MEMORY, "Memory allocation failure"), "connect")
    assert err.kind == "prober"


@pytest.mark.parametrize("code", [socket.EAI_NONAME, socket.EAI_AGAIN, socket.EAI_FAIL])
def test_answers_of_the_providers_dns_stay_dns(code: int) -> None:
    # NXDOMAIN, SERVFAIL or no answer in time: the provider's DNS (the host can open sockets)
    assert host_exhausted() is None
    assert classify(socket.gaierror(code, "Name or service not known"), "connect").kind == "dns"


def _fill_descriptors() -> list[int]:
    fds = []
    with pytest.raises(OSError) as info:
        while True:
            fds.append(os.open(os.devnull, os.O_RDONLY))
    assert info.value.errno == errno.EMFILE
    return fds


def test_a_lookup_failing_while_out_of_descriptors_is_prober() -> None:
    # glibc answers EAI_NONAME when it cannot open /etc/hosts or a socket: not NXDOMAIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    fds = _fill_descriptors()
    try:
        assert host_exhausted() is not None
        err = classify(socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                       "connect")
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert err.kind == "prober"
    assert "Name or service not known" in err.detail and "EMFILE" in err.detail
    assert host_exhausted() is None


def test_local_cause_is_none_for_the_providers_errors() -> None:
    assert local_cause(ConnectionRefusedError()) is None
    assert local_cause(None) is None


def test_a_ca_file_we_cannot_load_is_prober(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    for path in (str(bad), str(tmp_path / "gone.pem")):
        ep = Endpoint(host="mail.example.test", port=587, tls="starttls", ca_file=path)
        with pytest.raises(ProbeError) as info:
            client_context(ep)
        assert (info.value.kind, info.value.step) == ("prober", "tls")
        assert f"cannot load the CA file {path}" in info.value.detail
