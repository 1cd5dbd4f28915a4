"""The daemon reads TLS connections through TLS_READ_BUFFER instead of asyncio's 256 KiB
(prober.probes.tls.small_tls_read_buffers): the buffer is resident for as long as the
connection lives (an IMAP watcher's: hours), and a transfer many times its size still
arrives whole."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import hashlib
import os
import ssl

import pytest

from prober.probes.tls import TLS_READ_BUFFER, client_context_for, small_tls_read_buffers
from tests.localstack.mail import MailStack

pytestmark = pytest.mark.integration

ASYNCIO_DEFAULT = 256 * 1024  # SSLProtocol.max_size in Python 3.11 to 3.13
SIZE = 3 * 1024 * 1024 + 12345  # ~100 buffers' worth, not a multiple of a TLS record


async def _transfer(stack: MailStack, payload: bytes) -> tuple[int, bytes]:
    """(the client's read buffer, what it received) for `payload` sent by a TLS server."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(stack.cert_file, stack.dir / "tls" / "key.pem")

    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context_for(str(stack.cert_file)),
            server_hostname="localhost")
        buffer = len(writer.transport._ssl_protocol._ssl_buffer)  # type: ignore[attr-defined]
        received = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return buffer, received
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("small", [False, True], ids=["asyncio's default", "the daemon's"])
def test_a_tls_connection_reads_through_the_small_buffer_and_loses_nothing(
        mail_stack: MailStack, monkeypatch: pytest.MonkeyPatch, small: bool) -> None:
    # asyncio's value (an agent run earlier in this process may have set the small one),
    # put back after the test
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", ASYNCIO_DEFAULT)
    if small:
        small_tls_read_buffers()
    payload = os.urandom(SIZE)
    buffer, received = asyncio.run(_transfer(mail_stack, payload))
    assert buffer == (TLS_READ_BUFFER if small else ASYNCIO_DEFAULT)
    assert len(received) == SIZE
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
