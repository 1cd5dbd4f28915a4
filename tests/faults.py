"""TCP proxies in front of a real server that hold back or cut what the client sends."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

from tests.localstack.ports import free_port


class PipeProxy:
    """Forwards 127.0.0.1:port -> 127.0.0.1:target_port, a thread per direction; each
    chunk the client sends passes through `client_chunk` first, where a subclass holds it
    back or cuts the connection. Everything else flows as it comes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()

    def client_chunk(self, data: bytes) -> bool:
        """Called before a client chunk is forwarded; False closes both sides instead."""
        return True

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst, from_client in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(src, dst, from_client),
                                 daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and not self.client_chunk(data):
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CuttingProxy(PipeProxy):
    """Forwards 127.0.0.1:port -> target; closes both sides as soon as the client sends a
    chunk larger than `cut_above` bytes. Commands and TLS handshakes are small; a message
    padded past the threshold is the DATA payload, so the cut lands mid-DATA even under TLS.
    """

    def __init__(self, target_port: int, cut_above: int = 3000) -> None:
        super().__init__(target_port)
        self.cut_above = cut_above
        self.cuts = 0

    def client_chunk(self, data: bytes) -> bool:
        if len(data) > self.cut_above:
            self.cuts += 1
            return False
        return True
