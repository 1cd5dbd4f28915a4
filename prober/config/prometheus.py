"""`[prometheus]`: the daemon's optional live view for Prometheus (off unless configured)."""

from __future__ import annotations

from dataclasses import dataclass

from prober.config.hosts import is_ip
from prober.config.reader import Section


@dataclass(frozen=True)
class PrometheusSettings:
    host: str  # an IP literal: the exposition is bound, never resolved
    port: int
    # a series not refreshed for this long is dropped (a removed mailbox, a pool member gone)
    stale_after_s: float = 3600.0

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_prometheus(root: Section) -> PrometheusSettings | None:
    s = root.table("prometheus")
    if s is None:
        return None
    listen = s.text("listen")
    if listen.startswith("["):  # [IPv6]:PORT
        host, _, rest = listen[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = listen.rpartition(":")
    if not is_ip(host) or (":" in host and not listen.startswith("[")):
        raise s.error("listen", f"must be ADDRESS:PORT with an IP address, e.g. "
                      f'"127.0.0.1:9464" or "[::1]:9464"; got {listen!r}')
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise s.error("listen", f"port must be 1-65535; got {port_text!r}")
    settings = PrometheusSettings(
        host=host, port=int(port_text),
        stale_after_s=s.number("stale_after_s", 3600.0, minimum=1, maximum=30 * 86400))
    s.check_unknown()
    return settings
