"""Which class a Chromium network error is: the target's, or the probe host's own."""

from __future__ import annotations

import pytest

from prober.probes.webmail_browser import _net_error_class
from prober.schema import ErrorClass


@pytest.mark.parametrize(("text", "cls"), [
    ("net::ERR_NETWORK_CHANGED at http://127.0.0.1:41425/framed", ErrorClass.PROBER),
    ("net::ERR_INTERNET_DISCONNECTED at https://mail.example/", ErrorClass.PROBER),
    ("net::ERR_CONNECTION_REFUSED at https://mail.example/", ErrorClass.REFUSED),
    ("net::ERR_NAME_NOT_RESOLVED at https://mail.example/", ErrorClass.DNS),
    ("net::ERR_CERT_DATE_INVALID at https://mail.example/", ErrorClass.TLS),
    ("something Chromium never says", ErrorClass.PROTOCOL),
])
def test_chromium_errors_by_whose_they_are(text: str, cls: ErrorClass) -> None:
    assert _net_error_class(text) == cls
