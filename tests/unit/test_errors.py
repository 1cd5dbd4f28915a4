"""classify(): library and OS exceptions -> ProbeError kinds; the one-line message shape."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest

from prober.probes.errors import KINDS, ProbeError, classify


def cert_error(message: str = "certificate has expired") -> ssl.SSLCertVerificationError:
    """As the ssl module raises it: verify_code and verify_message are set by _ssl."""
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code = 10
    exc.verify_message = message
    return exc


def wrapped(cause: BaseException) -> Exception:
    """A library error raised `from` the OS error, as aiosmtplib's SMTPConnectError is."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("Error connecting to smtp.example.com on port 587") from inner
    except RuntimeError as outer:
        return outer


def test_gaierror_is_dns() -> None:
    err = classify(socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connect")
    assert (err.kind, err.step) == ("dns", "connect")
    assert err.detail == "name lookup failed: Name or service not known"
    assert str(err) == "connect: dns: name lookup failed: Name or service not known"


def test_connection_refused() -> None:
    err = classify(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connect")
    assert (err.kind, err.step, err.detail) == ("refused", "connect", "connection refused")
    assert str(err) == "connect: refused: connection refused"


def test_cert_verification_is_tls() -> None:
    err = classify(cert_error(), "tls")
    assert (err.kind, err.step) == ("tls", "tls")
    assert err.detail == "certificate not trusted: certificate has expired"
    # kind == step: not "tls: tls: ..."
    assert str(err) == "tls: certificate not trusted: certificate has expired"


def test_cert_verification_error_without_verify_message() -> None:
    # Raised from Python code (e.g. a library re-raising with just a message) the
    # attribute is absent; classify must still classify, not raise AttributeError.
    err = classify(ssl.SSLCertVerificationError("hostname mismatch"), "tls")
    assert err.kind == "tls"
    assert "hostname mismatch" in err.detail


def test_other_ssl_error_is_tls() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"
    err = classify(exc, "tls")
    assert (err.kind, err.detail) == ("tls", "TLS failed: WRONG_VERSION_NUMBER")


# asyncio.TimeoutError and socket.timeout are TimeoutError since 3.11
@pytest.mark.parametrize("exc", [TimeoutError(), TimeoutError(errno.ETIMEDOUT, "timed out")])
def test_timeouts(exc: BaseException) -> None:
    err = classify(exc, "data")
    assert (err.kind, err.step, err.detail) == ("timeout", "data", "no answer in time")
    assert str(err) == "data: timeout: no answer in time"


@pytest.mark.parametrize(("cause", "kind"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
    (TimeoutError(), "timeout"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "dns"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "closed"),
])
def test_cause_decides(cause: BaseException, kind: str) -> None:
    err = classify(wrapped(cause), "connect")
    assert err.kind == kind
    assert err.step == "connect"


def test_refused_cause_message() -> None:
    assert str(classify(wrapped(ConnectionRefusedError()), "connect")) == (
        "connect: refused: connection refused")


@pytest.mark.parametrize("exc", [ConnectionResetError(), BrokenPipeError(), EOFError(),
                                 ConnectionAbortedError()])
def test_closed(exc: BaseException) -> None:
    assert classify(exc, "auth").kind == "closed"


@pytest.mark.parametrize("code", [errno.ENETUNREACH, errno.EHOSTUNREACH])
def test_unreachable_counts_as_refused(code: int) -> None:
    err = classify(OSError(code, "No route to host"), "connect")
    assert (err.kind, err.detail) == ("refused", "unreachable: No route to host")


def test_other_os_error_is_protocol_with_strerror() -> None:
    err = classify(OSError(errno.EPERM, "Operation not permitted"), "connect")
    assert (err.kind, err.detail) == ("protocol", "Operation not permitted")


def test_unknown_exception_keeps_type_and_text() -> None:
    err = classify(ValueError("bad\nresponse   line"), "select")
    assert err.kind == "protocol"
    assert err.detail == "ValueError: bad response line"  # one line
    assert str(err) == "select: protocol: ValueError: bad response line"


def test_probe_error_passes_through() -> None:
    original = ProbeError("auth", "auth", "NO [AUTHENTICATIONFAILED] Authentication failed.")
    assert classify(original, "data") is original


def test_probe_error_message_shape() -> None:
    assert str(ProbeError("auth", "auth", "535 5.7.8 bad credentials")) == (
        "auth: 535 5.7.8 bad credentials")
    assert str(ProbeError("refused", "connect", "connection refused")) == (
        "connect: refused: connection refused")


def test_probe_error_detail_is_one_bounded_line() -> None:
    err = ProbeError("protocol", "data", "x" * 1000 + "\r\n")
    assert len(err.detail) == 300
    assert err.detail.endswith("...")
    assert "\n" not in str(err)


def test_kinds_are_all_produced() -> None:
    produced = {
        classify(socket.gaierror(-2, "x"), "s").kind,
        classify(ConnectionRefusedError(), "s").kind,
        classify(TimeoutError(), "s").kind,
        classify(cert_error(), "s").kind,
        classify(BrokenPipeError(), "s").kind,
        classify(ValueError(), "s").kind,
        classify(OSError(errno.EMFILE, "Too many open files"), "s").kind,
    }
    assert produced == set(KINDS) - {"auth"}
