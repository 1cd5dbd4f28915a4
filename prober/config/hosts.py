"""What a configured host name is: an IP literal, a loopback address."""

from __future__ import annotations

import ipaddress


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """Loopback traffic never leaves the host, so plain text there needs no opt-in."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
