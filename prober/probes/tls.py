"""TLS contexts for the mail probes: verified by default, a CA file when configured."""

from __future__ import annotations

import ssl

from prober.config.mail import Endpoint


def client_context(endpoint: Endpoint) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=endpoint.ca_file)
    if not endpoint.tls_verify:
        # explicit opt-in in the config (tls_verify = false)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
