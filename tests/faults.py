"""A TCP proxy in front of a real server that cuts the connection at a chosen moment."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.localstack.ports import free_port


class CuttingProxy:
    """Forwards 127.0.0.1:port -> target; closes both sides as soon as the client sends a
    chunk larger than `cut_above` bytes. Commands and TLS handshakes are small; a message
    padded past the threshold is the DATA payload, so the cut lands mid-DATA even under TLS.
    """

    def __init__(self, target_port: int, cut_above: int = 3000) -> None:
        self.target_port = target_port
        self.cut_above = cut_above
        self.port = free_port()
        self.cuts = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and len(data) > self.cut_above:
                    self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
